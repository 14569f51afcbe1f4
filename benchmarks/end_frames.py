"""Sensor noise in E frame by frame, before and after the end-frame fix. Prints a table.

    python benchmarks/end_frames.py [--frames 12,20,30,45,60,100,149,200] [--sigma 2]
                                    [--seeds 2]

For each clip length F and each interpolation, a still synthetic face with independent
N(0, sigma) gray-level noise in every frame (preprocessing.noise_check) is normalised to 150
frames and decomposed by RPCA, once on the first-to-last-frame grid without context (the
pipeline before version 2) and once as the pipeline does now; prints the interior frames'
median mean |E| and the first / last frames' ratio to it. docs/preprocessing.md quotes it.
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="12,20,30,45,60,100,149,200")
    ap.add_argument("--sigma", type=float, default=2.0, help="noise, gray levels (default 2)")
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits
    from preprocessing.noise_check import e_profile, end_ratio, noisy_still_clip
    print(f"sigma {args.sigma:g} gray levels; mean |E| x 1e4 (E in [0, 1] units)")
    print(f"{'interp':7} {'F':>4} | {'before: interior':>16} {'ends/interior':>14} | "
          f"{'after: interior':>15} {'ends/interior':>14}")
    with threadpool_limits(1):
        for method in ("tim", "linear"):
            for F in (int(f) for f in args.frames.split(",")):
                row = []
                for old in (True, False):
                    kw = dict(cells=False, context=0) if old else {}
                    prof = np.mean([e_profile(noisy_still_clip(F, args.sigma, seed), method, **kw)
                                    for seed in range(args.seeds)], axis=0)
                    row.append((np.median(prof[1:-1]) * 1e4, end_ratio(prof)))
                (m0, r0), (m1, r1) = row
                print(f"{method:7} {F:4d} | {m0:16.2f} {r0[0]:6.2f} {r0[1]:6.2f} | "
                      f"{m1:15.2f} {r1[0]:6.2f} {r1[1]:6.2f}", flush=True)


if __name__ == "__main__":
    main()
