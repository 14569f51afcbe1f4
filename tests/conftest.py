import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (ROOT, os.path.join(ROOT, "layers")):
    if p not in sys.path:
        sys.path.insert(0, p)


def _caffe_env():
    """The environment of the Caffe that tools/build_caffe.sh built for this checkout."""
    out = subprocess.run([os.path.join(ROOT, "tools", "build_caffe.sh"), "--print-env"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip()
    env = {}
    for line in out.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = os.path.expandvars(value.strip('"'))
    return env, ""


@pytest.fixture(scope="session")
def caffe_env():
    """os.environ-style dict for subprocesses running the built Caffe; imports pycaffe here.

    Fails (does not skip) when Caffe is not built: the test command builds it first.
    """
    env, err = _caffe_env()
    if env is None:
        pytest.fail("Caffe is not built for this checkout: run tools/run_tests.sh "
                    "(or tools/build_caffe.sh) first.\n" + err)
    full = dict(os.environ)
    full.update(env)
    full.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("GLOG_minloglevel", "2")
    for p in reversed(env["PYTHONPATH"].split(":")):
        if p and p not in sys.path:
            sys.path.insert(0, p)
    return full


@pytest.fixture(scope="session")
def caffe(caffe_env):
    import caffe as caffe_module
    caffe_module.set_mode_cpu()
    return caffe_module


# ----------------------------------------------------------------- a process holding a lock

_HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, %r)
    from preprocessing.folder_lock import folder_lock
    with folder_lock(sys.argv[1], "testing", shared=sys.argv[2] == "shared"):
        print("held", flush=True)
        time.sleep(600)
""") % os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def holder():
    """start(folder, mode='exclusive'|'shared'): a process holding the folder's lock (the
    Popen); every one started is killed after the test."""
    procs = []

    def start(folder, mode="exclusive"):
        p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), mode],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "held"
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
