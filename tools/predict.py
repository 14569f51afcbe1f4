#!/usr/bin/env python3
"""Classify one clip folder with a trained model (psn.predict)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from psn.env import ensure_caffe  # noqa: E402

if __name__ == "__main__":
    ensure_caffe()
    from psn.predict import main
    sys.exit(main())
