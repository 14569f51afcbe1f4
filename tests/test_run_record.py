"""psn.run_record: run.json, what a run was trained with and on; a rerun with other settings
or data is refused, a data folder or database that moved is the same data."""
import os

from preprocessing.manifest import write_manifest
from run_folds_helpers import make_data, run_tool


def test_a_rerun_with_other_settings_or_data_is_refused(caffe_env, trained, tmp_path):
    import json
    data, out, _ = trained
    with open(os.path.join(out, "run.json")) as f:
        record = json.load(f)
    assert record["model"] == "psn" and record["width"] == 0.125 and record["schedule"]["max_iter"] == 4
    assert record["data_path"] == data and len(record["data_sha256"]) == 64
    assert "psn.tp_gain" in record["tpu_wm_gain"]
    assert record["classes"] == ["positive", "negative", "surprise", "others"]
    assert record["provenance"]["caffe_home"].startswith("cpu-") and record["provenance"]["numpy"]
    # The command that rebuilds this run's configuration (psn.config.RunConfig.flags).
    cmd = record["command"]
    assert cmd[0] == "tools/run_folds.py" and cmd[cmd.index("--data") + 1] == data
    assert cmd[cmd.index("--schedule") + 1] == "smoke" and cmd[cmd.index("--width") + 1] == "0.125"
    res = run_tool(caffe_env, "--data", data, "--out", out, "--schedule", "smoke",
                   "--width", "0.125", "--max-iter", "6")
    assert res.returncode == 2 and "already trained" not in res.stdout
    assert "other settings or data" in res.stderr and "schedule" in res.stderr
    assert '"max_iter": 4' in res.stderr and '"max_iter": 6' in res.stderr
    other = make_data(str(tmp_path / "other"), per_group=3)
    res = run_tool(caffe_env, "--data", other, "--out", out, "--schedule", "smoke",
                   "--width", "0.125")
    assert res.returncode == 2 and "data_sha256" in res.stderr
    with open(os.path.join(out, "predictions.csv")) as f:
        assert len(f.readlines()) == 11           # untouched


def test_copied_data_and_run_folders_use_their_own_files(caffe_env, trained, tmp_path):
    """Relative paths in fold lists and DONE: copies work with the originals moved away."""
    import shutil
    data, out, _ = trained
    data2, run2 = str(tmp_path / "data2"), str(tmp_path / "run2")
    shutil.copytree(data, data2)
    shutil.copytree(out, run2)
    for fold in (1, 2):
        os.remove(os.path.join(run2, "fold%02d" % fold, "predictions.csv"))
    os.rename(data, data + ".away")
    os.rename(out, out + ".away")
    try:
        res = run_tool(caffe_env, "--data", data2, "--out", run2, "--schedule", "smoke",
                       "--width", "0.125")
    finally:
        os.rename(data + ".away", data)
        os.rename(out + ".away", out)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("already trained") == 2
    with open(os.path.join(run2, "predictions.csv")) as f:
        assert len(f.readlines()) == 11


def test_a_database_moved_and_preprocessed_again_keeps_its_runs(caffe_env, trained, tmp_path):
    """Preprocessing a database moved elsewhere (all clips cached) rewrites manifest.csv's
    absolute `source` column; the runs on that folder are still the same data (the fingerprint
    leaves `source` out). A run recorded, with the fingerprint of the whole manifest, is still accepted."""
    import json
    import shutil
    from preprocessing.manifest import read_manifest
    from psn.run_record import data_fingerprint
    data, out, _ = trained
    data2, run2 = str(tmp_path / "data2"), str(tmp_path / "run2")
    shutil.copytree(data, data2)
    shutil.copytree(out, run2)
    rows = read_manifest(os.path.join(data2, "manifest.csv"))
    for r in rows:
        r["source"] = "/mnt/elsewhere/CASME2_RAW_selected/%s/%s" % (r["subject"], r["clip"])
    write_manifest(os.path.join(data2, "manifest.csv"), rows)
    assert data_fingerprint(data2) == data_fingerprint(data)
    assert data_fingerprint(data2, location=True) != data_fingerprint(data, location=True)
    res = run_tool(caffe_env, "--data", data2, "--out", run2, "--schedule", "smoke", "--width", "0.125")
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("already trained") == 2
    # A run.json written with the old, location-bound fingerprint of this very folder.
    path = os.path.join(run2, "run.json")
    with open(path) as f:
        record = json.load(f)
    record["data_sha256"] = data_fingerprint(data2, location=True)
    with open(path, "w") as f:
        json.dump(record, f)
    res = run_tool(caffe_env, "--data", data2, "--out", run2, "--schedule", "smoke", "--width", "0.125")
    assert res.returncode == 0, res.stderr[-2000:]
    # The labels are still in the fingerprint.
    rows[0]["label"] = (int(rows[0]["label"]) + 1) % 4
    write_manifest(os.path.join(data2, "manifest.csv"), rows)
    res = run_tool(caffe_env, "--data", data2, "--out", run2, "--schedule", "smoke", "--width", "0.125")
    assert res.returncode == 2 and "data_sha256" in res.stderr


def test_a_record_made_before_the_class_count_was_hashed_is_the_same_run(caffe, tmp_path):
    """run.json hashes the net every fold trains (fold_setup.run_train_net: under MEGC 2019
    three outputs); records written when it hashed the net without the data's class count
    still match, and any other net is refused."""
    import json

    import pytest
    from psn.config import RunConfig, RunError
    from psn.fold_setup import run_train_net
    from psn.run_record import _legacy_net_sha256, _net_sha256, check_run_record
    data = make_data(str(tmp_path / "data"))
    with open(os.path.join(data, "protocol.json"), "w") as f:
        json.dump({"name": "megc2019", "classes": ["negative", "positive", "surprise"],
                   "folds": "loso"}, f)
    cfg = RunConfig(data=data, out=str(tmp_path / "run"), schedule="smoke", width=0.125)
    tv = run_train_net(cfg)
    assert _net_sha256(tv) != _legacy_net_sha256(cfg)
    said = []
    check_run_record(cfg, said.append, tv)
    path = os.path.join(cfg.out, "run.json")
    with open(path) as f:
        record = json.load(f)
    assert record["net_sha256"] == _net_sha256(tv)
    record["net_sha256"] = _legacy_net_sha256(cfg)
    with open(path, "w") as f:
        json.dump(record, f)
    assert check_run_record(cfg, said.append, tv)["net_sha256"] == _legacy_net_sha256(cfg)
    record["net_sha256"] = "0" * 64
    with open(path, "w") as f:
        json.dump(record, f)
    with pytest.raises(RunError, match="net_sha256"):
        check_run_record(cfg, said.append, tv)
