"""What RPCA's per-clip λ search costs against one fixed-λ solve (issue "Speed", item 1).

    .venv/bin/python benchmarks/lambda_search.py [CLIP_DIR ...] [--clips 8] [--photos 6]
                                                 [--calibrate]

CLIP_DIR: folders of a clip's frames. Default: --clips clips of a synthetic CASME II-format
database and --photos clips made from real photographs (scikit-image's astronaut and
matplotlib's Grace Hopper, and their mirror images, on a 640 x 480 frame, 40-70 frames, a
mouth region that lifts by up to 2 px and falls back, Gaussian sensor noise of 1-4 gray levels,
JPEG quality 90), written to a temporary folder. Each clip goes through the pipeline's chain
(face, registration, TIM with context) to RPCA's D (12544 pixels x ~152 frames), then:

* the search as the pipeline runs it (preprocessing.rpca.rpca_for_sparsity, target 0.25,
  tolerance 0.01): its row-subsample solves, its full solves, CPU seconds, and that time over
  one cold solve at the λ it chose (the fixed-λ cost); E against that cold solve's E;
* the chain's CPU seconds before RPCA (reading, face, crops, registration, TIM), from which
  the paper's 650 clips on 2 cores are estimated: 650 x (chain + search) / 2;
* with --calibrate, what the search's constants rest on: a tight search (tolerance 0.003) for
  the λ that gives the target, λ*; the same on every k-th row (k of
  preprocessing.rpca.PREDICT_LEVELS), its λ over λ* beyond sqrt(k); and the slope of
  logit(share) against log λ from λ* to λ*(1 ± 0.05).

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
from preprocessing.rpca import logit  # noqa: E402

TARGET = 0.25
PHOTO_SIZE = (640, 480)
# (photograph, mirrored, frames, noise in gray levels) of the photograph clips, in order.
PHOTO_CLIPS = (("astronaut", False, 40, 1), ("grace_hopper", False, 55, 2),
               ("astronaut", True, 70, 4), ("grace_hopper", True, 40, 4),
               ("astronaut", False, 55, 2), ("grace_hopper", False, 70, 1),
               ("astronaut", True, 40, 3), ("grace_hopper", True, 55, 3))


def photograph(name):
    """The photograph as a 640 x 480 BGR frame with the face about where a database has it."""
    import cv2
    if name == "astronaut":
        import skimage.data
        img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    else:
        import matplotlib.cbook
        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            img = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    cut = min(h, w * 3 // 4)                         # a 4:3 window from the top
    img = img[:cut, (w - cut * 4 // 3) // 2:][:, :cut * 4 // 3]
    return cv2.resize(img, PHOTO_SIZE, interpolation=cv2.INTER_AREA)


def write_photo_clip(folder, name, mirrored, n_frames, noise, seed):
    """A clip folder (img1.jpg ...) of the photograph with a micro-movement at the mouth."""
    import cv2
    from preprocessing.face import clip_face_box
    base = photograph(name)
    if mirrored:
        base = np.ascontiguousarray(base[:, ::-1])
    box = clip_face_box(base, method="haar")
    x, y, w, h = box.x, box.y, box.w, box.h
    # The mouth region: the lower middle of the face box.
    y0, y1, x0, x1 = y + int(0.70 * h), y + int(0.88 * h), x + int(0.30 * w), x + int(0.70 * w)
    rng = np.random.RandomState(seed)
    os.makedirs(folder)
    img = base.astype(np.float64)
    for f in range(n_frames):
        lift = 2.0 * math.sin(math.pi * f / (n_frames - 1))      # onset -> apex -> offset
        moved = cv2.warpAffine(img, np.float32([[1, 0, 0], [0, 1, -lift]]), PHOTO_SIZE,
                               borderMode=cv2.BORDER_REPLICATE)
        frame = img.copy()
        frame[y0:y1, x0:x1] = moved[y0:y1, x0:x1]
        frame = np.clip(np.round(frame + rng.normal(0, noise, frame.shape)), 0, 255)
        cv2.imwrite(os.path.join(folder, "img%d.jpg" % (f + 1)), frame.astype(np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


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


def measure(D):
    from preprocessing.rpca import rpca, rpca_for_sparsity
    (_, E, info), t_search = cpu(lambda: rpca_for_sparsity(D, TARGET))
    (_, E_cold, _), t_solve = cpu(lambda: rpca(D, lam=info["lam"]))
    dE = float(np.linalg.norm(E - E_cold) / max(np.linalg.norm(E_cold), 1e-300))
    return dict(sub=len(info["subsample_solves"]), solves=info["solves"], search_s=t_search,
                solve_s=t_solve, ratio=t_search / t_solve, share=info["nnz_share"],
                met=info["target_met"], dE=dE, lam=info["lam"])


def calibrate(D):
    from preprocessing.rpca import PREDICT_LEVELS, row_subsample, rpca, rpca_for_sparsity
    _, _, tight = rpca_for_sparsity(D, TARGET, share_tol=0.003)
    lam = tight["lam"]
    row = {"lam*": lam}
    for k, _, _, _ in PREDICT_LEVELS:
        sub, scale = row_subsample(D, k)
        _, _, s = rpca_for_sparsity(sub, TARGET, share_tol=0.003, lam0=lam * scale)
        row["k%d" % k] = s["lam"] / scale / lam
    for d in (-0.05, 0.05):
        _, _, at = rpca(D, lam=lam * (1 + d))
        row["slope%+.2f" % d] = ((logit(at["nnz_share"]) - logit(tight["nnz_share"]))
                                 / math.log(1 + d))
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="*")
    ap.add_argument("--clips-count", "--clips", dest="n", type=int, default=8,
                    help="synthetic clips when no folder is given (default 8)")
    ap.add_argument("--photos", type=int, default=6,
                    help="photograph clips when no folder is given (default 6, at most %d)"
                    % len(PHOTO_CLIPS))
    ap.add_argument("--seed", type=int, default=5, help="the synthetic database's seed")
    ap.add_argument("--calibrate", action="store_true",
                    help="also measure the constants the search rests on (slow)")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1, "blas"):
        folders = args.clips
        if not folders:
            import synthetic
            if args.n:
                synthetic.generate(os.path.join(tmp, "syn"), n_subjects=args.n // 4 + 1,
                                   clips_per_subject=4, seed=args.seed)
                folders = sorted(glob.glob(os.path.join(tmp, "syn", "*", "sub*", "*")))[:args.n]
            for i, spec in enumerate(PHOTO_CLIPS[:args.photos]):
                folders.append(write_photo_clip(
                    os.path.join(tmp, "photo", "%s%s_f%d_n%d" % (
                        spec[0][:5], "_m" if spec[1] else "", spec[2], spec[3])), *spec, seed=i))
        print("%-16s %5s %6s %8s %8s %6s %7s %4s %8s %7s" % (
            "clip", "sub", "solves", "search s", "solve s", "ratio", "share", "met", "E diff",
            "chain s"))
        rows, cal = [], []
        for folder in folders:
            D, t_chain = cpu(lambda: clip_matrix(folder))
            r = measure(D)
            r["chain_s"] = t_chain
            rows.append(r)
            print("%-16s %5d %6d %8.2f %8.2f %6.2f %7.4f %4s %8.1e %7.2f" % (
                os.path.basename(folder)[:16], r["sub"], r["solves"], r["search_s"],
                r["solve_s"], r["ratio"], r["share"], "yes" if r["met"] else "NO", r["dE"],
                t_chain), flush=True)
            if args.calibrate:
                c = calibrate(D)
                cal.append(c)
                print("  calibration: " + " ".join("%s %.4g" % kv for kv in c.items()),
                      flush=True)
    if rows:
        ratios = [r["ratio"] for r in rows]
        print("search / one fixed-λ solve: median %.2f, mean %.2f, range %.2f-%.2f over %d clips"
              % (statistics.median(ratios), statistics.mean(ratios), min(ratios), max(ratios),
                 len(rows)))
        print("first full solve on target: %d of %d clips; target met: %d of %d; largest E "
              "difference from a cold solve at the chosen λ: %.1e" % (
                  sum(r["solves"] == 1 for r in rows), len(rows), sum(r["met"] for r in rows),
                  len(rows), max(r["dE"] for r in rows)))
        per_clip = statistics.mean(r["chain_s"] + r["search_s"] for r in rows)
        fixed = statistics.mean(r["chain_s"] + r["solve_s"] for r in rows)
        print("per clip (CPU s, mean): chain %.2f + search %.2f = %.2f (with a fixed λ: %.2f); "
              "650 clips on 2 cores: %.1f min (fixed λ: %.1f min)" % (
                  statistics.mean(r["chain_s"] for r in rows),
                  statistics.mean(r["search_s"] for r in rows), per_clip, fixed,
                  650 * per_clip / 2 / 60, 650 * fixed / 2 / 60))
    for key in (sorted(cal[0]) if cal else []):
        if key != "lam*":
            v = [c[key] for c in cal]
            print("calibration %s: mean %.4f, sd %.4f" % (key, statistics.mean(v),
                                                          statistics.pstdev(v)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
