"""tools/run_folds.py (psn/training.py) through real `caffe train` on a tiny data folder:
the folds scheduled, trained and predicted, finished ones skipped, a failing one not stopping
the others, folders in use refused, shards checked before Caffe reads them; then the report on what it
trained.

The training is conftest.py's session fixture `trained` (tests/run_folds_helpers.py). The
tests of one part alone are in that part's own file: test_caffe_train.py (snapshots, resume,
damaged weights, a diverging loss, killing, Ctrl-C), test_fold_setup.py (class counts,
prototxt), test_run_record.py (other settings or data, moved data), test_net_files.py
(broken deploy, weights of another width), test_slurm.py (the SLURM script), test_caffe_log.py
(its logs read by ours and BVLC's parse_log), test_predict.py (tools/predict.py on its weights),
test_training.py (run_folds' flags, scheduling, fold locks and shard checks without Caffe).
"""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from run_folds_helpers import ROOT, TOOL, _one_line, _predict_tool, make_data, run_tool


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
    # Refused at once, whole: no fold of it is trained or predicted.
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


    # (The originals were moved away: everything read came from the copies.)


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


# ----------------------------------------------- what pycaffe would abort on: one line instead

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


