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
