"""Sensor noise in E frame by frame, before and after the end-frame fix. Prints a table.

    python benchmarks/end_frames.py [--frames 12,20,30,45,60,100,149,200] [--sigma 2]
                                    [--seeds 2] [--profile 30]
    python benchmarks/end_frames.py --data OUT [--data OUT2 ...]

For each clip length F and each interpolation, a still synthetic face with independent
N(0, sigma) gray-level noise in every frame (synthetic.noise_check) is normalised to 150
frames and decomposed by RPCA, once on the first-to-last-frame grid without context (the
pipeline before version 2) and once as the pipeline does now; prints the interior frames'
median mean |E| and the first / last frames' ratio to it, then the whole 16-frame profile for
one clip length. With --data: the mean |E| of each of the 16 sampled frames over all clips of
a preprocessed folder's shards (real clips: motion in the middle, neutral ends).
docs/preprocessing.md quotes its output.
"""
import argparse
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _init_paths  # noqa: F401,E402  (the checkout on sys.path)

from preprocessing.layout import DataFolder  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="12,20,30,45,60,100,149,200")
    ap.add_argument("--sigma", type=float, default=2.0, help="noise, gray levels (default 2)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--profile", type=int, default=30, metavar="F",
                    help="clip length whose 16-frame profile is printed (default 30)")
    ap.add_argument("--data", action="append", metavar="OUT",
                    help="a `preprocess.py run` output folder: profile of its shards instead")
    args = ap.parse_args(argv)
    if args.data:
        for out in args.data:
            print(f"{out}: mean |E| x 1e4 of frames 1, 11, ..., 141, 150 over its clips")
            print("  " + " ".join(f"{v:5.1f}" for v in shard_profile(out) * 1e4))
        return
    from threadpoolctl import threadpool_limits
    from synthetic.noise_check import e_profile, end_ratio, noisy_still_clip
    print(f"sigma {args.sigma:g} gray levels; mean |E| x 1e4 (E in [0, 1] units)")
    print(f"{'interp':7} {'F':>4} | {'before: interior':>16} {'first, last':>13} "
          f"{'ends/interior':>14} | {'after: interior':>15} {'first, last':>13} {'ends/interior':>14}")
    with threadpool_limits(1):
        for method in ("tim", "linear"):
            for F in (int(f) for f in args.frames.split(",")):
                row = []
                for old in (True, False):
                    kw = dict(cells=False, context=0) if old else {}
                    prof = np.mean([e_profile(noisy_still_clip(F, args.sigma, seed), method, **kw)
                                    for seed in range(args.seeds)], axis=0)
                    row.append((np.median(prof[1:-1]) * 1e4, prof[[0, -1]] * 1e4, end_ratio(prof)))
                (m0, e0, r0), (m1, e1, r1) = row
                print(f"{method:7} {F:4d} | {m0:16.3f} {e0[0]:6.3f} {e0[1]:6.3f} {r0[0]:6.2f} "
                      f"{r0[1]:6.2f} | {m1:15.3f} {e1[0]:6.3f} {e1[1]:6.3f} {r1[0]:6.2f} "
                      f"{r1[1]:6.2f}", flush=True)
        F = args.profile
        print(f"\nmean |E| x 1e4 of frames 1, 11, ..., 141, 150, F = {F}, tim")
        gray = noisy_still_clip(F, args.sigma, 0)
        for label, kw in (("before", dict(cells=False, context=0)), ("after", {})):
            print(f"{label:7} " + " ".join(f"{v:5.2f}" for v in e_profile(gray, "tim", **kw) * 1e4))


def shard_profile(out):
    """Mean |E| of each sampled frame over the non-augmented shards of a preprocessed folder."""
    import glob
    import h5py
    total, n = 0.0, 0
    for path in sorted(glob.glob(os.path.join(DataFolder(out).shard_dir, "group*.h5"))):
        if path.endswith("_aug.h5"):
            continue
        with h5py.File(path, "r") as f:
            e = np.abs(f["sparse"][...]).astype(np.float64)     # (clips, 16, 1, H, W)
        total = total + e.mean(axis=(2, 3, 4)).sum(axis=0)
        n += e.shape[0]
    if not n:
        raise SystemExit(f"end_frames: no shards/group*.h5 under {out}")
    return total / n


if __name__ == "__main__":
    main()
