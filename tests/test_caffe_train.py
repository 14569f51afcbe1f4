"""psn.caffe_train: one fold's `caffe train` run by tools/run_folds.py: snapshots and
resuming from them, damaged snapshots and final weights set aside, a diverging loss stopped,
killing and Ctrl-C of run_folds stopping its caffe (on conftest.py's `trained` run, copied
where a test writes)."""
import glob
import os
import subprocess

from run_folds_helpers import _one_line, caffe_pids, make_data, run_tool, training


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


def test_ctrl_c_stops_training_with_a_snapshot_and_one_line(caffe_env, trained, tmp_path):
    """SIGINT of run_folds stops its caffe with a snapshot and ends in one line and exit 130,
    not in a KeyboardInterrupt traceback from threading with worker threads going on."""
    import signal
    import time
    data, _, _ = trained
    run = str(tmp_path / "run")
    with training(caffe_env, "--data", data, "--out", run, "--schedule", "smoke", "--width",
                  "0.125", "--max-iter", "100000") as (p, solver):
        time.sleep(2)                                   # into its iterations
        p.send_signal(signal.SIGINT)                    # run_folds alone, not its caffe
        out, err = p.communicate(timeout=120)
        assert p.returncode == 130, err
        assert "interrupted" in err and "run the same command again to resume" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not caffe_pids(solver)
        assert glob.glob(os.path.join(run, "fold01", "snapshots", "*.solverstate"))
        assert not os.path.exists(os.path.join(run, "fold02", "train.log"))   # no fold started after


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


def test_killing_run_folds_stops_its_caffe(caffe_env, trained, tmp_path):
    import signal
    import time
    data, _, _ = trained
    run = str(tmp_path / "run")
    with training(caffe_env, "--data", data, "--out", run, "--folds", "1", "--schedule",
                  "smoke", "--width", "0.125", "--max-iter", "100000",
                  stderr=subprocess.STDOUT) as (p, solver):
        p.send_signal(signal.SIGKILL)
        p.wait()
        deadline = time.time() + 20
        while caffe_pids(solver) and time.time() < deadline:
            time.sleep(0.2)
        assert not caffe_pids(solver), "caffe trains on after run_folds was killed"


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
