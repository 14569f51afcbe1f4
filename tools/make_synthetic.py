#!/usr/bin/env python3
"""Synthetic CASME II-format database: see `python tools/make_synthetic.py --help`."""
import sys

import _init_paths  # noqa: F401,E402  (the checkout on sys.path)

from synthetic import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
