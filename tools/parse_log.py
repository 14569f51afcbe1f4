#!/usr/bin/env python3
"""Caffe log -> LOGFILE.train / LOGFILE.test CSV files (BVLC's columns); see psn/caffe_log.py."""
import sys

import _init_paths  # noqa: F401,E402  (the checkout on sys.path)

from psn.caffe_log import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
