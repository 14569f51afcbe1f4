#!/usr/bin/env python3
"""UF1 and UAR recomputed from a per-clip log (this project's or another's); see psn/clip_log.py."""
import sys

import _init_paths  # noqa: F401,E402  (the checkout on sys.path)
from psn.clip_log import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
