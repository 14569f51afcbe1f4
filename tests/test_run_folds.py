"""tools/run_folds.py through real `caffe train` on a tiny data folder, then logs and report."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "run_folds.py")


def make_data(base, groups=2, per_group=5, seed=0):
    """A data folder in the layout of `tools/preprocess.py run` (shards, folds, manifest)."""
    import h5py
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.join(base, "shards"))
    manifest, index = [], 0
    for g in range(1, groups + 1):
        labels = np.arange(per_group) % 4
        with h5py.File(os.path.join(base, "shards", "group%02d.h5" % g), "w") as f:
            f["raw"] = rng.randint(0, 255, (per_group, 16, 3, 112, 112)).astype(np.uint8)
            f["sparse"] = rng.normal(0, 0.1, (per_group, 16, 1, 112, 112)).astype(np.float32)
            f["label"] = np.repeat(labels[:, None], 16, axis=1).astype(np.float32)
            cont = np.ones((per_group, 16), np.float32)
            cont[:, 0] = 0
            f["cont"] = cont
            f["clip_label"] = labels.astype(np.int32)
            f["clip_index"] = np.arange(index, index + per_group, dtype=np.int32)
        for k in range(per_group):
            manifest.append(dict(index=index, database="casme2", subject="casme2/sub%02d" % g,
                                 clip="EP%02d_%02d" % (g, k), label=int(labels[k]), group=g,
                                 included=1))
            index += 1
    with open(os.path.join(base, "manifest.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(manifest[0]))
        w.writeheader()
        w.writerows(manifest)
    for fold in range(1, groups + 1):
        d = os.path.join(base, "folds", "fold%02d" % fold)
        os.makedirs(d)
        shard = lambda g: os.path.join(base, "shards", "group%02d.h5" % g)
        with open(os.path.join(d, "train.txt"), "w") as f:
            f.write("".join(shard(g) + "\n" for g in range(1, groups + 1) if g != fold))
        with open(os.path.join(d, "test.txt"), "w") as f:
            f.write(shard(fold) + "\n")
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
            assert os.path.join(data, "folds", "fold%02d" % fold, "test.txt") in f.read()
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
                   "--schedule", "paper")
    assert res.returncode == 0, res.stderr
    with open(os.path.join(out, "slurm_job.sh")) as f:
        script = f.read()
    assert "#SBATCH --array=1,2" in script and "#SBATCH --gres=gpu:1" in script
    assert '--folds "$FOLD" --gpus 0 --no-predict' in script
    assert "--data %s" % data in script and "--schedule paper" in script
    assert "--launcher" not in script.split("#SBATCH --output")[1]
    assert "build_caffe.sh --print-env --cuda" in script
    subprocess.run(["bash", "-n", os.path.join(out, "slurm_job.sh")], check=True)


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
    assert metrics["rr"] == pytest.approx(rr)
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
    from preprocessing import synthetic
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
    assert result["class"] in range(4) and abs(sum(result["probabilities"]) - 1) < 1e-4
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "predict.py"),
                          str(tmp_path), "--model", os.path.join(out, "fold01")],
                         capture_output=True, text=True, env=caffe_env, timeout=600)
    assert bad.returncode == 2 and "no numbered image files" in bad.stderr
