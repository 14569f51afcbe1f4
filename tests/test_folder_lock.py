"""One writer per folder (preprocessing/folder_lock.py): refused while held, named, taken over
after the holder is killed; the pipeline and run_folds hold it."""
import os
import signal
import subprocess
import sys

import pytest

from preprocessing.folder_lock import FolderBusy, folder_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def test_a_held_folder_is_refused_naming_the_holder(tmp_path, holder):
    p = holder(tmp_path)
    with pytest.raises(FolderBusy, match=f"in use by the writer pid {p.pid} on .*, since "):
        with folder_lock(str(tmp_path), "writing"):
            pass
    with pytest.raises(FolderBusy):
        with folder_lock(str(tmp_path), "reading", shared=True):
            pass


def test_a_killed_holder_leaves_no_lock_and_is_named_when_taken_over(tmp_path, holder):
    p = holder(tmp_path)
    p.send_signal(signal.SIGKILL)
    p.wait()
    said = []
    with folder_lock(str(tmp_path), "writing", log=said.append):
        pass
    assert len(said) == 1 and f"taking over the lock left by pid {p.pid}" in said[0]


def test_readers_share_and_keep_writers_out(tmp_path, holder):
    p = holder(tmp_path, "shared")
    with folder_lock(str(tmp_path), "reading", shared=True):
        pass
    with pytest.raises(FolderBusy, match=f"reader\\(s\\) pid {p.pid} "):
        with folder_lock(str(tmp_path), "writing"):
            pass
    p.kill()
    p.wait()
    with folder_lock(str(tmp_path), "writing"):
        # The killed reader's file is cleared by the next writer.
        assert [n for n in os.listdir(tmp_path) if n.startswith(".lock.")] == []


def test_a_read_only_folder_can_still_be_read(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    os.chmod(tmp_path, 0o555)
    try:
        with folder_lock(str(tmp_path), "reading", shared=True) as path:
            assert path is None
    finally:
        os.chmod(tmp_path, 0o755)


def test_preprocess_into_a_busy_folder_is_refused_in_one_line(tmp_path, holder):
    from fake_databases import make_casme2
    root = make_casme2(tmp_path / "db")
    out = tmp_path / "out"
    p = holder(out)
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "preprocess.py"), "run",
                          "--casme2", root, "--out", str(out), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and f"pid {p.pid}" in lines[0] and str(out) in lines[0], res.stderr
    assert sorted(os.listdir(out)) == [".lock"]      # nothing written


def test_a_file_system_without_locks_runs_unguarded_and_says_so(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    said = []
    with folder_lock(str(tmp_path), "writing", log=said.append) as path:
        assert path is None
    assert len(said) == 1 and "cannot lock files (No locks available)" in said[0]
