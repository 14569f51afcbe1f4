#!/usr/bin/env python3
"""Paper tables and figures from predictions.csv files and Caffe logs; see psn/report/."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from psn.report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
