"""One writer per output folder: an advisory lock on FOLDER/.lock.

Two `preprocess.py run` into one --out mixed their shards and fold lists, and two `run_folds`
into one run folder trained one fold twice into one log; both exited 0. Every tool that writes
a folder now holds its lock (exclusive), and a tool that reads a folder another one may be
writing holds it shared (run_folds reads the preprocessing folder while it trains, so
preprocessing cannot rewrite the shards under a training run).

The lock is the kernel's (flock): a process that dies, however it dies, releases it, so a
killed run never leaves a lock that blocks the next one. The lock file keeps the last
writer's pid, host, command and start time, and each reader leaves a `.lock.HOST.PID` file
while it reads, for the message that names who holds the folder.

Both are opened without following a symbolic link (O_NOFOLLOW), and a lock that is not a
regular file is refused: a `.lock` link planted in an output folder would otherwise have its
target truncated and overwritten, and a FIFO there would block the tool forever.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time

from preprocessing.errors import InputError

__all__ = ["FolderBusy", "folder_lock", "LOCK_NAME"]

LOCK_NAME = ".lock"


class FolderBusy(InputError):
    """Another process holds the folder's lock; the message names it."""


def _describe(path):
    try:
        with os.fdopen(_open_nofollow(path, os.O_RDONLY)) as f:   # InputError is a ValueError
            info = json.load(f)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
        return (f"pid {info.get('pid')} on {info.get('host')} ({info.get('command')}, "
                f"since {since})")
    except (OSError, ValueError, AttributeError):
        return None


def _not_ours(path, why):
    return InputError(f"{path} {why}, not a lock file of this project: refusing to write through "
                      f"it. Fix: remove it (check who put it there), then run again.")


def _open_nofollow(path, flags):
    """os.open(path, flags | O_NOFOLLOW | O_NONBLOCK) of a regular file; InputError for a
    symbolic link or anything else that is no regular file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _not_ours(path, "is a symbolic link") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_ours(path, "is not a regular file")
    return fd


def _me():
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "command": " ".join(os.path.basename(a) if i == 0 else a
                                for i, a in enumerate(sys.argv))[:300],
            "since": time.time()}


def _holders(folder, fd):
    """Who holds the lock: the writer, or the readers (their .lock.HOST.PID files)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return "the writer " + (_describe(os.path.join(folder, LOCK_NAME)) or "(unknown)")
    readers = [d for d in (_describe(os.path.join(folder, n)) for n in sorted(os.listdir(folder))
                           if n.startswith(LOCK_NAME + ".")) if d]
    return "the reader(s) " + ("; ".join(readers) if readers else "(unknown)")


@contextlib.contextmanager
def folder_lock(folder, what, *, shared=False, log=None, wait=0.0):
    """Hold FOLDER/.lock (exclusive, or shared for readers) for the block.

    Raises FolderBusy, naming the holder, when it is taken, at once or after `wait` seconds
    of trying (for a lock held only for moments); `what` says what this process is doing with
    the folder ('writing', 'training in', ...)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_NAME)
    try:
        fd = _open_nofollow(path, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        if shared and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            # A folder this user cannot write (a shared, read-only copy): nobody writes
            # it through this user either, so reading it needs no lock.
            yield None
            return
        raise InputError(f"cannot create the lock file {path}: {exc.strerror}. Fix: make "
                         f"{folder} writable, or use another folder.") from None
    try:
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or time.monotonic() >= deadline:
                        raise
                    time.sleep(0.05)
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                # A file system without locks (some NFS mounts): run unguarded, and say so.
                if log is not None:
                    log(f"{folder}: this file system cannot lock files ({exc.strerror}); "
                        "running without the guard against a second run into the folder")
                yield None
                return
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise FolderBusy(f"{folder} is in use by {_holders(folder, fd)}: not {what} it now. "
                             f"Wait for that run to end, or stop it, then run again.") from None
        reader_file = None
        if shared:
            reader_file = os.path.join(folder, f"{LOCK_NAME}.{socket.gethostname()}.{os.getpid()}")
            with os.fdopen(_open_nofollow(reader_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                           "w") as f:
                json.dump(_me(), f)
        else:
            previous = _describe(path)
            if previous and log is not None and f"pid {os.getpid()} " not in previous:
                log(f"{folder}: taking over the lock left by {previous} (no longer running)")
            # Readers killed while reading left their files; no one holds them now.
            for name in os.listdir(folder):
                if name.startswith(LOCK_NAME + "."):
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(folder, name))
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_me()).encode(), 0)
        try:
            yield path
        finally:
            if reader_file:
                with contextlib.suppress(OSError):
                    os.remove(reader_file)
    finally:
        os.close(fd)    # releases the lock
