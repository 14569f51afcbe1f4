#!/usr/bin/env python3
"""Export a trained fold's net to ONNX: `tools/export_onnx.py RUN/foldKK --out model.onnx`
(psn.onnx_export)."""
import sys

import _init_paths  # noqa: F401,E402  (the checkout on sys.path)
from psn.env import ensure_caffe  # noqa: E402

if __name__ == "__main__":
    ensure_caffe()   # caffe_pb2 only: pycaffe's compiled module is not needed
    from psn.onnx_export import main
    sys.exit(main())
