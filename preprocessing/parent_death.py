"""Child processes that die with their parent (Linux prctl PR_SET_PDEATHSIG).

A killed preprocessing run must not leave pool workers that finish their clips and write
cache files after the folder's lock is released (a new run with other options would then
shard the killed run's results), and a killed run_folds must not leave caffe training on.
Elsewhere than Linux prctl is missing and this does nothing."""
from __future__ import annotations

import os
import signal

_PR_SET_PDEATHSIG = 1


def _prctl():
    import ctypes
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved once on import: die_with_parent also runs between fork and exec (caffe's
# preexec_fn), where it must not import or take locks (run_folds forks from several threads).
_PRCTL = _prctl()


def die_with_parent(sig=signal.SIGTERM, parent=None):
    """Ask the kernel to send `sig` to this process when its parent dies. With `parent` (the
    pid the parent had), a parent that already died before the request took effect ends this
    process at once: the signal is only sent on a death after the call."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(sig))
    if parent is not None and os.getppid() != parent:
        os._exit(1)
