"""The one configuration: the paper's constants and RunConfig, the typed settings of a run."""
import json
import re

import pytest

from psn import config
from psn.config import RunConfig, RunError
from psn.training import parse_args


def test_the_papers_constants():
    # Typed from the paper: Table 3's classes, Table 4's databases, section 3.2's 150 frames,
    # 16 sampled frames and 112-pixel crops, section 4.1's 5 clips per batch.
    assert config.CLASSES == ("positive", "negative", "surprise", "others")
    assert config.PAPER_DATABASES == ("casme", "casme2", "casme2sq", "samm")
    assert (config.N_FRAMES, config.T, config.CROP, config.CLIPS_PER_BATCH) == (150, 16, 112, 5)


def test_flags_rebuild_the_same_configuration(tmp_path, monkeypatch):
    """The SLURM array task runs tools/run_folds.py with RunConfig.flags(): it must get the
    configuration the user asked for, JSON schedules and net overrides included."""
    sched = tmp_path / "mine.json"
    sched.write_text(json.dumps({"base_lr": 0.01, "max_iter": 30}))
    monkeypatch.chdir(tmp_path)
    cfg = parse_args(["--data", "d", "--out", "r", "--model", "psn_tp1", "--schedule",
                      "mine.json", "--max-iter", "12", "--width", "0.125", "--batch", "3",
                      "--net", "tp_ref=6.4", "--net", "first_tp=NEXT", "--tpu-impl", "python",
                      "--seed", "4", "--gpus", "0,1", "--folds", "2,3", "--jobs", "2"])
    assert cfg.solver == {"base_lr": 0.01, "max_iter": 12}
    assert cfg.net_overrides == {"tp_ref": 6.4, "first_tp": "NEXT"}
    assert cfg.data == str(tmp_path / "d") and cfg.schedule == str(sched)
    assert (cfg.gpus, cfg.folds, cfg.train, cfg.predict) == ((0, 1), (2, 3), True, True)
    monkeypatch.chdir("/")
    again = parse_args(cfg.flags() + ["--gpus", "0,1", "--folds", "2,3", "--jobs", "2"])
    assert again == cfg and again.solver == cfg.solver


def test_record_holds_what_decides_the_results():
    cfg = RunConfig(data="d", out="r", schedule="demo", seed=3)
    rec = cfg.record()
    assert set(rec) == {"model", "width", "batch", "schedule", "net_overrides", "tpu_impl",
                        "seed"}
    assert rec["schedule"] == config.load_schedule("demo") and rec["seed"] == 3


@pytest.mark.parametrize("kw, message", [
    (dict(multi_gpu=True, gpus=(0,)), "--multi-gpu needs at least two --gpus"),
    (dict(schedule="nope"), "unknown schedule 'nope'"),
    (dict(tpu_impl="cuda"), "tpu_impl must be one of"),
    (dict(jobs=0), "jobs and batch must be at least 1"),
    (dict(train=False, predict=False), "neither trains nor predicts"),
])
def test_settings_that_cannot_run_are_refused(kw, message):
    with pytest.raises(RunError, match=message):
        RunConfig(data="d", out="r", **kw)


@pytest.mark.parametrize("kw,said", [
    (dict(folds=(1, 1)), "--folds 1,1: give fold numbers from 1, each once"),
    (dict(folds=(0,)), "--folds 0: give fold numbers from 1"),
    (dict(max_iter=0), "--max-iter must be at least 1, got 0"),
    (dict(max_iter=-3), "--max-iter must be at least 1, got -3"),
    (dict(net_overrides={"fusion": "max"}), "--net: fusion must be one of sum, prod, concat"),
    (dict(net_overrides={"hidden": -5}), "--net: hidden must be at least 1"),
    (dict(net_overrides={"frames": 8}), "--net: frames must be 16"),
    (dict(net_overrides={"frames": 0}), "--net: frames must be 16"),
    (dict(net_overrides={"tpu_mode": "foo"}), "--net: tpu_mode must be one of TPU, TP1, RNN"),
    (dict(batch=0), "batch must be at least 1"),
    (dict(model="nope"), "unknown model 'nope': give one of alexnet_rnn, off_apexnet, psn,"),
])
def test_settings_no_run_can_use_are_refused_before_it_starts(kw, said):
    """Each is refused with one line before anything trains. Unchecked, --max-iter 0 would be
    ignored, -3 would end in 'caffe train exited with 0', fusion=<anything else> would build
    PROD, hidden=-5 would become 8, --folds 1,1 would write fold 1's clips twice, frames=8 and
    tpu_mode=foo would be tracebacks."""
    with pytest.raises(RunError, match=re.escape(said)):
        RunConfig(data="d", out="r", schedule="smoke", **kw)


def test_an_unknown_model_is_refused_before_the_synthetic_database_is_made(tmp_path, capsys,
                                                                           monkeypatch):
    """run_psn.sh --models nope made the synthetic database and preprocessed every clip first."""
    from psn import env
    from psn.main import main
    monkeypatch.setattr(env, "ensure_caffe", lambda *a, **k: None)    # the fast tier has no Caffe
    assert main(["--models", "psn,nope", "--out", str(tmp_path / "work")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model 'nope'" in err[0], err
    assert not (tmp_path / "work").exists()
