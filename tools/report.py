#!/usr/bin/env python3
"""Paper tables and figures from predictions.csv files and Caffe logs; see psn/report/."""
import sys

import _init_paths  # noqa: F401,E402  (the checkout on sys.path)

from psn.report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
