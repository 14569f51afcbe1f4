#!/usr/bin/env python3
"""Train a net on every fold with `caffe train` and predict the held-out clips (psn.training)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from psn.env import ensure_caffe  # noqa: E402

if __name__ == "__main__":
    ensure_caffe()
    from psn.training import main
    sys.exit(main())
