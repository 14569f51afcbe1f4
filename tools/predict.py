#!/usr/bin/env python3
"""Classify one clip folder with a trained model (psn.predict)."""
import sys

import _init_paths  # noqa: F401,E402  (the checkout on sys.path)

if __name__ == "__main__":
    # psn.predict finds Caffe itself, and not at all for --onnx (onnxruntime only).
    from psn.predict import main
    sys.exit(main())
