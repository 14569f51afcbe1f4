"""psn.weight_selection: final and oracle weights, from snapshots predicted once."""
import json
import os

import pytest

from psn.config import RunConfig, RunError
from psn.weight_selection import MODES, choose_iteration


def test_final_is_the_last_iteration_and_oracle_the_best_on_the_test_fold():
    acc = {100: 0.5, 200: 0.75, 300: 0.6, 400: 0.75}
    assert choose_iteration(acc, "final") == 400
    assert choose_iteration(acc, "oracle") == 200          # the earliest of equals
    assert choose_iteration(acc, "val") == 200           # on the validation groups' accuracy
    with pytest.raises(RunError, match="choose from final, val, oracle"):
        choose_iteration(acc, "best")
    with pytest.raises(RunError, match="no snapshot"):
        choose_iteration({}, "final")


def test_select_is_checked_with_the_other_settings_and_not_recorded():
    cfg = RunConfig(data="d", out="r", schedule="smoke", select=("final", "oracle"))
    assert cfg.select == ("final", "oracle") and "select" not in cfg.record()
    with pytest.raises(RunError, match="--select best: choose from final, val, oracle"):
        RunConfig(data="d", out="r", schedule="smoke", select=("best",))
    with pytest.raises(RunError, match="--select val needs training groups held out"):
        RunConfig(data="d", out="r", schedule="smoke", select=("val",))
    cfg = RunConfig(data="d", out="r", schedule="smoke", select=("val",), val_groups=1)
    assert cfg.record()["val_groups"] == 1 and "--val-groups" in cfg.flags()
    assert "val_groups" not in RunConfig(data="d", out="r", schedule="smoke").record()
    assert MODES == ("final", "val", "oracle")


@pytest.mark.caffe
def test_run_folds_scores_the_oracle_beside_the_final_weights(caffe_env, tmp_path):
    """Snapshots every 2 iterations of 4 (smoke): each fold's iterations are predicted once into
    by_iteration/, oracle picks the best on the fold's test clips, final is predictions.csv."""
    import subprocess
    import sys
    from run_folds_helpers import TOOL, make_data
    from psn.predictions import read_predictions
    data = make_data(str(tmp_path / "data"))
    run = str(tmp_path / "run")
    res = subprocess.run([sys.executable, TOOL, "--data", data, "--out", run, "--schedule", "smoke",
                          "--width", "0.125", "--select", "final,oracle"], capture_output=True,
                         text=True, env=caffe_env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(os.path.join(run, "selection_oracle.json")) as f:
        record = json.load(f)
    for fold in ("01", "02"):
        by_iter = {int(k): v for k, v in record["folds"][fold]["test_accuracy_by_iteration"].items()}
        assert sorted(by_iter) == [2, 4]
        assert record["folds"][fold]["iteration"] == choose_iteration(by_iter, "oracle")
        assert os.path.isfile(os.path.join(run, "fold%s" % fold, "by_iteration", "iter_0000004.csv"))
    final = read_predictions(os.path.join(run, "predictions.csv"), 4)
    oracle = read_predictions(os.path.join(run, "predictions_oracle.csv"), 4)
    assert sorted(final.clip) == sorted(oracle.clip) and len(final.clip) == 10
    assert (oracle.label == oracle.pred).sum() >= (final.label == final.pred).sum()
    # The final iteration's cached predictions are predictions.csv's.
    it4 = read_predictions(os.path.join(run, "fold01", "by_iteration", "iter_0000004.csv"), 4)
    f1 = read_predictions(os.path.join(run, "fold01", "predictions.csv"), 4)
    assert (it4.prob == f1.prob).all()
    assert os.path.isfile(os.path.join(run, "per_clip_oracle.txt"))
    # Asking again predicts nothing new.
    res = subprocess.run([sys.executable, TOOL, "--data", data, "--out", run, "--schedule", "smoke",
                          "--width", "0.125", "--select", "oracle", "--predict-only"],
                         capture_output=True, text=True, env=caffe_env, timeout=900)
    assert res.returncode == 0 and "snapshot iteration" not in res.stdout, res.stdout


def test_validation_groups_follow_the_test_group_and_must_hold_every_class(tmp_path):
    from psn import probe_tasks
    from preprocessing.layout import DataFolder
    from psn.validation import check_val_groups, split_train, val_groups
    data = probe_tasks.write_task(str(tmp_path / "d"), "order", n_clips=24, n_groups=4)
    plan = DataFolder(data).read_plan()
    assert [val_groups(plan, f, 1) for f in (1, 2, 3, 4)] == [[2], [3], [4], [1]]
    assert val_groups(plan, 4, 2) == [1, 2]
    with pytest.raises(RunError, match="--val-groups 3: fold 1 has 3 training groups.*give --val-groups 2"):
        val_groups(plan, 1, 3)
    check_val_groups(data, [1, 2, 3, 4], 1, ["a", "b"])
    train = [os.path.join(data, "shards", "group%02d.h5" % g) for g in (2, 3, 4)]
    kept, val = split_train(data, 1, 1, train)
    assert [os.path.basename(p) for p in kept] == ["group03.h5", "group04.h5"]
    assert [os.path.basename(p) for p in val] == ["group02.h5"]
    # A validation group without a class the fold trains on cannot choose: refused, naming it.
    with open(os.path.join(data, "folds.json")) as f:
        d = json.load(f)
    d["groups"][1]["class_counts"] = [3, 0]
    with open(os.path.join(data, "folds.json"), "w") as f:
        json.dump(d, f)
    with pytest.raises(RunError, match="fold 1's validation group.s. 2 hold no b clip.*larger --val-groups"):
        check_val_groups(data, [1], 1, ["a", "b"])


@pytest.mark.caffe
def test_val_trains_without_its_groups_and_chooses_on_them(caffe_env, tmp_path):
    import subprocess
    import sys
    from psn import probe_tasks
    from run_folds_helpers import TOOL
    data = probe_tasks.write_task(str(tmp_path / "d"), "order", n_clips=24, n_groups=3)
    run = str(tmp_path / "run")
    args = [sys.executable, TOOL, "--data", data, "--out", run, "--schedule", "smoke",
            "--width", "0.125"]
    res = subprocess.run(args + ["--select", "val"], capture_output=True, text=True, env=caffe_env)
    assert res.returncode == 2 and "--select val needs training groups held out" in res.stderr
    res = subprocess.run(args + ["--select", "final,val,oracle", "--val-groups", "1"],
                         capture_output=True, text=True, env=caffe_env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(os.path.join(run, "fold01", "train.txt")) as f:
        assert [os.path.basename(p) for p in f.read().split()] == ["group03.h5"]
    with open(os.path.join(run, "fold01", "val.txt")) as f:
        assert [os.path.basename(p) for p in f.read().split()] == ["group02.h5"]
    with open(os.path.join(run, "selection_val.json")) as f:
        record = json.load(f)["folds"]["01"]
    val = {int(k): v for k, v in record["val_accuracy_by_iteration"].items()}
    assert record["iteration"] == choose_iteration(val, "val")
    with open(os.path.join(run, "run.json")) as f:
        assert json.load(f)["val_groups"] == 1
    for mode in ("val", "oracle"):
        assert os.path.isfile(os.path.join(run, "predictions_%s.csv" % mode))


@pytest.mark.caffe
def test_select_with_no_trained_fold_is_one_line(caffe_env, tmp_path):
    """A run whose folds all failed (here: none trained, --predict-only) ends --select's step
    in one line, not in a traceback over an empty predictions file."""
    import subprocess
    import sys
    from run_folds_helpers import TOOL, make_data
    data = make_data(str(tmp_path / "data"))
    res = subprocess.run([sys.executable, TOOL, "--data", data, "--out", str(tmp_path / "run"),
                          "--schedule", "smoke", "--width", "0.125", "--predict-only",
                          "--select", "final,oracle"], capture_output=True, text=True,
                         env=caffe_env, timeout=300)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "--select oracle: no fold is trained to choose weights for" in res.stderr
