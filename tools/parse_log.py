#!/usr/bin/env python3
"""Caffe log -> LOGFILE.train / LOGFILE.test CSV files (BVLC's columns); see psn/caffe_log.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from psn.caffe_log import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
