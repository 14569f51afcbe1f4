"""What checking frame contents costs (preprocessing.clip_cache): hashing a clip's frame files
with BLAKE2b against decoding them with OpenCV, which computing a clip does anyway.

    .venv/bin/python benchmarks/bench_frame_hash.py [FOLDER] [--frames 60]

FOLDER: a database copy (every .jpg/.bmp/.png under it is hashed); without it, synthetic
frames in CASME II's format (640x480 JPEG) and SMIC's (640x480 BMP) are written to a
temporary folder. Hashing runs when a clip is computed, and on a rerun only for frames whose
modification time changed (a copied or moved database). Times are CPU seconds of one process
after a first read (files in the page cache), so they show the cost, not the disk.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _init_paths  # noqa: F401,E402  (the checkout on sys.path)

from preprocessing.clip_cache import frame_hash  # noqa: E402



def synthetic_frames(folder, n):
    import cv2
    rng = np.random.RandomState(0)
    face = cv2.GaussianBlur(rng.randint(0, 255, (480, 640, 3)).astype(np.uint8), (31, 31), 8)
    paths = {}
    for ext in ("jpg", "bmp"):
        paths[ext] = []
        for k in range(n):
            img = np.clip(face.astype(int) + rng.randint(-3, 4, face.shape), 0, 255).astype(np.uint8)
            p = os.path.join(folder, f"img{k}.{ext}")
            cv2.imwrite(p, img)
            paths[ext].append(p)
    return paths


def cpu(fn, paths):
    for p in paths:                   # into the page cache
        fn(p)
    t0 = time.process_time()
    for p in paths:
        fn(p)
    return time.process_time() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?")
    ap.add_argument("--frames", type=int, default=60, help="synthetic frames per format")
    args = ap.parse_args(argv)
    import cv2
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if args.folder:
            found = [os.path.join(d, f) for d, _, fs in os.walk(args.folder) for f in sorted(fs)
                     if f.lower().endswith((".jpg", ".jpeg", ".bmp", ".png"))]
            groups = {args.folder: found}
        else:
            groups = {f"synthetic 640x480 {k.upper()}": v
                      for k, v in synthetic_frames(tmp, args.frames).items()}
        print(f"{'frames':<32} {'n':>6} {'MiB':>8} {'hash s':>8} {'MiB/s':>8} {'decode s':>9} "
              f"{'hash/decode':>11}")
        for name, paths in groups.items():
            if not paths:
                print(f"{name}: no frames found")
                continue
            mib = sum(os.path.getsize(p) for p in paths) / 2 ** 20
            t_hash = cpu(frame_hash, paths)
            t_decode = cpu(cv2.imread, paths)
            print(f"{name:<32} {len(paths):>6} {mib:>8.1f} {t_hash:>8.3f} {mib / max(t_hash, 1e-9):>8.0f} "
                  f"{t_decode:>9.3f} {t_hash / max(t_decode, 1e-9):>11.2f}")
            per_frame = t_hash / len(paths)
            print(f"{'':<32} per frame {per_frame * 1e3:.2f} ms; per 10,000 frames "
                  f"{per_frame * 1e4:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
