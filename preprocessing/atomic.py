"""Atomic file writes: a temporary file beside the target, renamed over it on success.

A reader (or a rerun after an interruption) sees the old file or the new one, never half of
one. Every writer of the project goes through here.
"""
import contextlib
import errno
import os
import re
import shutil
import threading

# The names atomic_path gives its temporary files: .NAME.tmpPID-THREAD.
TEMPORARY = re.compile(r"^\..+\.tmp\d+-\d+$")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; it replaces `path` when the block succeeds
    and is removed when it fails."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # pid and thread id: run_folds writes from threads, the pipeline from processes.
    tmp = os.path.join(directory, ".%s.tmp%d-%d" % (os.path.basename(path), os.getpid(),
                                                    threading.get_ident()))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_atomic(path, data):
    """Write text (UTF-8, newlines as given) or bytes to path atomically; returns path."""
    with atomic_path(path) as tmp:
        if isinstance(data, (bytes, bytearray)):
            with open(tmp, "wb") as f:
                f.write(data)
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                f.write(data)
    return path


def remove_temporaries(root):
    """Delete the temporary files of atomic writes under root (a kill leaves them); returns
    how many. Call it only while holding root's lock (preprocessing.folder_lock): then no
    writer of this project can be using them."""
    removed = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            if TEMPORARY.match(name):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(dirpath, name))
                    removed += 1
    return removed


class NotOurs(ValueError):
    """replaced_folder refuses to replace a folder its writer did not make."""


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def replaced_folder(path, is_ours):
    """Yield a staging folder beside `path` (.NAME.new-PID); when the block succeeds it takes
    the place of `path` whole, and the folder there before is removed. A reader, or a run
    killed at any point, finds the old folder or the new one, never files of both.

    `is_ours(path)`: whether an existing, non-empty `path` is one this writer made; anything
    else is refused (NotOurs) rather than replaced. A kill between the two renames leaves
    the old folder as .NAME.old-PID: the next call puts it back first, then removes the
    leftovers of writers no longer running."""
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    up = parent
    while not os.path.lexists(up):
        up = os.path.dirname(up)
    if not os.path.isdir(up):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
    os.makedirs(parent, exist_ok=True)
    left = re.compile(r"^\.%s\.(new|old)-(\d+)$" % re.escape(name))
    for entry in sorted(os.listdir(parent)):
        m = left.match(entry)
        if not m or _pid_alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and not os.path.lexists(path):
            os.rename(os.path.join(parent, entry), path)
        else:
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
    if os.path.isdir(path) and os.listdir(path) and not is_ours(path):
        raise NotOurs(f"{path} holds files this tool did not write: not replacing it. Give "
                         "an empty or new folder, or one this tool wrote before")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise NotOurs(f"{path} is a file, not a folder: give a folder")
    stage = os.path.join(parent, ".%s.new-%d" % (name, os.getpid()))
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(stage)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = os.path.join(parent, ".%s.old-%d" % (name, os.getpid()))
    if os.path.lexists(path):
        os.rename(path, old)
    os.rename(stage, path)
    shutil.rmtree(old, ignore_errors=True)
