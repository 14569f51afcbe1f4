#!/usr/bin/env python3
"""Synthetic CASME II-format database: see `python tools/make_synthetic.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from synthetic import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
