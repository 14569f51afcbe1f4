"""Atomic file writes: a temporary file beside the target, renamed over it on success.

A reader (or a rerun after an interruption) sees the old file or the new one, never half of
one. Every writer of the project goes through here.
"""
import contextlib
import os
import re
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
