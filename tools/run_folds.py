#!/usr/bin/env python3
"""Train a net on every fold with `caffe train` and predict the held-out clips (psn.training)."""
import sys

import _init_paths  # noqa: F401,E402  (the checkout on sys.path)
from psn.env import ensure_caffe  # noqa: E402

if __name__ == "__main__":
    ensure_caffe()
    from psn.training import main
    sys.exit(main())
