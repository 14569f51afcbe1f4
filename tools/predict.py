#!/usr/bin/env python3
"""Classify one clip folder with a trained model (psn.predict)."""
import sys

import _init_paths  # noqa: F401,E402  (the checkout on sys.path)
from psn.env import ensure_caffe  # noqa: E402

if __name__ == "__main__":
    ensure_caffe()
    from psn.predict import main
    sys.exit(main())
