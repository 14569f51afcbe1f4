"""What RPCA's per-clip λ search costs against one fixed-λ solve, and how well a smaller problem
predicts the λ it finds (issue "Speed", item 1).

    .venv/bin/python benchmarks/lambda_search.py [CLIP_DIR ...] [--clips 8] [--strides 2,4]

CLIP_DIR: folders of a clip's frames (default: clips of a synthetic CASME II-format database
written to a temporary folder, --clips of them). Each clip goes through the pipeline's chain
(face, registration, TIM with context) to RPCA's D (12544 pixels x ~152 frames), then:

* the search as the pipeline runs it (preprocessing.rpca.rpca_for_sparsity, target 0.25,
  tolerance 0.01): solves, CPU seconds, and that time over one cold solve at the λ it chose;
* a tight search (tolerance 0.002) for the λ that gives the target, λ*;
* the same tight search on D with every s-th pixel row and column kept (1/s² of the
  pixels), its λ scaled by 1/s (λ goes as 1/sqrt(pixels), as the default 1/sqrt(m) does):
  that prediction over λ*, and its CPU seconds in units of one full solve;
* the slope of logit(share) against log λ from λ* to λ*(1 ± 0.05) and λ*(1 ± 0.1): if it is
  the same for every clip, one solve anywhere near λ* says where λ* is.

One BLAS thread, CPU time. It prints; it is not a test.
"""
import argparse
import glob
import math
import os
import statistics
import sys
import tempfile
import time

import numpy as np

import _init_paths  # noqa: F401  (the checkout on sys.path)

TARGET = 0.25
SLOPE_STEPS = (-0.1, -0.05, 0.05, 0.1)


def logit(p):
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def clip_matrix(folder):
    """RPCA's D of a clip folder, as preprocessing.clip_chain.sparse_part builds it."""
    from preprocessing.clip_chain import GRAY_WEIGHTS, Options, clip_crops
    from preprocessing.sampling import N_FRAMES
    from preprocessing.tim import apply_time_matrix, clip_time_matrix
    from psn.predict import clip_from_folder
    crops, _, _ = clip_crops(clip_from_folder(folder), Options())
    gray = (crops.astype(np.float64) @ GRAY_WEIGHTS) / 255.0
    M, _ = clip_time_matrix(len(crops), N_FRAMES, "tim")
    return apply_time_matrix(M, gray).reshape(len(M), -1).T


def cpu(fn):
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def measure(D, strides):
    from preprocessing.rpca import rpca, rpca_for_sparsity
    (_, _, info), t_search = cpu(lambda: rpca_for_sparsity(D, TARGET))
    _, t_solve = cpu(lambda: rpca(D, lam=info["lam"]))
    (_, _, tight), _ = cpu(lambda: rpca_for_sparsity(D, TARGET, share_tol=0.002))
    row = dict(solves=info["solves"], search_s=t_search, solve_s=t_solve,
               ratio=t_search / t_solve, share=info["nnz_share"], lam_star=tight["lam"])
    for d in SLOPE_STEPS:
        _, _, at = rpca(D, lam=tight["lam"] * (1 + d))
        row["slope%+.2f" % d] = ((logit(at["nnz_share"]) - logit(tight["nnz_share"]))
                                 / math.log(1 + d))
    side = int(round(np.sqrt(D.shape[0])))
    frames = D.reshape(side, side, -1)
    for s in strides:
        Ds = np.ascontiguousarray(frames[::s, ::s].reshape(-1, D.shape[1]))
        (_, _, sub), t_sub = cpu(lambda: rpca_for_sparsity(Ds, TARGET, share_tol=0.002))
        row["pred%d" % s] = sub["lam"] / s / tight["lam"]
        row["cost%d" % s] = t_sub / t_solve
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="*")
    ap.add_argument("--clips-count", "--clips", dest="n", type=int, default=8,
                    help="synthetic clips when no folder is given (default 8)")
    ap.add_argument("--strides", default="2,4", help="pixel strides of the smaller problems")
    args = ap.parse_args(argv)
    strides = [int(s) for s in args.strides.split(",")]
    from threadpoolctl import threadpool_limits
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1, "blas"):
        folders = args.clips
        if not folders:
            import synthetic
            synthetic.generate(os.path.join(tmp, "syn"), n_subjects=max(1, args.n // 4 + 1),
                               clips_per_subject=4, seed=5)
            folders = sorted(glob.glob(os.path.join(tmp, "syn", "*", "sub*", "*")))[:args.n]
        head = "%-12s %6s %8s %8s %6s %7s" % ("clip", "solves", "search s", "solve s", "ratio",
                                               "share")
        head += "".join(" %9s %7s" % ("pred%d/λ*" % s, "cost%d" % s) for s in strides)
        head += "".join(" %8s" % ("slope%+.2f" % d) for d in SLOPE_STEPS)
        print(head)
        rows = []
        for folder in folders:
            r = measure(clip_matrix(folder), strides)
            rows.append(r)
            line = "%-12s %6d %8.2f %8.2f %6.2f %7.4f" % (
                os.path.basename(folder)[:12], r["solves"], r["search_s"], r["solve_s"],
                r["ratio"], r["share"])
            line += "".join(" %9.4f %7.2f" % (r["pred%d" % s], r["cost%d" % s]) for s in strides)
            line += "".join(" %8.2f" % r["slope%+.2f" % d] for d in SLOPE_STEPS)
            print(line, flush=True)
    if rows:
        print("median: search / one solve %.2f (%.1f solves)" % (
            statistics.median(r["ratio"] for r in rows),
            statistics.median(r["solves"] for r in rows)))
        for s in strides:
            p = [r["pred%d" % s] for r in rows]
            print("stride %d: prediction / λ* mean %.4f, sd %.4f; cost %.2f solves (median)" % (
                s, statistics.mean(p), statistics.pstdev(p),
                statistics.median(r["cost%d" % s] for r in rows)))
        for d in SLOPE_STEPS:
            v = [r["slope%+.2f" % d] for r in rows]
            print("slope of logit(share) per log λ, λ* to λ*(1%+.2f): mean %.2f, sd %.2f" % (
                d, statistics.mean(v), statistics.pstdev(v)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
