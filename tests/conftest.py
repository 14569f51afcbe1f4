import os
import signal
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


# Test tiers (tools/run_tests.sh --fast runs only the unmarked ones, two at a time).
TIER_FILES = {"test_cuda_build.py": "cuda", "test_cuda_compile.py": "cuda",
              "test_docker.py": "docker"}


def pytest_configure(config):
    # A suite started in the background by a non-interactive shell (`nohup ... &`, some CI
    # runners) inherits SIGINT ignored: Python then raises no KeyboardInterrupt, and the
    # tools it starts inherit the ignore, so the Ctrl-C tests would fail for the launch, not
    # for the code. Ctrl-C as a terminal gives it, for this process and (reset at exec) its
    # children.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line("markers", "caffe: needs the Caffe that tools/build_caffe.sh builds")
    config.addinivalue_line("markers", "cuda: compiles Caffe's CUDA sources with nvcc (minutes)")
    config.addinivalue_line("markers", "docker: checks the Dockerfiles")
    config.addinivalue_line("markers", "slow: pure Python but 5 s or more; every tier but --fast "
                                       "runs it")


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = TIER_FILES.get(os.path.basename(str(item.fspath)))
        if tier:
            item.add_marker(getattr(pytest.mark, tier))
        if {"caffe", "caffe_env"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.caffe)


@pytest.fixture(scope="session")
def caffe_env():
    """os.environ-style dict for subprocesses running the built Caffe; imports pycaffe here.

    Skips its tests, saying why, when Caffe is not built; under tools/run_tests.sh (which
    builds Caffe first and sets PSN_REQUIRE_CAFFE) that is a failure instead.
    """
    env, err = _caffe_env()
    if env is None:
        why = ("Caffe is not built for this checkout: tools/run_tests.sh (or "
               "tools/build_caffe.sh) builds it.\n" + err)
        if os.environ.get("PSN_REQUIRE_CAFFE") == "1":
            pytest.fail(why)
        pytest.skip(why)
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



# ------------------------------------------- the preprocessing run that several files read

@pytest.fixture(scope="session")
def roots(tmp_path_factory):
    """({'casme2': folder, 'samm': folder}, the corrupt frame): tests/pipeline_helpers.py's
    fake databases, made once per session; nothing writes into them (copy them first)."""
    from fake_databases import make_casme2, make_samm
    from pipeline_helpers import CASME2_ROWS, CORRUPT
    base = tmp_path_factory.mktemp("databases")
    casme2 = make_casme2(base, rows=CASME2_ROWS, tree="selected")
    samm = make_samm(base)
    bad = os.path.join(casme2, "CASME2_RAW_selected", "sub04", "EP06_02", f"img{CORRUPT[2]}.jpg")
    with open(bad, "wb") as f:
        f.write(b"this is not a JPEG")
    return {"casme2": casme2, "samm": samm}, bad


@pytest.fixture(scope="session")
def first(roots, tmp_path_factory):
    """(out, summary, log lines) of one preprocessing run of `roots`, made once per session;
    tests that write into `out` work on a copy (pipeline_helpers.copy_run)."""
    from pipeline_helpers import AUGMENT, OPTIONS
    from preprocessing.pipeline import run
    out = str(tmp_path_factory.mktemp("run") / "out")
    lines = []
    summary = run(roots[0], out, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=1,
                  progress=False, log=lines.append)
    return out, summary, lines


# ------------------------------------------- the smoke training that several files read

@pytest.fixture(scope="session")
def trained(caffe_env, tmp_path_factory):
    """(data, out, the CompletedProcess) of one smoke training by tools/run_folds.py on
    run_folds_helpers.make_data's folder, made once per session; tests that write into
    `data` or `out` copy them first (one moves them away and back)."""
    from run_folds_helpers import make_data, run_tool
    base = tmp_path_factory.mktemp("folds")
    data = make_data(str(base / "data"))
    out = str(base / "run")
    res = run_tool(caffe_env, "--data", data, "--out", out, "--model", "psn",
                   "--schedule", "smoke", "--width", "0.125")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return data, out, res


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    """A folder of one synthetic clip's frames, for tools/predict.py."""
    import synthetic
    db = str(tmp_path_factory.mktemp("clip") / "syn")
    synthetic.generate(db, n_subjects=1, clips_per_subject=1, seed=3)
    return [dp for dp, _, fn in os.walk(db) if any(f.endswith(".jpg") for f in fn)][0]

def load_benchmark(name):
    """benchmarks/<name>.py as a module, with its folder on sys.path (its `import _init_paths`)."""
    import importlib.util
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
