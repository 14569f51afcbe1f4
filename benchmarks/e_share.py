"""How much of the face RPCA's E keeps at the default lambda: the share of non-zero pixels
(the quantity of the paper's Fig. 10) on a real face photograph with sensor noise, and on the
data folders the pipeline wrote. Prints tables; docs/preprocessing.md quotes them.

    python benchmarks/e_share.py [--data work/data work/data_sparsity25 ...]
                                 [--noise 0,1,2,4] [--frames 30,60]

Photograph clips: the scikit-image astronaut's face, cut to 112 x 112, F frames in which a
patch at the mouth rises by up to 2 pixels and falls back (a micro-movement), each frame with
independent Gaussian sensor noise of sigma gray levels (8-bit rounding included), through
the pipeline's TIM and RPCA (preprocessing.clip_chain.sparse_part). Data folders: the
manifest's rpca_nnz_share over the included clips (mean, quartiles, range).
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _init_paths  # noqa: F401,E402  (the checkout on sys.path)

from preprocessing.layout import DataFolder  # noqa: E402


def photo_clip(n_frames, sigma, seed=0):
    """(F, 112, 112) gray frames in [0, 1] of the astronaut's face with a mouth movement."""
    import cv2
    from skimage import data
    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY).astype(np.float64)
    face = cv2.resize(img[30:230, 150:330], (112, 112), interpolation=cv2.INTER_AREA)
    rng = np.random.RandomState(seed)
    frames = []
    for f in range(n_frames):
        lift = 2.0 * np.sin(np.pi * f / max(n_frames - 1, 1))    # onset -> apex -> offset
        m = np.float32([[1, 0, 0], [0, 1, -lift]])
        moved = cv2.warpAffine(face, m, (112, 112), borderMode=cv2.BORDER_REPLICATE)
        frame = face.copy()
        frame[78:98, 36:76] = moved[78:98, 36:76]
        frame = np.clip(np.round(frame + rng.normal(0, sigma, frame.shape)), 0, 255)
        frames.append(frame / 255.0)
    return np.array(frames)


def photo_table(noises, lengths):
    from preprocessing.clip_chain import Options, sparse_part
    print("astronaut photograph, default lambda (1/sqrt(12544)): share of non-zeros in E")
    print("%-8s %s" % ("sigma", " ".join("%8s" % ("F=%d" % n) for n in lengths)))
    for sigma in noises:
        shares = []
        for n in lengths:
            _, info, _ = sparse_part(photo_clip(n, sigma), Options(sparsity=None))
            shares.append(info["nnz_share"])
        print("%-8g %s" % (sigma, " ".join("%7.1f%%" % (100 * s) for s in shares)))


def data_table(folders):
    print("\ndata folders: rpca_nnz_share of the included clips")
    print("%-40s %6s %7s %7s %7s %7s %7s" % ("folder", "clips", "mean", "min", "25 %", "75 %",
                                              "max"))
    for d in folders:
        s = np.array([float(r["rpca_nnz_share"]) for r in DataFolder(d).manifest_rows()
                      if r["included"] == "1"])
        if not len(s):
            print("%-40s %6d" % (d, 0))
            continue
        q = np.percentile(s, [25, 75])
        print("%-40s %6d %6.1f%% %6.1f%% %6.1f%% %6.1f%% %6.1f%%" % (
            d, len(s), 100 * s.mean(), 100 * s.min(), 100 * q[0], 100 * q[1], 100 * s.max()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="*", default=[], help="data folders (manifest.csv)")
    ap.add_argument("--noise", default="0,1,2,4", help="sensor noise sigmas, gray levels")
    ap.add_argument("--frames", default="30,60", help="clip lengths")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        photo_table([float(v) for v in args.noise.split(",")],
                    [int(v) for v in args.frames.split(",")])
    if args.data:
        data_table(args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
