"""Operating-system errors end in one line naming the file and the fix, exit code 2."""
import errno
import os
import subprocess
import sys

import pytest

from preprocessing.errors import os_error_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_os_error_line_names_file_and_fix():
    line = os_error_line(OSError(errno.ENOSPC, "No space left on device", "/out/shards/g.h5"))
    assert line.startswith("No space left on device: /out/shards/g.h5 (free some space")
    assert "what was finished is kept" in line
    assert os_error_line(OSError(errno.EROFS, "Read-only file system", "/ro")).endswith(
        "choose an output folder you can write)")


def test_preprocess_disk_full_is_one_line(monkeypatch, capsys, tmp_path):
    from preprocessing import cli, pipeline
    import fake_databases as fd
    root = fd.make_casme2(tmp_path / "db")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x.h5"))

    monkeypatch.setattr(pipeline, "run", full)
    assert cli.main(["run", "--casme2", root, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "x.h5" in err[0]


def test_report_on_a_binary_file_is_one_line(tmp_path):
    bad = tmp_path / "predictions.csv"
    bad.write_bytes(bytes(range(256)) * 4)
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "report.py"), str(bad),
                          "--out", str(tmp_path / "rep")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "not text" in lines[0], res.stderr


def test_slurm_check_without_slurm_is_one_line(tmp_path):
    """tools/check_slurm.sh on a machine without Slurm: one line naming what to install."""
    import shutil
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "id", "dirname", "python3"):
        os.symlink(shutil.which(tool), str(bin_dir / tool))
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "tools", "check_slurm.sh")
    res = subprocess.run([str(bin_dir / "bash"), script], capture_output=True, text=True,
                         env={"PATH": str(bin_dir)})
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    if os.geteuid() == 0:
        assert lines == ["check_slurm: no slurmctld: install Slurm and munge first (Debian 12: "
                         "apt-get install slurmctld slurmd slurm-client munge)"]
    else:
        assert lines == ["check_slurm: needs root (slurmd runs the jobs as their user); run it "
                         "with sudo"]
