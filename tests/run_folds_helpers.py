"""A tiny data folder and tools/run_folds.py run on it: what the tests of training need.

make_data writes a data folder in the layout of `tools/preprocess.py run`; run_tool runs
tools/run_folds.py in a child process. conftest.py's session fixture `trained` is one smoke
training of make_data's folder, made once for the session; tests that write into its folders
work on copies (shutil.copytree). Used by test_run_folds.py, test_caffe_train.py,
test_fold_setup.py, test_run_record.py, test_net_files.py, test_slurm.py and test_gpu_bundle.py.
"""
import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np

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


def caffe_pids(solver):
    """The pids of the `caffe train` processes training with this solver.prototxt."""
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


@contextlib.contextmanager
def training(caffe_env, *args, stderr=subprocess.PIPE):
    """run_folds started with args (fold 1 first) and seen to have started fold 1's caffe:
    yields (the run_folds process, fold 1's solver.prototxt); any caffe of it still running
    afterwards is killed, so that a failing test leaves no process behind."""
    run = args[args.index("--out") + 1]
    p = subprocess.Popen([sys.executable, TOOL] + list(args), env=caffe_env,
                         stdout=subprocess.PIPE, stderr=stderr, text=True)
    solver = os.path.join(run, "fold01", "solver.prototxt")
    try:
        deadline = time.time() + 120
        while not caffe_pids(solver) and time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
        assert caffe_pids(solver), "caffe never started"
        yield p, solver
    finally:
        for pid in caffe_pids(solver):
            os.kill(pid, signal.SIGKILL)
        if p.poll() is None:
            p.kill()
            p.wait()


def _one_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def _predict_tool(caffe_env, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "predict.py")] + list(args),
                          capture_output=True, text=True, env=caffe_env, timeout=600)
