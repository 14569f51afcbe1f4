#!/usr/bin/env python3
"""Preprocessing CLI: see `python tools/preprocess.py --help`."""
import sys

import _init_paths  # noqa: F401,E402  (the checkout on sys.path)

from preprocessing.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
