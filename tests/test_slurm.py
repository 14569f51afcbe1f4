"""psn.slurm: the job array script that run_folds --launcher slurm writes (every path quoted,
a newline in one refused), and that script on a real Slurm cluster: the job array trains
every fold, the predictions and the report follow, and a cancelled task is redone by
submitting again while the finished folds are left alone.

The cluster tests are opt-in: `tools/run_tests.sh --slurm` (tools/check_slurm.sh) starts a
one-node cluster on this machine and runs this file with SLURM_CONF pointing at it;
elsewhere they skip. The script tests run everywhere.
"""
import glob
import os
import re
import subprocess
import sys
import time

import pytest

from run_folds_helpers import ROOT, make_data, run_tool

# The tests on a Slurm cluster: opt-in.
cluster = pytest.mark.skipif(
    not os.environ.get("PSN_SLURM_CHECK"),
    reason="opt-in: tools/run_tests.sh --slurm starts a one-node Slurm cluster for it")


# ------------------------------------------------------------------------ the script

def test_slurm_launcher_writes_a_job_array(caffe_env, tmp_path):
    data = make_data(str(tmp_path / "data"))
    out = str(tmp_path / "run")
    res = run_tool(caffe_env, "--data", data, "--out", out, "--launcher", "slurm",
                   "--schedule", "paper", "--gpus", "0")
    assert res.returncode == 0, res.stderr
    with open(os.path.join(out, "slurm_job.sh")) as f:
        script = f.read()
    assert "#SBATCH --array=1,2" in script and "#SBATCH --gres=gpu:1" in script
    assert '--folds "$FOLD" --gpus 0 --no-predict' in script
    assert "--data %s" % data in script and "--schedule paper" in script
    assert "--launcher" not in script.split("#SBATCH --output")[1]
    assert "build_caffe.sh --print-env --cuda" in script
    subprocess.run(["bash", "-n", os.path.join(out, "slurm_job.sh")], check=True)
    # Without --gpus: CPU tasks, no GPU asked for, the CPU build.
    cpu = str(tmp_path / "cpu")
    res = run_tool(caffe_env, "--data", data, "--out", cpu, "--launcher", "slurm",
                   "--schedule", "smoke")
    assert res.returncode == 0, res.stderr
    with open(os.path.join(cpu, "slurm_job.sh")) as f:
        script = f.read()
    assert "gres" not in script and "#SBATCH --cpus-per-task=1" in script
    assert '--folds "$FOLD" --no-predict' in script and "--cuda" not in script


def _fake_checkout(base):
    """A checkout whose tools/ only record how the SLURM task called them."""
    root = os.path.join(base, "check out $(touch PWNED) `touch PWNED2`")
    os.makedirs(os.path.join(root, "tools"))
    with open(os.path.join(root, "tools", "build_caffe.sh"), "w") as f:
        f.write("#!/bin/bash\necho true\n")
    os.chmod(os.path.join(root, "tools", "build_caffe.sh"), 0o755)
    with open(os.path.join(root, "tools", "run_folds.py"), "w") as f:
        f.write("import json, os, sys\n"
                "json.dump({'argv': sys.argv[1:], 'cwd': os.getcwd()}, "
                "open(os.environ['CALLED'], 'w'))\n")
    return root


def test_slurm_script_quotes_every_path(tmp_path, monkeypatch):
    """Spaces, $(…), backticks and quotes in the checkout and run paths reach run_folds as
    they are, and nothing in them runs (the checkout path was pasted unquoted after cd)."""
    from psn import slurm
    from psn.config import RunConfig
    root = _fake_checkout(str(tmp_path))
    monkeypatch.setattr(slurm, "ROOT", root)
    out = str(tmp_path / "run 'x' $(touch PWNED3) #1")
    os.makedirs(out)
    cfg = RunConfig(data=str(tmp_path / "my data"), out=out, schedule="smoke",
                    launcher="slurm")
    script = slurm.write_slurm(cfg, [1, 2])
    called = str(tmp_path / "called.json")
    work = tmp_path / "cwd"
    work.mkdir()
    res = subprocess.run(["bash", script], cwd=str(work), capture_output=True, text=True,
                         env=dict(os.environ, SLURM_ARRAY_TASK_ID="2", CALLED=called))
    assert res.returncode == 0, res.stderr
    import json
    with open(called) as f:
        got = json.load(f)
    assert got["cwd"] == root
    assert got["argv"] == cfg.flags() + ["--folds", "2", "--no-predict"]
    assert not [p for p in (work, tmp_path) for n in os.listdir(p) if n.startswith("PWNED")]
    with open(script) as f:
        text = f.read()
    # sbatch reads #SBATCH lines itself: backslash escapes are the quoting every version knows.
    assert "#SBATCH --output=%s/slurm-%%A_%%a.out\n" % out.replace(" ", "\\ ").replace(
        "'", "\\'").replace("$", "\\$").replace("(", "\\(").replace(")", "\\)").replace(
        "#", "\\#") in text


@pytest.mark.parametrize("where", ["out", "data", "root"])
def test_a_newline_in_a_path_is_refused_for_the_slurm_script(tmp_path, monkeypatch, where, capsys):
    """A newline in --out put a shell line of its own into slurm_job.sh."""
    from psn import slurm, training
    from psn.config import RunConfig
    data = make_data(str(tmp_path / ("da\nta" if where == "data" else "data")), groups=2)
    out = str(tmp_path / ("run\ntouch PWNED" if where == "out" else "run"))
    if where == "root":
        monkeypatch.setattr(slurm, "ROOT", str(tmp_path / "check\nout"))
    cfg = RunConfig(data=data, out=out, schedule="smoke", launcher="slurm")
    assert training.run_folds(cfg, log=lambda *a: None) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "newline" in err and "Fix:" in err
    assert not os.path.exists(os.path.join(out, "slurm_job.sh"))


# ------------------------------------------------------------- on a Slurm cluster (opt-in)

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


@cluster
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


@cluster
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
