"""Puts the checkout on sys.path for the scripts in this folder, which Python starts with only
the script's own folder there: `import _init_paths` first, as py-faster-rcnn's tools do. The
one place that says where the packages are (a pip install -e . makes it a no-op)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "layers")):
    if path not in sys.path:
        sys.path.insert(0, path)
