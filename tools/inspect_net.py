#!/usr/bin/env python3
"""Net health of a model on preprocessed data: signal, gradient, stream shares, tp (psn.net_health)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from psn.env import ensure_caffe  # noqa: E402

if __name__ == "__main__":
    ensure_caffe(prefix="inspect_net: ")
    from psn.net_health import main
    sys.exit(main())
