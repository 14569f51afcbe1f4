#!/usr/bin/env python3
"""Net health of a model on preprocessed data: signal, gradient, stream shares, tp (psn.net_health)."""
import sys

import _init_paths  # noqa: F401,E402  (the checkout on sys.path)
from psn.env import ensure_caffe  # noqa: E402

if __name__ == "__main__":
    ensure_caffe(prefix="inspect_net: ")
    from psn.net_health import main
    sys.exit(main())
