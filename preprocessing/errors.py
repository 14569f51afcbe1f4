"""One line for an operating-system error, naming the file and the fix (every tool's main).

A full disk, a read-only folder or a missing file ends in this line and exit status 2, not
in a Python traceback. Work already finished is never lost on the way:
every file is written to a temporary name and renamed (preprocessing.atomic).
"""
import errno
import os
import sys

__all__ = ["InputError", "check_root", "os_error_line", "missing_caffe_line", "fail"]


class InputError(ValueError):
    """Bad user input (missing folder, malformed sheet): the message names the path and the fix."""


def check_root(root, what):
    """The absolute path of a database folder the user gave; InputError if it is none."""
    if not root or not os.path.isdir(root):
        raise InputError(f"{root}: folder does not exist. Fix: pass the folder holding your copy of {what}.")
    return os.path.abspath(root)

_FIX = {
    errno.ENOSPC: "free some space (or choose a folder on another disk), then run the same "
                  "command again: what was finished is kept",
    errno.EDQUOT: "free some of your quota, then run the same command again",
    errno.EROFS: "that file system is read-only: choose an output folder you can write",
    errno.EACCES: "you may not write there: choose another folder or fix its permissions",
    errno.EPERM: "you may not write there: choose another folder or fix its permissions",
    errno.ENOENT: "check the path",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def os_error_line(exc):
    """'No space left on device: /out/shards/group01.h5 (free some space, ...)'."""
    what = exc.strerror or str(exc)
    where = exc.filename if exc.filename is not None else ""
    fix = _FIX.get(exc.errno)
    return "%s%s%s" % (what, ": %s" % where if where else "", " (%s)" % fix if fix else "")


def missing_caffe_line(exc):
    return ("pycaffe cannot be imported (%s): build it with tools/build_caffe.sh, then "
            "eval \"$(tools/build_caffe.sh --print-env)\" (tools/run_psn.sh and "
            "tools/run_tests.sh do both)" % exc)


def fail(prefix, what):
    """Print prefix and one line for `what` (an exception, or a message) to stderr; returns 2,
    every tool's exit code for bad input. An OSError is told by os_error_line."""
    text = os_error_line(what) if isinstance(what, OSError) else str(what)
    print(prefix + text, file=sys.stderr)
    return 2
