"""tools/run_folds.py through real `caffe train` on a tiny data folder, then logs and report."""
import csv
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from preprocessing.layout import DataFolder
from preprocessing.manifest import write_manifest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "run_folds.py")


def make_data(base, groups=2, per_group=5, seed=0):
    """A data folder in the layout of `tools/preprocess.py run` (shards, folds, manifest),
    written through preprocessing.layout."""
    from preprocessing.hdf5_shards import write_array_shard
    folder = DataFolder(base)
    rng = np.random.RandomState(seed)
    os.makedirs(folder.shard_dir)
    manifest, index = [], 0
    for g in range(1, groups + 1):
        labels = np.arange(per_group) % 4
        write_array_shard(folder.shard(g), rng.randint(0, 255, (per_group, 16, 3, 112, 112)),
                          rng.normal(0, 0.1, (per_group, 16, 1, 112, 112)), labels,
                          np.arange(index, index + per_group))
        for k in range(per_group):
            manifest.append(dict(index=index, database="casme2", subject="casme2/sub%02d" % g,
                                 clip="EP%02d_%02d" % (g, k), label=int(labels[k]), group=g,
                                 included=1))
            index += 1
    write_manifest(folder.manifest, manifest)
    for fold in range(1, groups + 1):
        folder.write_fold_list(fold, "train", [folder.shard(g) for g in range(1, groups + 1)
                                               if g != fold])
        folder.write_fold_list(fold, "test", [folder.shard(fold)])
    return base


def run_tool(caffe_env, *args, timeout=900):
    return subprocess.run([sys.executable, TOOL] + list(args), capture_output=True, text=True,
                          env=caffe_env, timeout=timeout)


@pytest.fixture(scope="module")
def trained(caffe_env, tmp_path_factory):
    base = tmp_path_factory.mktemp("folds")
    data = make_data(str(base / "data"))
    out = str(base / "run")
    res = run_tool(caffe_env, "--data", data, "--out", out, "--model", "psn",
                   "--schedule", "smoke", "--width", "0.125")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return data, out, res


def test_every_fold_trains_and_predicts(trained):
    data, out, res = trained
    for fold in (1, 2):
        d = os.path.join(out, "fold%02d" % fold)
        assert os.path.exists(os.path.join(d, "DONE"))
        assert os.path.exists(os.path.join(d, "snapshots", "psn_iter_4.caffemodel"))
        with open(os.path.join(d, "train.log")) as f:
            log = f.read()
        assert "Optimization Done" in log
        with open(os.path.join(d, "solver.prototxt")) as f:
            solver = f.read()
        assert "solver_mode: CPU" in solver and "test_iter: 1" in solver
        with open(os.path.join(d, "train_val.prototxt")) as f:
            tv = f.read()
        assert os.path.join(d, "test.txt") in tv
        # W_m's gain from this fold's training clips, said in the run's output.
        assert "modulation_weight_filler" in tv
        assert "fold %02d: TPU W_m gain from the training clips: median tp" % fold in res.stdout
        with open(os.path.join(d, "test.txt")) as f:
            assert f.read() == os.path.join(data, "shards", "group%02d.h5" % fold) + "\n"
        with open(os.path.join(d, "DONE")) as f:
            assert f.read() == os.path.join("snapshots", "psn_iter_4.caffemodel") + "\n"
    with open(os.path.join(out, "predictions.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["database", "subject", "clip", "fold", "label", "pred",
                             "prob_0", "prob_1", "prob_2", "prob_3"]
    assert len(rows) == 10
    assert sorted(r["clip"] for r in rows if r["fold"] == "1") == ["EP01_%02d" % k for k in range(5)]
    for r in rows:
        probs = [float(r["prob_%d" % c]) for c in range(4)]
        assert abs(sum(probs) - 1) < 1e-4 and int(r["pred"]) == int(np.argmax(probs))


def test_finished_folds_are_skipped(caffe_env, trained):
    data, out, _ = trained
    res = run_tool(caffe_env, "--data", data, "--out", out, "--schedule", "smoke",
                   "--width", "0.125")
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("already trained") == 2


def test_interrupted_fold_resumes_from_its_solverstate(caffe_env, trained, tmp_path):
    data, out, _ = trained
    import shutil
    run = str(tmp_path / "run")
    shutil.copytree(out, run)
    d = os.path.join(run, "fold02")
    # As if killed after the iteration-2 snapshot.
    for name in ("DONE", "predictions.csv", "snapshots/psn_iter_4.caffemodel",
                 "snapshots/psn_iter_4.solverstate"):
        os.remove(os.path.join(d, name))
    res = run_tool(caffe_env, "--data", data, "--out", run, "--schedule", "smoke",
                   "--width", "0.125")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "fold 02: resuming from iteration 2" in res.stdout
    with open(os.path.join(d, "train.log")) as f:
        assert "Resuming from" in f.read()
    assert os.path.exists(os.path.join(d, "DONE"))


def test_a_failing_fold_does_not_stop_the_others(caffe_env, tmp_path):
    data = make_data(str(tmp_path / "data"))
    # Fold 1's test shard exists but is not HDF5: Caffe fails on it, fold 2 still runs.
    bad = os.path.join(data, "shards", "broken.h5")
    with open(bad, "w") as f:
        f.write("not hdf5")
    with open(os.path.join(data, "folds", "fold01", "test.txt"), "w") as f:
        f.write(bad + "\n")
    res = run_tool(caffe_env, "--data", data, "--out", str(tmp_path / "run"), "--schedule",
                   "smoke", "--width", "0.125")
    assert res.returncode == 1
    assert "fold 01 failed" in res.stderr and "broken.h5" in res.stderr
    assert os.path.exists(str(tmp_path / "run" / "fold02" / "DONE"))
    with open(str(tmp_path / "run" / "predictions.csv")) as f:
        assert len(f.readlines()) == 6  # header + fold 2's five clips


def test_missing_data_folder_is_a_clear_error(caffe_env, tmp_path):
    res = run_tool(caffe_env, "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run"))
    assert res.returncode == 2
    assert "manifest.csv not found" in res.stderr or "no folds" in res.stderr


def test_slurm_launcher_writes_a_job_array(caffe_env, tmp_path):
    data = make_data(str(tmp_path / "data"))
    out = str(tmp_path / "run")
    res = run_tool(caffe_env, "--data", data, "--out", out, "--launcher", "slurm",
                   "--schedule", "paper", "--gpus", "0")
    assert res.returncode == 0, res.stderr
    with open(os.path.join(out, "slurm_job.sh")) as f:
        script = f.read()
    assert "#SBATCH --array=1,2" in script and "#SBATCH --gres=gpu:1" in script
    assert '--folds "$FOLD" --gpus 0 --no-predict' in script
    assert "--data %s" % data in script and "--schedule paper" in script
    assert "--launcher" not in script.split("#SBATCH --output")[1]
    assert "build_caffe.sh --print-env --cuda" in script
    subprocess.run(["bash", "-n", os.path.join(out, "slurm_job.sh")], check=True)
    # Without --gpus: CPU tasks, no GPU asked for, the CPU build.
    cpu = str(tmp_path / "cpu")
    res = run_tool(caffe_env, "--data", data, "--out", cpu, "--launcher", "slurm",
                   "--schedule", "smoke")
    assert res.returncode == 0, res.stderr
    with open(os.path.join(cpu, "slurm_job.sh")) as f:
        script = f.read()
    assert "gres" not in script and "#SBATCH --cpus-per-task=1" in script
    assert '--folds "$FOLD" --no-predict' in script and "--cuda" not in script


def test_parse_log_reads_the_logs_caffe_wrote(trained):
    from psn.caffe_log import parse_log
    _, out, _ = trained
    train, test = parse_log(os.path.join(out, "fold01", "train.log"))
    assert [r["NumIters"] for r in test] == [2, 4]
    assert {"accuracy", "loss"} <= set(test[0])
    assert all(0 <= r["accuracy"] <= 1 for r in test)
    # display: 1; Caffe prints no train output after the last iteration, only the test.
    assert [r["NumIters"] for r in train] == [0, 1, 2, 3]
    assert "loss" in train[0] and "LearningRate" in train[0]


def test_bvlc_parse_log_reads_the_logs_run_folds_writes(caffe_env, trained, tmp_path):
    """run_folds launches Caffe without glog's year prefix, so BVLC's own
    tools/extra/parse_log.py (Python 3 by tools/caffe_patches/0004) reads its logs, to the
    same numbers as tools/parse_log.py."""
    import re
    from psn.caffe_log import parse_log
    _, out, _ = trained
    log = os.path.join(out, "fold01", "train.log")
    with open(log) as f:
        prefixes = re.findall(r"^([IWEF]\d+) \d\d:\d\d:\d\d", f.read(), re.M)
    assert prefixes and all(len(p) == 5 for p in prefixes), prefixes[:3]   # I1128, not I20261128
    tool = os.path.join(caffe_env["PSN_CAFFE_HOME"], "tools", "extra", "parse_log.py")
    res = subprocess.run([sys.executable, "-B", tool, log, str(tmp_path)], capture_output=True,
                         text=True, cwd=os.path.dirname(tool))
    assert res.returncode == 0, res.stderr[-2000:]
    ours_train, ours_test = parse_log(log)
    for suffix, ours in ((".train", ours_train), (".test", ours_test)):
        with open(os.path.join(str(tmp_path), "train.log" + suffix), newline="") as f:
            theirs = list(csv.DictReader(f))
        assert [int(float(r["NumIters"])) for r in theirs] == [r["NumIters"] for r in ours]
        for a, b in zip(theirs, ours):
            for key in ("loss", "accuracy", "LearningRate"):
                if key in a and key in b:
                    assert float(a[key]) == pytest.approx(b[key], rel=1e-6), (suffix, key)
            assert float(a["Seconds"]) == pytest.approx(b["Seconds"], abs=1e-3)


def test_report_on_the_predictions(trained, tmp_path):
    import json
    _, out, _ = trained
    res = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "report.py"),
                          os.path.join(out, "predictions.csv"), "--logs", out,
                          "--out", str(tmp_path / "report")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    with open(str(tmp_path / "report" / "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(out, "predictions.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    rr = np.mean([r["label"] == r["pred"] for r in rows])
    assert metrics["rr_pooled"] == pytest.approx(rr)
    assert (tmp_path / "report" / "report.md").exists()


def test_predict_matches_run_folds_on_the_same_clip(caffe, trained):
    """psn.predict's forward equals the prediction run_folds wrote for that clip."""
    import h5py
    from psn.predict import predict_arrays, resolve_model
    data, out, _ = trained
    deploy, weights = resolve_model(os.path.join(out, "fold01"), None)
    net = caffe.Net(deploy, weights, caffe.TEST)
    with h5py.File(os.path.join(data, "shards", "group01.h5"), "r") as f:
        raw = f["raw"][3].transpose(0, 2, 3, 1)        # (16,112,112,3)
        sparse = f["sparse"][3][:, 0]
    prob = predict_arrays(net, raw, sparse)
    with open(os.path.join(out, "predictions.csv"), newline="") as f:
        row = [r for r in csv.DictReader(f) if r["clip"] == "EP01_03"][0]
    np.testing.assert_allclose(prob, [float(row["prob_%d" % c]) for c in range(4)], atol=1e-5)


def test_predict_tool_on_a_clip_folder(caffe_env, trained, tmp_path):
    """tools/predict.py runs the preprocessing on a folder of frames and prints the class."""
    import json
    import synthetic
    _, out, _ = trained
    db = str(tmp_path / "syn")
    synthetic.generate(db, n_subjects=1, clips_per_subject=1, seed=3)
    clip_dirs = [os.path.join(dp) for dp, dn, fn in os.walk(db) if any(f.endswith(".jpg") for f in fn)]
    assert len(clip_dirs) == 1
    res = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "predict.py"), clip_dirs[0],
                          "--model", os.path.join(out, "fold01"), "--json", "--lam", "0.01"],
                         capture_output=True, text=True, env=caffe_env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout)
    probs = result["probabilities"]
    assert len(probs) == 4 and abs(sum(probs) - 1) < 1e-4 and min(probs) >= 0
    assert result["class"] == int(np.argmax(probs))
    assert result["name"] == ("positive", "negative", "surprise", "others")[result["class"]]
    assert result["classes"] == ["positive", "negative", "surprise", "others"]   # run.json's
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "predict.py"),
                          str(tmp_path), "--model", os.path.join(out, "fold01")],
                         capture_output=True, text=True, env=caffe_env, timeout=600)
    assert bad.returncode == 2 and "no numbered image files" in bad.stderr
    assert result["warnings"] == []
    frames = sorted(os.listdir(clip_dirs[0]), key=lambda n: int(''.join(filter(str.isdigit, n))))
    first = int("".join(filter(str.isdigit, frames[0])))
    short = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "predict.py"), clip_dirs[0],
                            "--model", os.path.join(out, "fold01"), "--onset", str(first),
                            "--offset", str(first + 2)],
                           capture_output=True, text=True, env=caffe_env, timeout=600)
    assert short.returncode == 2 and "3 frame(s) is no clip; give at least 4" in short.stderr


def test_a_data_folder_being_written_is_refused(caffe_env, trained, tmp_path, holder):
    data, _, _ = trained
    p = holder(data)
    res = run_tool(caffe_env, "--data", data, "--out", str(tmp_path / "run"), "--schedule",
                   "smoke", "--width", "0.125")
    assert res.returncode == 2
    assert "in use by the writer pid %d" % p.pid in res.stderr and data in res.stderr
    assert not os.path.exists(str(tmp_path / "run" / "fold01" / "train.log"))


def test_a_fold_being_trained_by_another_run_is_refused(caffe_env, trained, tmp_path, holder):
    data, out, _ = trained
    import shutil
    run = str(tmp_path / "run")
    shutil.copytree(out, run)
    for name in ("DONE", "predictions.csv"):
        os.remove(os.path.join(run, "fold01", name))
    p = holder(os.path.join(run, "fold01"))
    before = os.stat(os.path.join(run, "predictions.csv")).st_mtime_ns
    res = run_tool(caffe_env, "--data", data, "--out", run, "--schedule", "smoke",
                   "--width", "0.125")
    # Refused at once, whole: it used to train and predict the folds not held, and exit 1.
    assert res.returncode == 2, res.stderr
    assert "fold01 is in use by the writer pid %d" % p.pid in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(run, "fold01", "DONE"))
    assert os.stat(os.path.join(run, "predictions.csv")).st_mtime_ns == before
    # Another fold of the same run (a SLURM array task) goes on beside it.
    res = run_tool(caffe_env, "--data", data, "--out", run, "--schedule", "smoke",
                   "--width", "0.125", "--folds", "2")
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("second", [["--max-iter", "6"], []], ids=["other_settings", "same"])
def test_two_runs_started_together_into_one_folder(caffe_env, trained, tmp_path, second):
    """Two run_folds 0.3 s apart into one new folder: with --max-iter 20 and 6, fold01 trained
    20 iterations and fold02 6, the first exited 0, and run.json said 6; with equal settings
    both trained the folds the other did not hold and both exited 1. One of them now runs
    whole, the other is refused with one line."""
    import json
    import time
    data, _, _ = trained
    run = str(tmp_path / "run")
    args = [sys.executable, TOOL, "--data", data, "--out", run, "--schedule", "smoke",
            "--width", "0.125"]
    first = subprocess.Popen(args + ["--max-iter", "20"], env=caffe_env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    other = subprocess.Popen(args + (second or ["--max-iter", "20"]), env=caffe_env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=900) for p in (first, other)]
    codes = sorted(p.returncode for p in (first, other))
    assert codes == [0, 2], (codes, [o[1][-2000:] for o in outs])
    refused = outs[[first.returncode, other.returncode].index(2)][1]
    assert ("other settings or data" in refused) if second else ("is in use by" in refused), refused
    assert "Traceback" not in refused and len(refused.strip().splitlines()) == 1
    with open(os.path.join(run, "run.json")) as f:
        max_iter = json.load(f)["schedule"]["max_iter"]
    winner = 20 if first.returncode == 0 else 6
    assert max_iter == winner
    for fold in (1, 2):
        assert os.path.exists(os.path.join(run, "fold%02d" % fold, "snapshots",
                                           "psn_iter_%d.caffemodel" % winner))


def test_ctrl_c_stops_training_with_a_snapshot_and_one_line(caffe_env, trained, tmp_path):
    """SIGINT of run_folds used to end in a KeyboardInterrupt traceback from threading, with
    its worker threads going on to the next fold."""
    import signal
    import time
    data, _, _ = trained
    run = str(tmp_path / "run")
    p = subprocess.Popen([sys.executable, TOOL, "--data", data, "--out", run, "--schedule",
                          "smoke", "--width", "0.125", "--max-iter", "100000"],
                         env=caffe_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    solver = os.path.join(run, "fold01", "solver.prototxt")
    try:
        deadline = time.time() + 120
        while not _caffe_pids(solver) and time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
        assert _caffe_pids(solver), "caffe never started"
        time.sleep(2)                                   # into its iterations
        p.send_signal(signal.SIGINT)                    # run_folds alone, not its caffe
        out, err = p.communicate(timeout=120)
        assert p.returncode == 130, err
        assert "interrupted" in err and "run the same command again to resume" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not _caffe_pids(solver)
        assert glob.glob(os.path.join(run, "fold01", "snapshots", "*.solverstate"))
        assert not os.path.exists(os.path.join(run, "fold02", "train.log"))   # no fold started after
    finally:
        for pid in _caffe_pids(solver):
            os.kill(pid, signal.SIGKILL)


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
    # (The originals were moved away: everything read came from the copies.)


def test_a_database_moved_and_preprocessed_again_keeps_its_runs(caffe_env, trained, tmp_path):
    """Preprocessing a database moved elsewhere (all clips cached) rewrites manifest.csv's
    absolute `source` column; every run on that folder used to be refused as "other data".
    A run recorded before, with the fingerprint of the whole manifest, is still accepted."""
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


def test_a_truncated_snapshot_is_set_aside_and_the_one_before_resumed(caffe_env, trained, tmp_path):
    """As if killed (or out of disk) while Caffe wrote the iteration-4 .solverstate."""
    import shutil
    from caffe.proto import caffe_pb2
    data, out, _ = trained
    run = str(tmp_path / "run")
    shutil.copytree(out, run)
    d = os.path.join(run, "fold02")
    for name in ("DONE", "predictions.csv"):
        os.remove(os.path.join(d, name))
    state = os.path.join(d, "snapshots", "psn_iter_4.solverstate")
    with open(state, "rb") as f:
        blob = f.read()
    with open(state, "wb") as f:
        f.write(blob[:len(blob) // 2])
    res = run_tool(caffe_env, "--data", data, "--out", run, "--schedule", "smoke",
                   "--width", "0.125")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "snapshot psn_iter_4.solverstate is damaged" in res.stdout
    assert "fold 02: resuming from iteration 2" in res.stdout
    assert os.path.exists(state + ".damaged") and os.path.exists(os.path.join(d, "DONE"))
    # The resumed snapshot names the copy's own weights, not the original run's.
    s = caffe_pb2.SolverState()
    with open(os.path.join(d, "snapshots", "psn_iter_2.solverstate"), "rb") as f:
        s.ParseFromString(f.read())
    assert s.learned_net == os.path.join(d, "snapshots", "psn_iter_2.caffemodel")


def _caffe_pids(solver):
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read().split(b"\0")
            except OSError:
                continue
            if solver.encode() in cmd and any(c.endswith(b"caffe") for c in cmd[:1]):
                pids.append(int(d))
    return pids


def test_killing_run_folds_stops_its_caffe(caffe_env, trained, tmp_path):
    import signal
    import time
    data, _, _ = trained
    run = str(tmp_path / "run")
    p = subprocess.Popen([sys.executable, TOOL, "--data", data, "--out", run, "--folds", "1",
                          "--schedule", "smoke", "--width", "0.125", "--max-iter", "100000"],
                         env=caffe_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    solver = os.path.join(run, "fold01", "solver.prototxt")
    try:
        deadline = time.time() + 120
        while not _caffe_pids(solver) and time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
        assert _caffe_pids(solver), "caffe never started"
        p.send_signal(signal.SIGKILL)
        p.wait()
        deadline = time.time() + 20
        while _caffe_pids(solver) and time.time() < deadline:
            time.sleep(0.2)
        assert not _caffe_pids(solver), "caffe trains on after run_folds was killed"
    finally:
        for pid in _caffe_pids(solver):
            os.kill(pid, signal.SIGKILL)


def test_a_caffe_failure_is_reported_by_its_cause_line(tmp_path):
    from psn.caffe_train import tail
    log = tmp_path / "train.log"
    log.write_text("# psn-caffe: caffe train ...\n"
                   "I1128 08:00:00.0 1 solver.cpp:60] Solving\n"
                   "F1128 08:00:01.0 1 sgd_solver.cpp:331] Check failed: state.history_size() == "
                   "history_.size() Incorrect length of history blobs.\n"
                   + "".join("    @ 0x%x caffe::Solver<>::Restore()\n" % i for i in range(20)))
    text = tail(str(log))
    assert text.startswith("cause: F1128") and "Check failed" in text.splitlines()[0]
    assert "Restore" in text


def test_nan_in_a_shard_stops_the_folds_that_use_it(caffe_env, tmp_path):
    import h5py
    data = make_data(str(tmp_path / "data"))
    with h5py.File(os.path.join(data, "shards", "group01.h5"), "r+") as f:
        f["sparse"][2, 5, 0, 0, 0] = np.nan
    res = run_tool(caffe_env, "--data", data, "--out", str(tmp_path / "run"), "--schedule",
                   "smoke", "--width", "0.125")
    assert res.returncode == 1
    for fold, split in ((1, "test"), (2, "train")):
        assert "fold %02d failed: %s shard %s" % (fold, split, os.path.join(
            data, "shards", "group01.h5")) in res.stderr
    assert "non-finite values (NaN or inf) in 'sparse', row 2" in res.stderr
    assert not os.path.exists(str(tmp_path / "run" / "fold01" / "train.log"))


def test_a_diverging_loss_stops_the_fold_early(caffe_env, tmp_path):
    data = make_data(str(tmp_path / "data"))
    schedule = tmp_path / "explode.json"
    schedule.write_text('{"base_lr": 1e12, "lr_policy": "fixed", "max_iter": 2000, '
                        '"test_interval": 1000, "snapshot": 1000, "display": 1, '
                        '"average_loss": 1}')
    res = run_tool(caffe_env, "--data", data, "--out", str(tmp_path / "run"), "--folds", "1",
                   "--schedule", str(schedule), "--width", "0.125")
    assert res.returncode == 1
    assert "the training loss became" in res.stderr and "lower base_lr" in res.stderr
    with open(str(tmp_path / "run" / "fold01" / "train.log")) as f:
        assert "Iteration 1999" not in f.read()


def test_a_broken_prototxt_is_named(caffe_env, monkeypatch, tmp_path):
    import psn.fold_setup as T
    from psn import nets
    model = tmp_path / "prototxt" / "mynet"
    model.mkdir(parents=True)
    for name in ("train_val", "deploy", "solver"):
        (model / (name + ".prototxt")).write_text('name: "x"\nlayer { name: "a" type: \n')
    monkeypatch.setattr(nets, "PROTOTXT_DIR", str(tmp_path / "prototxt"))
    with pytest.raises(T.RunError) as e:
        T.fold_nets("mynet", 1.0, 5, "a.txt", "b.txt", "cpp")
    assert str(e.value).startswith(str(model / "train_val.prototxt") + ":3")


def test_snapshots_that_cannot_fit_are_refused(monkeypatch, trained, tmp_path):
    import collections
    import shutil
    import psn.caffe_train as T
    from caffe.proto import caffe_pb2
    _, out, _ = trained
    solver = caffe_pb2.SolverParameter(max_iter=100, snapshot=10)
    assert T.snapshot_space_problem(str(tmp_path), str(tmp_path), solver, 0) is None  # nothing to size by
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 ** 6, 10 ** 6, 1000))
    why = T.snapshot_space_problem(out, os.path.join(out, "fold01"), solver, 40)
    assert why.startswith("its 6 snapshot(s) need about") and "free some space" in why


def _fake_checkout(base):
    """A checkout whose tools/ only record how the SLURM task called them."""
    root = os.path.join(base, "check out $(touch PWNED) `touch PWNED2`")
    os.makedirs(os.path.join(root, "tools"))
    with open(os.path.join(root, "tools", "build_caffe.sh"), "w") as f:
        f.write("#!/bin/bash\necho true\n")
    os.chmod(os.path.join(root, "tools", "build_caffe.sh"), 0o755)
    with open(os.path.join(root, "tools", "run_folds.py"), "w") as f:
        f.write("import json, os, sys\n"
                "json.dump({'argv': sys.argv[1:], 'cwd': os.getcwd()}, "
                "open(os.environ['CALLED'], 'w'))\n")
    return root


def test_slurm_script_quotes_every_path(tmp_path, monkeypatch):
    """Spaces, $(…), backticks and quotes in the checkout and run paths reach run_folds as
    they are, and nothing in them runs (the checkout path was pasted unquoted after cd)."""
    from psn import slurm
    from psn.config import RunConfig
    root = _fake_checkout(str(tmp_path))
    monkeypatch.setattr(slurm, "ROOT", root)
    out = str(tmp_path / "run 'x' $(touch PWNED3) #1")
    os.makedirs(out)
    cfg = RunConfig(data=str(tmp_path / "my data"), out=out, schedule="smoke",
                    launcher="slurm")
    script = slurm.write_slurm(cfg, [1, 2])
    called = str(tmp_path / "called.json")
    work = tmp_path / "cwd"
    work.mkdir()
    res = subprocess.run(["bash", script], cwd=str(work), capture_output=True, text=True,
                         env=dict(os.environ, SLURM_ARRAY_TASK_ID="2", CALLED=called))
    assert res.returncode == 0, res.stderr
    import json
    with open(called) as f:
        got = json.load(f)
    assert got["cwd"] == root
    assert got["argv"] == cfg.flags() + ["--folds", "2", "--no-predict"]
    assert not [p for p in (work, tmp_path) for n in os.listdir(p) if n.startswith("PWNED")]
    with open(script) as f:
        text = f.read()
    # sbatch reads #SBATCH lines itself: backslash escapes are the quoting every version knows.
    assert "#SBATCH --output=%s/slurm-%%A_%%a.out\n" % out.replace(" ", "\\ ").replace(
        "'", "\\'").replace("$", "\\$").replace("(", "\\(").replace(")", "\\)").replace(
        "#", "\\#") in text


@pytest.mark.parametrize("where", ["out", "data", "root"])
def test_a_newline_in_a_path_is_refused_for_the_slurm_script(tmp_path, monkeypatch, where, capsys):
    """A newline in --out put a shell line of its own into slurm_job.sh."""
    from psn import slurm, training
    from psn.config import RunConfig
    data = make_data(str(tmp_path / ("da\nta" if where == "data" else "data")), groups=2)
    out = str(tmp_path / ("run\ntouch PWNED" if where == "out" else "run"))
    if where == "root":
        monkeypatch.setattr(slurm, "ROOT", str(tmp_path / "check\nout"))
    cfg = RunConfig(data=data, out=out, schedule="smoke", launcher="slurm")
    assert training.run_folds(cfg, log=lambda *a: None) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "newline" in err and "Fix:" in err
    assert not os.path.exists(os.path.join(out, "slurm_job.sh"))


def test_a_shard_with_an_external_link_is_not_trained(tmp_path):
    """run_folds checks the shards before Caffe reads them: one whose datasets are external
    links into another file (never checked) keeps its folds from training."""
    import h5py
    from psn.config import RunConfig
    from psn.training import check_shards
    data = make_data(str(tmp_path / "data"), groups=2)
    shard = os.path.join(data, "shards", "group01.h5")
    other = str(tmp_path / "elsewhere.h5")
    os.rename(shard, other)
    with h5py.File(shard, "w") as f:
        for name in ("raw", "sparse", "label", "cont", "clip_label", "clip_index"):
            f[name] = h5py.ExternalLink(other, "/" + name)
    said = []
    cfg = RunConfig(data=data, out=str(tmp_path / "run"), schedule="smoke")
    os.makedirs(cfg.out)
    bad = check_shards(cfg, [1, 2], said.append)
    assert sorted(bad) == [1, 2]
    assert "is an external link to %s" % other in bad[1]
    assert len(said) == 2 and all("not trained" in s for s in said)


def test_a_class_count_that_does_not_match_the_data_is_refused(caffe_env, trained, tmp_path,
                                                               monkeypatch, capsys):
    """--net num_classes=2 on 4-class data, or a checked-in net edited to 3 outputs, trained
    labels the net has no output for and exited 0; now refused before any fold starts."""
    import shutil
    from psn import nets, training
    from psn.config import RunConfig
    data, _, _ = trained
    out = tmp_path / "r"
    res = run_tool(caffe_env, "--data", data, "--out", str(out), "--schedule", "smoke",
                   "--width", "0.125", "--net", "num_classes=2")
    assert res.returncode == 2, res.stderr[-2000:]
    assert "num_classes=2, but" in res.stderr and "labelled with 4 classes" in res.stderr
    assert not (out / "fold01").exists()
    proto = tmp_path / "prototxt"
    shutil.copytree(os.path.join(nets.PROTOTXT_DIR, "psn"), str(proto / "psn"))
    tv = proto / "psn" / "train_val.prototxt"
    text = tv.read_text()
    at = text.index('name: "fc_cls"')
    tv.write_text(text[:at] + text[at:].replace("num_output: 4", "num_output: 3", 1))
    monkeypatch.setattr(nets, "PROTOTXT_DIR", str(proto))
    cfg = RunConfig(data=data, out=str(tmp_path / "r2"), schedule="smoke")
    assert training.run_folds(cfg, log=lambda *a: None) == 2
    err = capsys.readouterr().err
    assert "%s: fc_cls has 3 outputs" % tv in err and "positive, negative" in err
    assert not (tmp_path / "r2" / "fold01").exists()
    # A data folder whose protocol.json names 3 classes over labels 0..3: refused, not trained
    # with label 3 on a 3-output net.
    monkeypatch.undo()
    three = str(tmp_path / "three")
    shutil.copytree(data, three)
    with open(os.path.join(three, "protocol.json"), "w") as f:
        f.write('{"name": "x", "classes": ["negative", "positive", "surprise"], "folds": "loso"}')
    cfg = RunConfig(data=three, out=str(tmp_path / "r3"), schedule="smoke", width=0.125)
    assert training.run_folds(cfg, log=lambda *a: None) == 2
    err = capsys.readouterr().err
    assert "manifest.csv has labels 0..3, but" in err and "names 3 classes" in err
    assert not (tmp_path / "r3" / "fold01").exists()


# ----------------------------------------------- what pycaffe would abort on: one line instead

def _one_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def _predict_tool(caffe_env, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "predict.py")] + list(args),
                          capture_output=True, text=True, env=caffe_env, timeout=600)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    import synthetic
    db = str(tmp_path_factory.mktemp("clip") / "syn")
    synthetic.generate(db, n_subjects=1, clips_per_subject=1, seed=3)
    return [dp for dp, _, fn in os.walk(db) if any(f.endswith(".jpg") for f in fn)][0]


def test_gpus_on_a_cpu_only_caffe_are_refused_before_anything_starts(caffe_env, trained, clip_dir,
                                                                     tmp_path, monkeypatch):
    """Were SIGABRT (exit 134) with glog's stack trace, from pycaffe's set_device."""
    from psn import env as psn_env
    info = os.path.join(caffe_env["PSN_CAFFE_HOME"], "BUILD_INFO")
    with open(info) as f:
        if "cuda=1" in f.read():
            pytest.skip("this Caffe is a CUDA build")
    data, out, _ = trained
    run = tmp_path / "run"
    res = run_tool(caffe_env, "--data", data, "--out", str(run), "--gpus", "0",
                   "--schedule", "smoke", "--width", "0.125")
    assert res.returncode == 2, res.stderr[-3000:]
    line = _one_line(res.stderr)
    assert line.startswith("run_folds: error: --gpus: this Caffe is built CPU_ONLY (%s says cuda=0)"
                           % info)
    assert "drop --gpus" in line and "tools/build_caffe.sh --cuda (see its --help)" in line
    assert not run.exists()
    res = _predict_tool(caffe_env, clip_dir, "--model", os.path.join(out, "fold01"), "--gpu", "0")
    assert res.returncode == 2, res.stderr[-3000:]
    line = _one_line(res.stderr)
    assert line.startswith("predict: error: --gpu: this Caffe is built CPU_ONLY") and "drop --gpu" in line
    # A Caffe without build_caffe.sh's record is asked in a child process.
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(os.path.join(caffe_env["PSN_CAFFE_HOME"], "bin"), str(home / "bin"))
    monkeypatch.setenv("PSN_CAFFE_HOME", str(home))
    monkeypatch.setenv("LD_LIBRARY_PATH", caffe_env["LD_LIBRARY_PATH"])
    assert "device_query says 'Cannot use GPU in CPU-only Caffe'" in psn_env.cpu_only_caffe()


def test_predict_refuses_weights_of_another_width_or_cut_short(caffe_env, trained, clip_dir, tmp_path):
    """Were SIGABRT from Caffe's CopyTrainedLayersFrom ('Cannot copy param 0 weights from layer
    ...; shape mismatch', or a parse failure of the weights)."""
    from google.protobuf import text_format
    from psn import nets
    _, out, _ = trained
    weights = os.path.join(out, "fold01", "snapshots", "psn_iter_4.caffemodel")
    _, dp, _ = nets.build("psn", width=0.25)
    wide = tmp_path / "deploy_w025.prototxt"
    wide.write_text(text_format.MessageToString(dp))
    res = _predict_tool(caffe_env, clip_dir, "--model", weights, "--deploy", str(wide))
    assert res.returncode == 2, res.stderr[-3000:]
    line = _one_line(res.stderr)
    assert line.startswith("predict: error: %s does not fit %s: layer " % (weights, wide))
    assert "trained with --model psn --width 0.125 (%s)" % os.path.join(out, "run.json") in line
    assert "give the deploy.prototxt of the run that trained the weights" in line
    short = tmp_path / "short.caffemodel"
    with open(weights, "rb") as f:
        short.write_bytes(f.read()[:os.path.getsize(weights) // 2])
    res = _predict_tool(caffe_env, clip_dir, "--model", str(short), "--deploy",
                        os.path.join(out, "fold01", "deploy.prototxt"))
    assert res.returncode == 2, res.stderr[-3000:]
    line = _one_line(res.stderr)
    assert line.startswith("predict: error: %s is " % short) and "give the weights again" in line


@pytest.mark.parametrize("edit", ["syntax", "layer_type"])
def test_a_broken_deploy_prototxt_fails_its_fold_and_the_others_predict(caffe_env, trained,
                                                                        tmp_path, edit):
    """run_folds --predict-only predicts in-process: pycaffe's abort on fold 2's edited
    deploy.prototxt ended the run (SIGABRT) before fold 1's predictions were joined."""
    import shutil
    data, out, _ = trained
    run = str(tmp_path / "run")
    shutil.copytree(out, run)
    for path in glob.glob(os.path.join(run, "fold*", "predictions.csv")) + [
            os.path.join(run, "predictions.csv")]:
        os.remove(path)
    deploy = os.path.join(run, "fold02", "deploy.prototxt")
    with open(deploy) as f:
        text = f.read()
    with open(deploy, "w") as f:
        f.write(text + "layer {\n" if edit == "syntax" else
                text.replace('type: "Convolution"', 'type: "Convolutoin"', 1))
    args = ["--data", data, "--out", run, "--schedule", "smoke", "--width", "0.125"]
    res = run_tool(caffe_env, *args, "--predict-only")
    assert res.returncode == 1, res.stderr[-3000:]
    line = _one_line(res.stderr)
    assert line.startswith("run_folds: fold 02 failed: %s:" % deploy), line
    assert ("Caffe cannot parse it" if edit == "syntax" else
            "Caffe cannot build this net (Check failed: registry.count(type) == 1 (0 vs. 1) "
            "Unknown layer type: Convolutoin") in line
    assert "delete it and run the same command: run_folds writes it again" in line
    assert "fold 01: predicted 5 clips" in res.stdout
    with open(os.path.join(run, "predictions.csv")) as f:
        assert len(f.readlines()) == 6          # header + fold 1's five clips
    if edit == "syntax":
        os.remove(deploy)                       # the fix the line gives
        res = run_tool(caffe_env, *args, "--predict-only")
        assert res.returncode == 0, res.stderr[-3000:]
        assert "fold 02: wrote %s again" % deploy in res.stdout
        with open(os.path.join(run, "predictions.csv")) as f:
            assert len(f.readlines()) == 11


def test_a_truncated_final_caffemodel_is_set_aside_and_the_fold_trained_again(caffe_env, trained,
                                                                              tmp_path):
    """A DONE fold whose final weights were cut short (a full disk, a copy stopped half way):
    --predict-only fails that fold in one line (was SIGABRT); a run that trains sets the
    weights aside like a damaged snapshot and trains the fold again from the one before."""
    import shutil
    data, out, _ = trained
    run = str(tmp_path / "run")
    shutil.copytree(out, run)
    d = os.path.join(run, "fold02")
    weights = os.path.join(d, "snapshots", "psn_iter_4.caffemodel")
    with open(weights, "rb") as f:
        blob = f.read()
    with open(weights, "wb") as f:
        f.write(blob[:len(blob) // 2])
    os.remove(os.path.join(d, "predictions.csv"))
    args = ["--data", data, "--out", run, "--schedule", "smoke", "--width", "0.125"]
    res = run_tool(caffe_env, *args, "--predict-only")
    assert res.returncode == 1, res.stderr[-3000:]
    line = _one_line(res.stderr)
    assert line.startswith("run_folds: fold 02 failed: %s is " % weights)
    assert "run the same command without --predict-only" in line
    res = run_tool(caffe_env, *args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert ("fold 02: final weights psn_iter_4.caffemodel are damaged: unreadable"
            in res.stdout), res.stdout[-3000:]
    assert "fold 02: resuming from iteration 2" in res.stdout
    assert "fold 02: predicted 5 clips" in res.stdout
    assert os.path.exists(weights + ".damaged") and os.path.exists(os.path.join(d, "DONE"))
    from psn.net_files import read_weights
    assert read_weights(weights)[1] is None
    with open(os.path.join(run, "predictions.csv")) as f:
        assert len(f.readlines()) == 11
