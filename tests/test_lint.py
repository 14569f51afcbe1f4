"""The code passes its linters: ruff on the Python (pyproject.toml), shellcheck on the shell."""
import glob
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def _tool(name):
    path = os.path.join(BIN, name)
    if not os.path.exists(path):
        path = shutil.which(name)
    if not path:
        pytest.fail("%s is not installed: it is in requirements.txt (tools/run_tests.sh "
                    "installs it)" % name)
    return path


def test_ruff():
    res = subprocess.run([_tool("ruff"), "check", "--no-cache", ROOT], capture_output=True,
                         text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def shell_scripts():
    found = glob.glob(os.path.join(ROOT, "tools", "*.sh")) + glob.glob(os.path.join(ROOT, "docker", "*.sh"))
    found.append(os.path.join(ROOT, ".ci", "run"))
    return sorted(p for p in found if os.path.isfile(p))


def test_shellcheck():
    scripts = shell_scripts()
    assert len(scripts) >= 13, scripts   # the lint must not silently check nothing
    res = subprocess.run([_tool("shellcheck"), "-x", "-f", "gcc"] + scripts, capture_output=True,
                         text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_scripts_find_the_checkout_in_one_place():
    """tools/ and benchmarks/ scripts put the checkout on sys.path through their folder's
    _init_paths.py (py-faster-rcnn's way), not with a sys.path line of their own each."""
    scripts = glob.glob(os.path.join(ROOT, "tools", "*.py")) + glob.glob(os.path.join(ROOT, "benchmarks", "*.py"))
    own = []
    for path in scripts:
        if os.path.basename(path) == "_init_paths.py":
            continue
        with open(path) as f:
            text = f.read()
        if "sys.path.insert" in text or "sys.path.append" in text:
            own.append(os.path.relpath(path, ROOT))
    assert own == [], own
    for folder in ("tools", "benchmarks"):
        res = subprocess.run([sys.executable, "-c", "import _init_paths, psn.nets, psn_layers"],
                             cwd=os.path.join(ROOT, folder), capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=""))
        assert res.returncode == 0, res.stderr[-2000:]
