#!/usr/bin/env python3
"""Preprocessing CLI: see `python tools/preprocess.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from preprocessing.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
