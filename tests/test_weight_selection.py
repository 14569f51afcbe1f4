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
    with pytest.raises(RunError, match="choose from final, oracle"):
        choose_iteration(acc, "best")
    with pytest.raises(RunError, match="no snapshot"):
        choose_iteration({}, "final")


def test_select_is_checked_with_the_other_settings_and_not_recorded():
    cfg = RunConfig(data="d", out="r", schedule="smoke", select=("final", "oracle"))
    assert cfg.select == ("final", "oracle") and "select" not in cfg.record()
    with pytest.raises(RunError, match="--select val: choose from final, oracle"):
        RunConfig(data="d", out="r", schedule="smoke", select=("val",))
    assert MODES == ("final", "oracle")


@pytest.mark.caffe
def test_run_folds_scores_the_oracle_beside_the_final_weights(caffe_env, tmp_path):
    """Snapshots every 2 iterations of 4 (smoke): each fold's iterations are predicted once into
    by_iteration/, oracle picks the best on the fold's test clips, final is predictions.csv."""
    import subprocess
    import sys
    from test_run_folds import TOOL, make_data
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
