"""psn.training (tools/run_folds.py) without training: its flags (defaults and refusals),
run_training's scheduling of the folds onto GPUs or CPU jobs (a stand-in train_fold), hold_folds
holding the run folder and each fold's, check_shards and its record of sound shards, and
train_and_predict joining the folds that trained while naming the others. Real `caffe train`
runs are in test_run_folds.py."""
import _thread
import json
import os
import re
import signal
import threading
import time

import h5py
import numpy as np
import pytest

from preprocessing.folder_lock import FolderBusy, folder_lock
from preprocessing.layout import RunFolder
from psn import training
from psn.config import CLIPS_PER_BATCH, RunConfig, RunError
from psn.predictions import read_predictions, write_predictions
from psn.training import check_shards, hold_folds, parse_args
from run_folds_helpers import make_data


# ---------------------------------------------------------------- flags


def test_defaults():
    cfg = parse_args(["--data", "d", "--out", "r"])
    assert (cfg.model, cfg.schedule, cfg.width, cfg.batch) == ("psn", "paper", 1.0, CLIPS_PER_BATCH)
    assert (cfg.gpus, cfg.folds, cfg.jobs, cfg.seed, cfg.launcher) == ((), None, 1, 0, "local")
    assert (cfg.train, cfg.predict, cfg.select, cfg.val_groups) == (True, True, ("final",), 0)
    assert (cfg.tpu_impl, cfg.net_overrides, cfg.max_iter) == ("cpp", {}, None)
    assert cfg.data == os.path.abspath("d") and cfg.out == os.path.abspath("r")


def test_flags_say_what_trains_and_predicts():
    base = ["--data", "d", "--out", "r"]
    assert (parse_args(base + ["--predict-only"]).train, parse_args(base + ["--predict-only"]).predict) \
        == (False, True)
    assert (parse_args(base + ["--no-predict"]).train, parse_args(base + ["--no-predict"]).predict) \
        == (True, False)
    cfg = parse_args(base + ["--select", " final, oracle,", "--folds", "3,1", "--gpus", "2,0"])
    assert cfg.select == ("final", "oracle") and cfg.folds == (3, 1) and cfg.gpus == (2, 0)


def test_flag_errors_name_the_flag(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--data", "d", "--out", "r", "--no-predict", "--predict-only"])
    assert "--no-predict and --predict-only exclude each other" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--data", "d", "--out", "r", "--net", "bogus=1"])
    assert "--net bogus=1" in capsys.readouterr().err


def test_a_bad_net_setting_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["--data", "d", "--out", "r", "--net", "fusion=max"])
    assert e.value.code == 2 and "fusion must be one of sum, prod, concat" in capsys.readouterr().err


@pytest.mark.parametrize("argv,said", [
    ([], "the following arguments are required: --data, --out"),
    (["--select", "best"], "--select best: choose from final, val, oracle"),
    (["--jobs", "0"], "jobs and batch must be at least 1"),
    (["--multi-gpu", "--gpus", "0"], "--multi-gpu needs at least two --gpus"),
    (["--tpu-impl", "cuda"], "argument --tpu-impl: invalid choice: 'cuda'"),
    (["--folds", "1,x"], "--folds 1,x: give comma-separated whole numbers"),
    (["--gpus", "0,a"], "--gpus 0,a: give comma-separated whole numbers"),
])
def test_settings_that_cannot_run_exit_2_with_one_line(capsys, argv, said):
    with pytest.raises(SystemExit) as e:
        parse_args((["--data", "d", "--out", "r"] if argv else []) + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[0].startswith("usage: run_folds.py")
    assert err[-1].startswith("run_folds.py: error: ") and said in err[-1], err


# ---------------------------------------------------------------- scheduling the folds


@pytest.fixture
def fake_train(monkeypatch):
    """training.train_fold replaced: calls[i] = (fold, gpu ids, thread); fail = {fold: an
    exception it raises}; wait = folds that train only once another fold trains beside them."""
    calls, fail, wait = [], {}, set()
    together = threading.Barrier(2, timeout=5)

    def train_fold(cfg, fold, gpu_ids, log):
        calls.append((fold, tuple(gpu_ids), threading.current_thread().name))
        if fold in wait:
            together.wait()
        if fold in fail:
            raise fail[fold]
        return True, "trained %d" % fold

    monkeypatch.setattr(training, "train_fold", train_fold)
    return calls, fail, wait


def test_one_fold_per_gpu_at_a_time(fake_train):
    calls, _, wait = fake_train
    # Folds 1 and 2 can only both finish when two train at once: one on each GPU.
    wait.update({1, 2})
    cfg = RunConfig(data="d", out="r", gpus=(0, 1))
    said = []
    results = training.run_training(cfg, [1, 2, 3, 4], said.append)
    assert results == {f: (True, "trained %d" % f) for f in (1, 2, 3, 4)}
    assert sorted(c[0] for c in calls) == [1, 2, 3, 4]
    gpu_of = {c[0]: c[1] for c in calls}
    assert {gpu_of[1], gpu_of[2]} == {(0,), (1,)} and set(gpu_of.values()) == {(0,), (1,)}
    assert any(s.startswith("fold 01: training on GPU ") for s in said)
    assert sorted(s for s in said if "trained" in s) == ["fold %02d: trained %d (0 s)" % (f, f)
                                                         for f in (1, 2, 3, 4)]


def test_per_gpu_trains_k_folds_at_once_on_one_gpu(fake_train):
    calls, _, wait = fake_train
    # Folds 1 and 2 can only both finish when both train at once, here on the one GPU.
    wait.update({1, 2})
    cfg = RunConfig(data="d", out="r", gpus=(0,), per_gpu=2)
    results = training.run_training(cfg, [1, 2, 3], [].append)
    assert sorted(results) == [1, 2, 3] and {c[1] for c in calls} == {(0,)}
    assert len({c[2] for c in calls}) == 2


def test_multi_gpu_trains_one_fold_at_a_time_on_every_gpu(fake_train):
    calls, _, _ = fake_train
    cfg = RunConfig(data="d", out="r", gpus=(0, 1, 2), multi_gpu=True)
    said = []
    training.run_training(cfg, [1, 2], said.append)
    assert [c[:2] for c in calls] == [(1, (0, 1, 2)), (2, (0, 1, 2))]
    assert len({c[2] for c in calls}) == 1
    assert "fold 01: training on GPU 0,1,2" in said


def test_cpu_jobs_train_side_by_side(fake_train):
    calls, _, wait = fake_train
    wait.update({1, 2})
    results = training.run_training(RunConfig(data="d", out="r", jobs=2), [1, 2, 3], lambda s: None)
    assert all(ok for ok, _ in results.values()) and sorted(results) == [1, 2, 3]
    assert all(c[1] == () for c in calls) and len({c[2] for c in calls}) == 2


def test_one_cpu_job_trains_the_folds_in_order(fake_train):
    calls, _, _ = fake_train
    training.run_training(RunConfig(data="d", out="r"), [3, 1, 2], lambda s: None)
    assert [c[:2] for c in calls] == [(3, ()), (1, ()), (2, ())] and len({c[2] for c in calls}) == 1


def test_a_failing_fold_does_not_stop_the_others(fake_train):
    _, fail, _ = fake_train
    fail.update({2: ValueError("boom"), 3: RunError("caffe train exited with 1: see its log")})
    said = []
    results = training.run_training(RunConfig(data="d", out="r"), [1, 2, 3, 4], said.append)
    assert results == {1: (True, "trained 1"), 2: (False, "ValueError: boom"),
                       3: (False, "caffe train exited with 1: see its log"), 4: (True, "trained 4")}
    assert any(s.startswith("fold 02: FAILED: ValueError: boom (") for s in said)


def _ctrl_c_while_training(release, started=None):
    """A stand-in for train_fold: Ctrl-C half a second into the fold (run_training is waiting
    on its folds by then), then training on until `release` is set, as a caffe stopping does."""
    def train_fold(cfg, fold, gpu_ids, log):
        if started is not None:
            started.append(fold)
        time.sleep(0.5)
        _thread.interrupt_main()
        release.wait(20)
        return True, "stopped"
    return train_fold


def test_ctrl_c_starts_no_other_fold_and_stops_the_ones_training(monkeypatch):
    """The first Ctrl-C: no fold starts any more, the training ones get SIGINT (Caffe
    snapshots and exits); a second one while they stop: SIGTERM. Then the interruption goes
    on up to run_folds."""
    started, signals, release = [], [], threading.Event()
    train_fold = _ctrl_c_while_training(release, started)

    def stop_training(sig):
        signals.append(sig)
        if len(signals) == 1:
            # Pressed again a moment later, while the folds stop.
            threading.Timer(0.3, _thread.interrupt_main).start()
        elif sig == signal.SIGTERM:
            release.set()

    monkeypatch.setattr(training, "train_fold", train_fold)
    monkeypatch.setattr(training, "stop_training", stop_training)
    said = []
    with pytest.raises(KeyboardInterrupt):
        training.run_training(RunConfig(data="d", out="r"), [1, 2, 3], said.append)
    assert started == [1] and release.is_set()
    assert signals[0] == signal.SIGINT and signals[-1] == signal.SIGTERM
    assert "interrupted: stopping the folds in training (each writes a snapshot to resume " \
           "from)" in said
    # The fold stopped is still reported as it ended.
    assert said[-1].startswith("fold 01: stopped (")


def test_a_ctrl_c_while_the_folds_are_signalled_still_waits_for_them(monkeypatch):
    """A second Ctrl-C landing inside stop_training itself escalates to SIGTERM, and
    run_training still waits for the folds in training before the interruption goes up."""
    signals, release = [], threading.Event()
    train_fold = _ctrl_c_while_training(release)

    def stop_training(sig):
        signals.append(sig)
        if len(signals) == 1:
            raise KeyboardInterrupt      # pressed again while SIGINT is being sent
        release.set()

    monkeypatch.setattr(training, "train_fold", train_fold)
    monkeypatch.setattr(training, "stop_training", stop_training)
    said = []
    with pytest.raises(KeyboardInterrupt):
        training.run_training(RunConfig(data="d", out="r"), [1, 2], said.append)
    assert signals == [signal.SIGINT, signal.SIGTERM] and release.is_set()
    assert said[-1].startswith("fold 01: stopped (")


# ---------------------------------------------------------------- hold_folds


def lock_is_free(folder):
    try:
        with folder_lock(folder, "testing"):
            return True
    except FolderBusy:
        return False


def test_hold_folds_holds_each_fold_for_the_run_and_the_run_folder_while_starting(
        tmp_path, monkeypatch):
    cfg = RunConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), schedule="smoke")
    run = RunFolder(cfg.out)
    checked = []

    def check_run_record(cfg_, log, train_net):
        # RUN/.lock is held while the record is compared, the folds not yet.
        checked.append((train_net, lock_is_free(cfg.out), lock_is_free(run.fold_dir(1))))

    monkeypatch.setattr(training, "check_run_record", check_run_record)
    with hold_folds(cfg, [1, 2], lambda s: None, "the net"):
        assert checked == [("the net", False, True)]
        assert not lock_is_free(run.fold_dir(1)) and not lock_is_free(run.fold_dir(2))
        # Another run's folds (a SLURM array task) and its start are not in the way.
        assert lock_is_free(run.fold_dir(3)) and lock_is_free(cfg.out)
    assert lock_is_free(run.fold_dir(1)) and lock_is_free(run.fold_dir(2))


def test_a_fold_in_use_refuses_the_whole_run(tmp_path, monkeypatch):
    cfg = RunConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), schedule="smoke")
    run = RunFolder(cfg.out)
    monkeypatch.setattr(training, "check_run_record", lambda *a: None)
    entered = []
    with folder_lock(run.fold_dir(2), "training in"):
        with pytest.raises(FolderBusy, match="fold02 is in use by the writer pid %d" % os.getpid()):
            with hold_folds(cfg, [1, 2], lambda s: None, None):
                entered.append(1)
    assert entered == []
    # Fold 1, taken before fold 2 was found busy, is let go.
    assert lock_is_free(run.fold_dir(1)) and lock_is_free(cfg.out)


def test_a_refused_run_record_holds_no_fold(tmp_path, monkeypatch):
    cfg = RunConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), schedule="smoke")

    def check_run_record(*a):
        raise RunError("made with other settings or data")

    monkeypatch.setattr(training, "check_run_record", check_run_record)
    with pytest.raises(RunError, match="other settings"):
        with hold_folds(cfg, [1, 2], lambda s: None, None):
            pass
    assert not os.path.exists(RunFolder(cfg.out).fold_dir(1)) and lock_is_free(cfg.out)


def test_a_run_starting_beside_it_is_waited_for(tmp_path, monkeypatch, holder):
    """RUN/.lock is held only while a run starts: the next one waits for it, not refused."""
    cfg = RunConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), schedule="smoke")
    monkeypatch.setattr(training, "check_run_record", lambda *a: None)
    other = holder(cfg.out)
    threading.Timer(0.5, other.kill).start()
    said = []
    t0 = time.monotonic()
    with hold_folds(cfg, [1], said.append, None):
        assert time.monotonic() - t0 >= 0.4
    assert any("taking over the lock left by pid %d" % other.pid in s for s in said), said


# ---------------------------------------------------------------- check_shards


def counting_shard_problem(monkeypatch):
    """The shards preprocessing.hdf5_shards.shard_problem reads, in order."""
    from preprocessing import hdf5_shards
    read, real = [], hdf5_shards.shard_problem

    def shard_problem(path):
        read.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(hdf5_shards, "shard_problem", shard_problem)
    return read


def test_sound_shards_are_read_once_per_version(tmp_path, monkeypatch):
    data = make_data(str(tmp_path / "data"))
    cfg = RunConfig(data=data, out=str(tmp_path / "run"), schedule="smoke")
    read = counting_shard_problem(monkeypatch)
    # Each shard is in both folds' lists: read once.
    assert check_shards(cfg, [1, 2], lambda s: None) == {}
    assert sorted(read) == ["group01.h5", "group02.h5"]
    with open(os.path.join(cfg.out, training.SHARDS_CHECKED)) as f:
        sound = json.load(f)
    shard = os.path.join(data, "shards", "group01.h5")
    st = os.stat(shard)
    assert sound[shard] == [st.st_size, st.st_mtime_ns]
    del read[:]
    assert check_shards(cfg, [1, 2], lambda s: None) == {} and read == []
    # A shard written again (a new time) is read again.
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert check_shards(cfg, [1], lambda s: None) == {} and read == ["group01.h5"]


def test_a_damaged_record_of_sound_shards_is_read_as_none(tmp_path, monkeypatch):
    data = make_data(str(tmp_path / "data"))
    cfg = RunConfig(data=data, out=str(tmp_path / "run"), schedule="smoke")
    os.makedirs(cfg.out)
    with open(os.path.join(cfg.out, training.SHARDS_CHECKED), "w") as f:
        f.write("{not json")
    read = counting_shard_problem(monkeypatch)
    assert check_shards(cfg, [1], lambda s: None) == {} and len(read) == 2
    with open(os.path.join(cfg.out, training.SHARDS_CHECKED)) as f:
        assert len(json.load(f)) == 2


def test_a_damaged_shard_stops_its_folds_and_is_not_remembered(tmp_path, monkeypatch):
    data = make_data(str(tmp_path / "data"), groups=3, per_group=2)
    shard = os.path.join(data, "shards", "group01.h5")
    with h5py.File(shard, "r+") as f:
        f["sparse"][1, 3, 0, 0, 0] = np.inf
    cfg = RunConfig(data=data, out=str(tmp_path / "run"), schedule="smoke")
    said = []
    bad = check_shards(cfg, [1, 2, 3], said.append)
    assert sorted(bad) == [1, 2, 3]
    assert bad[1].startswith("test shard %s: " % shard) and bad[2].startswith("train shard %s: " % shard)
    assert "non-finite values (NaN or inf) in 'sparse', row 1" in bad[1]
    assert bad[1].endswith("Run tools/preprocess.py run again on the same --out: it rewrites "
                           "damaged shards")
    assert said == ["fold %02d: not trained: %s" % (f, bad[f]) for f in (1, 2, 3)]
    with open(os.path.join(cfg.out, training.SHARDS_CHECKED)) as f:
        assert shard not in json.load(f)
    read = counting_shard_problem(monkeypatch)
    assert sorted(check_shards(cfg, [2], said.append)) == [2] and read == ["group01.h5"]


def test_a_shard_with_an_external_link_is_not_trained(tmp_path):
    """run_folds checks the shards before Caffe reads them: one whose datasets are external
    links into another file (never checked) keeps its folds from training."""
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


# ---------------------------------------------------------------- train_and_predict, run_folds


def test_main_finds_caffe_then_runs_the_flags_given(monkeypatch):
    from psn import env
    done = []
    monkeypatch.setattr(env, "ensure_caffe", lambda: done.append("caffe"))
    monkeypatch.setattr(training, "run_folds", lambda cfg: done.append(cfg) or 7)
    monkeypatch.setattr("sys.argv", ["run_folds.py", "--data", "argv_d", "--out", "argv_r"])
    assert training.main(["--data", "d", "--out", "r", "--folds", "2"]) == 7
    assert done[0] == "caffe" and done[1].folds == (2,) and done[1].data == os.path.abspath("d")
    # Without arguments: the command line's, less the program name.
    assert training.main() == 7 and done[3].data == os.path.abspath("argv_d")


def test_log_lines_are_stamped_and_flushed(capsys):
    training.log_line("fold 01: training on CPU")
    assert re.fullmatch(r"\[run_folds \d\d:\d\d:\d\d\] fold 01: training on CPU\n",
                        capsys.readouterr().out)


def test_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["--help"])
    assert e.value.code == 0
    # (argparse wraps it, breaking 'held-out' at its hyphen.)
    assert "\nTrain a net on every fold with `caffe train`, then predict each fold's" \
        in capsys.readouterr().out


@pytest.fixture
def fake_predict(monkeypatch):
    """training.predict_fold replaced: writes two clips per fold; returns the folds asked."""
    asked = []

    def predict_fold(cfg, fold, manifest, log):
        asked.append(fold)
        path = RunFolder(cfg.out).fold_predictions(fold)
        write_predictions(path, [["casme2", "casme2/sub%02d" % fold, "EP%02d_%d" % (fold, k),
                                  str(fold), k, k] + [0.7 if c == k else 0.1 for c in range(4)]
                                 for k in range(2)])
        return path

    monkeypatch.setattr(training, "predict_fold", predict_fold)
    return asked


def mark_done(cfg, *folds):
    run = RunFolder(cfg.out)
    for fold in folds:
        os.makedirs(run.fold_dir(fold), exist_ok=True)
        with open(run.done(fold), "w") as f:
            f.write("snapshots/x.caffemodel\n")


def test_the_trained_folds_are_joined_and_the_others_named(tmp_path, monkeypatch, fake_predict, capsys):
    data = make_data(str(tmp_path / "data"), groups=3, per_group=2)
    cfg = RunConfig(data=data, out=str(tmp_path / "run"), schedule="smoke")
    trained = []

    def run_training(cfg_, folds, log):
        trained.extend(folds)
        mark_done(cfg, 1)
        return {1: (True, "done"), 3: (False, "the loss diverged")}

    monkeypatch.setattr(training, "check_shards", lambda cfg_, folds, log: {2: "test shard bad"})
    monkeypatch.setattr(training, "run_training", run_training)
    said = []
    assert training.train_and_predict(cfg, [1, 2, 3], {}, said.append) == 1
    assert trained == [1, 3] and fake_predict == [1]
    err = capsys.readouterr().err.splitlines()
    assert err == ["run_folds: fold 02 failed: test shard bad",
                   "run_folds: fold 03 failed: the loss diverged"]
    run = RunFolder(cfg.out)
    assert read_predictions(run.predictions).clip.tolist() == ["EP01_0", "EP01_1"]
    assert "wrote %s (2 clips from 1 folds)" % run.predictions in said
    assert os.path.isfile(run.clip_log())


def test_predict_only_predicts_the_finished_folds(tmp_path, monkeypatch, fake_predict, capsys):
    data = make_data(str(tmp_path / "data"), groups=3, per_group=2)
    cfg = RunConfig(data=data, out=str(tmp_path / "run"), schedule="smoke", train=False)
    monkeypatch.setattr(training, "run_training", lambda *a: pytest.fail("trained"))
    monkeypatch.setattr(training, "check_shards", lambda *a: pytest.fail("checked shards"))
    mark_done(cfg, 1, 3)
    assert training.train_and_predict(cfg, [1, 2, 3], {}, lambda s: None) == 1
    assert fake_predict == [1, 3]
    assert capsys.readouterr().err == "run_folds: fold 02 failed: not trained yet\n"
    p = read_predictions(RunFolder(cfg.out).predictions)
    assert p.fold.tolist() == ["1", "1", "3", "3"]
    # All finished: exit 0.
    mark_done(cfg, 2)
    assert training.train_and_predict(cfg, [1, 2, 3], {}, lambda s: None) == 0


def test_a_fold_that_cannot_predict_is_named_and_the_others_joined(tmp_path, monkeypatch,
                                                                  fake_predict, capsys):
    cfg = RunConfig(data=make_data(str(tmp_path / "data")), out=str(tmp_path / "run"),
                    schedule="smoke", train=False)
    mark_done(cfg, 1, 2)
    real = training.predict_fold

    def predict_fold(cfg_, fold, manifest, log):
        if fold == 1:
            raise RunError("fold01/deploy.prototxt is damaged")
        return real(cfg_, fold, manifest, log)

    monkeypatch.setattr(training, "predict_fold", predict_fold)
    assert training.train_and_predict(cfg, [1, 2], {}, lambda s: None) == 1
    assert capsys.readouterr().err == "run_folds: fold 01 failed: fold01/deploy.prototxt is damaged\n"
    assert read_predictions(RunFolder(cfg.out).predictions).fold.tolist() == ["2", "2"]


def test_apex_nets_get_their_shards_for_the_folds_that_can_train(tmp_path, monkeypatch):
    cfg = RunConfig(data="d", out=str(tmp_path / "run"), schedule="smoke", predict=False)
    written = []
    monkeypatch.setattr(training, "check_shards", lambda cfg_, folds, log: {2: "damaged"})
    monkeypatch.setattr(training, "reads_apex", lambda cfg_: True)
    monkeypatch.setattr(training, "write_apex_shards",
                        lambda cfg_, folds, manifest, log: written.append(folds))
    monkeypatch.setattr(training, "run_training", lambda cfg_, folds, log: {f: (True, "ok") for f in folds})
    assert training.train_and_predict(cfg, [1, 2, 3], {}, lambda s: None) == 1
    assert written == [[1, 3]]


@pytest.fixture
def fake_select(monkeypatch):
    """training.select_run replaced: calls = (the folds, the mode); fail = [an exception]."""
    calls, fail = [], []

    def select_run(cfg, folds, mode, manifest, log):
        calls.append((folds, mode))
        if fail:
            raise fail[0]

    monkeypatch.setattr(training, "select_run", select_run)
    return calls, fail


def test_select_chooses_weights_among_the_trained_folds(tmp_path, fake_predict, fake_select, capsys):
    calls, fail = fake_select
    cfg = RunConfig(data=make_data(str(tmp_path / "data"), groups=3, per_group=2),
                    out=str(tmp_path / "run"), schedule="smoke", train=False,
                    select=("final", "oracle"))
    mark_done(cfg, 1, 3)
    assert training.train_and_predict(cfg, [1, 2, 3], {}, lambda s: None) == 1
    assert calls == [([1, 3], "oracle")]
    assert capsys.readouterr().err == "run_folds: fold 02 failed: not trained yet\n"
    mark_done(cfg, 2)
    fail.append(ValueError("predictions_oracle.csv: pred 2 is not the most probable class"))
    assert training.train_and_predict(cfg, [1, 2, 3], {}, lambda s: None) == 1
    assert calls[-1] == ([1, 2, 3], "oracle")
    assert capsys.readouterr().err == ("run_folds: --select oracle failed: predictions_oracle.csv: "
                                       "pred 2 is not the most probable class\n")


def test_select_without_a_trained_fold_says_so(tmp_path, fake_predict, fake_select, capsys):
    cfg = RunConfig(data=make_data(str(tmp_path / "data")), out=str(tmp_path / "run"),
                    schedule="smoke", train=False, select=("oracle",))
    assert training.train_and_predict(cfg, [1, 2], {}, lambda s: None) == 1
    assert fake_select[0] == [] and fake_predict == []
    assert capsys.readouterr().err == \
        "run_folds: --select oracle: no fold is trained to choose weights for\n"


def test_no_predict_trains_only(tmp_path, monkeypatch, fake_predict):
    cfg = RunConfig(data=make_data(str(tmp_path / "data")), out=str(tmp_path / "run"),
                    schedule="smoke", predict=False)
    monkeypatch.setattr(training, "run_training", lambda cfg_, folds, log: {f: (True, "ok") for f in folds})
    assert training.train_and_predict(cfg, [1, 2], {}, lambda s: None) == 0
    assert fake_predict == [] and not os.path.exists(RunFolder(cfg.out).predictions)


def test_gpus_refused_by_the_caffe_write_nothing(tmp_path, monkeypatch, capsys):
    from psn import env
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)    # run_folds sets it: undone after
    monkeypatch.setattr(env, "gpu_refusal", lambda flag: "%s: this Caffe is built CPU_ONLY" % flag)
    cfg = RunConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), schedule="smoke",
                    gpus=(0,))
    assert training.run_folds(cfg, log=lambda s: None) == 2
    assert capsys.readouterr().err == "run_folds: error: --gpus: this Caffe is built CPU_ONLY\n"
    assert not os.path.exists(cfg.out)


def test_gpus_count_as_nvidia_smi_counts_them_from_the_first_cuda_call(tmp_path, monkeypatch):
    """CUDA's own order (fastest first) would make --gpus 1 another card than nvidia-smi's GPU 1,
    whose free memory --per-gpu reads: CUDA_DEVICE_ORDER is set before Caffe is first asked."""
    from psn import env
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    seen = []
    monkeypatch.setattr(env, "gpu_refusal",
                        lambda flag: seen.append(os.environ.get("CUDA_DEVICE_ORDER")) or "no")
    cfg = RunConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), schedule="smoke",
                    gpus=(1,))
    assert training.run_folds(cfg, log=lambda s: None) == 2
    assert seen == ["PCI_BUS_ID"]
    from psn import predict
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    monkeypatch.setattr(env, "ensure_caffe", lambda: None)
    assert predict.main(["clip", "--model", str(tmp_path / "fold01"), "--gpu", "1"]) == 2
    assert seen == ["PCI_BUS_ID"] * 2
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")     # on the CPU: left as it was
    cfg = RunConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), schedule="smoke")
    training.run_folds(cfg, log=lambda s: None)
    assert os.environ["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST" and len(seen) == 2


def test_unknown_folds_are_refused_before_training(tmp_path, capsys):
    data = make_data(str(tmp_path / "data"))
    cfg = RunConfig(data=data, out=str(tmp_path / "run"), schedule="smoke", folds=(1, 5, 7))
    assert training.run_folds(cfg, log=lambda s: None) == 2
    assert capsys.readouterr().err == "run_folds: error: folds [5, 7] are not in %s/folds\n" % data
