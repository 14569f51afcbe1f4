"""One fold's `caffe train`: the process (stopped with its parent, stopped on a NaN loss), its
log, resuming from the newest sound snapshot, the disk check before it, and the DONE file
naming the final weights."""
import contextlib
import glob
import os
import math
import re
import shlex
import signal
import subprocess
import threading
import time

from preprocessing.atomic import remove_temporaries, write_atomic
from preprocessing.layout import RunFolder
from preprocessing.parent_death import die_with_parent
from psn.config import RunError
from psn.fold_setup import prepare_fold
from psn.net_files import read_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def snapshots(fold_dir, ext):
    """[(iteration, path)] of a fold's snapshots with extension ext, newest first."""
    found = []
    for path in glob.glob(os.path.join(fold_dir, RunFolder.SNAPSHOTS, "*_iter_*." + ext)):
        m = re.search(r"_iter_(\d+)\." + ext + "$", path)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found, reverse=True)


def read_snapshot(state_path):
    """(SolverState, None) when a .solverstate and the .caffemodel it names can be resumed
    from, else (None, why not).

    A kill or a full disk while Caffe wrote a snapshot (before tools/caffe_patches/0003, or
    with another Caffe) leaves a short file; Caffe then fails on it at every resume."""
    from google.protobuf.message import DecodeError
    from psn.caffe_proto import caffe_pb2
    state = caffe_pb2.SolverState()
    try:
        with open(state_path, "rb") as f:
            state.ParseFromString(f.read())
    except (OSError, DecodeError) as e:
        return None, "unreadable (%s)" % e
    m = re.search(r"_iter_(\d+)\.solverstate$", state_path)
    if m and state.iter != int(m.group(1)):
        return None, "holds iteration %d, not %s (cut short)" % (state.iter, m.group(1))
    model = os.path.join(os.path.dirname(state_path), os.path.basename(state.learned_net or ""))
    if not state.learned_net or not os.path.isfile(model):
        return None, "its weights %s are missing" % (state.learned_net or "(none named)")
    net, why = read_weights(model)
    if net is None:
        return None, "its weights %s are %s" % (os.path.basename(model), why)
    n_params = sum(len(layer.blobs) for layer in net.layer)
    if len(state.history) not in (0, n_params):
        return None, ("it holds %d of the %d parameter histories (cut short)"
                      % (len(state.history), n_params))
    return state, None


def resume_point(fold_dir, log, fold):
    """(iteration, .solverstate) of the newest snapshot that can be resumed from, or (0, None).

    Damaged ones are renamed *.damaged (kept, not resumed again), with a log line saying so.
    Caffe resumes with the weights the .solverstate names by absolute path, in a moved or
    copied run folder the original's: the chosen one is made to name the snapshot beside it."""
    for it, path in snapshots(fold_dir, "solverstate"):
        state, why = read_snapshot(path)
        if state is not None:
            local = os.path.join(os.path.dirname(os.path.abspath(path)),
                                 os.path.basename(state.learned_net))
            if state.learned_net != local:
                state.learned_net = local
                write_atomic(path, state.SerializeToString())
            return it, path
        log("fold %02d: snapshot %s is damaged: %s; set aside as .damaged, trying the one before"
            % (fold, os.path.basename(path), why))
        os.replace(path, path + ".damaged")
    return 0, None


def caffe_binary():
    home = os.environ.get("PSN_CAFFE_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "caffe")):
        return os.path.join(home, "bin", "caffe")
    from shutil import which
    found = which("caffe")
    if not found:
        raise RunError("no caffe binary: run tools/build_caffe.sh, then "
                       "eval \"$(tools/build_caffe.sh --print-env)\"")
    return found


def train_fold(cfg, fold, gpu_ids, log):
    """Run (or resume) `caffe train` for one fold; returns (ok, message)."""
    run = RunFolder(cfg.out)
    fold_dir = run.fold_dir(fold)
    done = run.done(fold)
    if os.path.exists(done):
        weights = done_weights(fold_dir)
        if not os.path.exists(weights):
            log("fold %02d: DONE names %s, which is gone: training again" % (fold, weights))
        else:
            _, why = read_weights(weights)
            if why is None:
                return True, "already trained"
            # Cut short (a full disk, a copy stopped half way): Caffe would abort on it at
            # prediction. Kept for a look, and the fold trained again from its last sound
            # snapshot (resume_point sets aside the snapshot that names these weights).
            log("fold %02d: final weights %s are damaged: %s; set aside as .damaged, training "
                "the fold again" % (fold, os.path.basename(weights), why))
            os.replace(weights, weights + ".damaged")
            with contextlib.suppress(FileNotFoundError):
                os.remove(run.fold_predictions(fold))     # made from the weights set aside
        os.remove(done)
    os.makedirs(fold_dir, exist_ok=True)
    # Left by a kill: this project's atomic writes, and Caffe's (tools/caffe_patches/0003).
    remove_temporaries(fold_dir)
    for path in glob.glob(os.path.join(run.snapshot_dir(fold), "*.tmp")):
        os.remove(path)
    solver = prepare_fold(cfg, fold, fold_dir, log)
    cmd = [caffe_binary(), "train", "--solver", os.path.join(fold_dir, "solver.prototxt")]
    it, state = resume_point(fold_dir, log, fold)
    short = snapshot_space_problem(cfg.out, fold_dir, solver, it)
    if short:
        return False, short
    if state:
        cmd += ["--snapshot", state]
        log("fold %02d: resuming from iteration %d (%s)" % (fold, it, os.path.basename(state)))
    if gpu_ids:
        cmd += ["--gpu", ",".join(str(g) for g in gpu_ids)]
    # glog 0.6 (Debian 12) writes I20261128 ...; BVLC's tools/extra/parse_log.py reads only
    # the classic I1128 ... prefix (psn.caffe_log reads both).
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0",
               GLOG_log_year_in_prefix="false")
    if not gpu_ids and cfg.jobs > 1:
        # Several CPU folds at once: one BLAS thread each. At the demo's width Caffe gains
        # nothing from a second OpenBLAS thread, so two one-thread folds take half the time.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.join(ROOT, "layers"), ROOT,
                                                      env.get("PYTHONPATH")]))
    log_path = run.log(fold)
    with open(log_path, "a") as logf:
        logf.write("# psn-caffe: %s\n" % " ".join(shlex.quote(c) for c in cmd))
        logf.flush()
        start = logf.tell()
        with _RUNNING_LOCK:
            if _STOPPING.is_set():
                return False, "interrupted before it started"
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                    cwd=fold_dir, preexec_fn=die_with_parent)
            _RUNNING.add(proc)
        try:
            diverged = watch_loss(proc, log_path, start)
            rc = proc.wait()
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(proc)
    if _STOPPING.is_set():
        return False, "interrupted (Caffe snapshots when it stops: run the same command to resume)"
    if diverged:
        return False, ("the training loss became %s at iteration %s: stopped there. Check the "
                       "data (tools/inspect_net.py) or lower base_lr in the schedule" % diverged)
    final = os.path.join(run.snapshot_dir(fold), "%s_iter_%d.caffemodel" % (cfg.model, solver.max_iter))
    if rc != 0 or not os.path.exists(final):
        return False, "caffe train exited with %d; last lines of %s:\n%s" % (
            rc, log_path, tail(log_path))
    # Relative to the fold folder: a copied or moved run folder uses its own weights.
    write_atomic(done, os.path.relpath(final, fold_dir) + "\n")
    return True, "trained %d iterations" % solver.max_iter


def done_weights(fold_dir):
    """The final weights a fold's DONE file names (relative to the fold folder; a DONE written
    before that held an absolute path, which is mapped into this fold's snapshots/)."""
    with open(os.path.join(fold_dir, RunFolder.DONE)) as f:
        name = f.read().strip()
    if os.path.isabs(name):
        return os.path.join(fold_dir, RunFolder.SNAPSHOTS, os.path.basename(name))
    return os.path.join(fold_dir, name)


_LOSS = re.compile(r"Iteration (\d+).*?, loss = (\S+)")


def watch_loss(proc, log_path, start, poll=0.5):
    """Wait for caffe, reading its log as it grows; stop it when the loss turns NaN or
    infinite (Caffe itself trains on to max_iter and then crashes). Returns
    (value, iteration) of the loss that stopped it, or None."""
    pos = start
    pending = ""
    while True:
        done = proc.poll() is not None
        with open(log_path, errors="replace") as f:
            f.seek(pos)
            chunk = f.read()
            pos = f.tell()
        lines = (pending + chunk).split("\n")
        pending = lines.pop()
        for line in lines:
            m = _LOSS.search(line)
            if m and m.group(2).lstrip("-").lower() in ("nan", "inf"):
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                return m.group(2), m.group(1)
        if done:
            return None
        time.sleep(poll)


def snapshot_space_problem(run_dir, fold_dir, solver, start_iter):
    """Why the fold's snapshots will not fit on the disk, or None. The size of one snapshot
    is that of the largest .caffemodel any fold of the run has written (so the first fold of a
    run is not checked); a snapshot is that plus its .solverstate, about as large again."""
    import shutil
    sizes = [os.path.getsize(p) for p in glob.glob(os.path.join(run_dir, "fold*", RunFolder.SNAPSHOTS,
                                                                 "*.caffemodel"))]
    if not sizes:
        return None
    every = solver.snapshot or solver.max_iter
    count = max(1, math.ceil((solver.max_iter - start_iter) / float(every)))
    need = 2 * max(sizes) * count
    free = shutil.disk_usage(fold_dir).free
    if need > free:
        return ("its %d snapshot(s) need about %.1f GiB and %.1f GiB are free in %s: free some "
                "space, or snapshot less often (schedule key 'snapshot'), and run again"
                % (count, need / 2.0 ** 30, free / 2.0 ** 30, fold_dir))
    return None


# The caffe processes training now, for stop_training (run_folds' Ctrl-C).
_RUNNING = set()
_RUNNING_LOCK = threading.Lock()
_STOPPING = threading.Event()


def stop_training(sig=signal.SIGINT):
    """Stop every caffe this process runs and start no other: SIGINT makes Caffe write a
    snapshot and exit (its sigint_effect 'stop', snapshot_after_train), so the folds resume
    from there; a second call sends SIGTERM."""
    _STOPPING.set()
    with _RUNNING_LOCK:
        for proc in _RUNNING:
            with contextlib.suppress(OSError):
                proc.send_signal(sig)


def reset_stop():
    """Let training start again after stop_training (a new run in the same process)."""
    _STOPPING.clear()


def tail(path, lines=15):
    """What a failed caffe run's log says: its cause lines (glog's F and E lines, 'Check
    failed', 'Error parsing'), which sit above the stack trace, then the last lines."""
    with open(path, errors="replace") as f:
        text = f.readlines()
    start = max((i for i, l in enumerate(text) if l.startswith("# psn-caffe: ")), default=0)
    text = text[start:]
    cause = [l for l in text if re.match(r"[FE]\d{4}", l) or "Check failed" in l
             or "Error parsing" in l or "No space left" in l]
    last = text[-lines:]
    if not cause:
        return "".join(last)
    return ("cause: " + "".join(cause[-3:]) + "last lines:\n"
            + "".join(l for l in last if l not in cause[-3:]))
