"""run_folds --launcher slurm on a real Slurm cluster: the job array trains every fold, the
predictions and the report follow, and a cancelled task is redone by submitting again while
the finished folds are left alone.

Opt-in: `tools/run_tests.sh --slurm` (tools/check_slurm.sh) starts a one-node cluster on
this machine and runs this file with SLURM_CONF pointing at it; elsewhere it skips.
"""
import glob
import os
import re
import subprocess
import sys
import time

import pytest

from test_run_folds import ROOT, make_data, run_tool

pytestmark = pytest.mark.skipif(
    not os.environ.get("PSN_SLURM_CHECK"),
    reason="opt-in: tools/run_tests.sh --slurm starts a one-node Slurm cluster for it")


def sbatch(script, *args):
    res = subprocess.run(["sbatch", "--parsable", *args, script], capture_output=True,
                         text=True, timeout=3600)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().split(";")[0]


def wait_for(job, timeout=1800):
    """Until no task of the job is pending or running."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i %T"], capture_output=True,
                             text=True).stdout.strip()
        if not out:
            return
        time.sleep(2)
    raise AssertionError("job %s still running after %d s" % (job, timeout))


def done(out):
    return sorted(int(re.search(r"fold(\d+)", d).group(1))
                  for d in glob.glob(os.path.join(out, "fold*", "DONE")))


RUN_FLAGS = ("--model", "psn", "--schedule", "smoke", "--width", "0.125")


def job_array(caffe_env, tmp_path):
    """(data, run folder, slurm_job.sh) of a three-fold smoke run written by run_folds."""
    data = make_data(str(tmp_path / "data"), groups=3)
    out = str(tmp_path / "run")
    res = run_tool(caffe_env, "--data", data, "--out", out, *RUN_FLAGS, "--launcher", "slurm")
    assert res.returncode == 0, res.stderr
    return data, out, os.path.join(out, "slurm_job.sh")


def test_job_array_trains_predicts_and_reports(caffe_env, tmp_path):
    data, out, script = job_array(caffe_env, tmp_path)
    job = sbatch(script, "--wait")
    assert done(out) == [1, 2, 3]
    logs = sorted(glob.glob(os.path.join(out, "slurm-%s_*.out" % job)))
    assert len(logs) == 3
    res = run_tool(caffe_env, "--data", data, "--out", out, *RUN_FLAGS, "--predict-only")
    assert res.returncode == 0, res.stderr
    with open(os.path.join(out, "predictions.csv")) as f:
        assert len(f.read().splitlines()) == 1 + 15
    report = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "report.py"),
                             os.path.join(out, "predictions.csv"), "--logs", out, "--out",
                             str(tmp_path / "report")], capture_output=True, text=True,
                            env=caffe_env)
    assert report.returncode == 0, report.stderr
    assert os.path.exists(str(tmp_path / "report" / "report.md"))


def test_a_cancelled_task_is_redone_by_submitting_again(caffe_env, tmp_path):
    _, out, script = job_array(caffe_env, tmp_path)
    job = sbatch(script)
    subprocess.run(["scancel", "%s_2" % job], check=True)
    wait_for(job)
    assert done(out) == [1, 3]
    finished = {f: os.stat(os.path.join(out, "fold%02d" % f, "DONE")).st_mtime_ns
                for f in (1, 3)}
    again = sbatch(script, "--wait")
    assert done(out) == [1, 2, 3]
    for f, mtime in finished.items():
        assert os.stat(os.path.join(out, "fold%02d" % f, "DONE")).st_mtime_ns == mtime
        with open(os.path.join(out, "slurm-%s_%d.out" % (again, f))) as log:
            assert "already trained" in log.read()
    with open(os.path.join(out, "slurm-%s_2.out" % again)) as log:
        assert "trained 4 iterations" in log.read()
