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


@pytest.mark.parametrize("shared", [False, True], ids=["writer", "reader"])
def test_a_planted_lock_symlink_is_refused_and_its_target_left_alone(tmp_path, shared):
    """A `.lock` symlink in the folder would have its target truncated and overwritten."""
    from preprocessing.errors import InputError
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    folder = tmp_path / "out"
    folder.mkdir()
    os.symlink(target, folder / ".lock")
    with pytest.raises(InputError, match=r"\.lock is a symbolic link.*Fix: remove it"):
        with folder_lock(str(folder), "writing", shared=shared):
            pass
    assert target.read_text() == "keep me\n"


def test_a_lock_that_is_no_regular_file_is_refused(tmp_path):
    """A FIFO as `.lock`: reading the last writer's record from it would wait forever."""
    from preprocessing.errors import InputError

    def too_long(*_):
        raise TimeoutError("folder_lock blocked on a FIFO")
    os.mkfifo(tmp_path / ".lock")
    old = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(5)
    try:
        with pytest.raises(InputError, match=r"\.lock is not a regular file.*Fix: remove it"):
            with folder_lock(str(tmp_path), "writing"):
                pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_planted_reader_file_symlink_is_not_followed(tmp_path):
    """The reader's `.lock.HOST.PID` file is opened without following a link too."""
    import socket
    from preprocessing.errors import InputError
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    folder = tmp_path / "out"
    folder.mkdir()
    os.symlink(target, folder / f".lock.{socket.gethostname()}.{os.getpid()}")
    with pytest.raises(InputError, match="is a symbolic link"):
        with folder_lock(str(folder), "reading", shared=True):
            pass
    assert target.read_text() == "keep me\n"
