"""RPCA per clip, side by side, and the whole per-clip chain (issue 3, "Performance").

    .venv/bin/python benchmarks/bench_rpca.py [--repeats 3] [--clips 4] [--workers 2]

Part 1 solves one clip-sized problem, D = L + S of 12544 x 150 (112*112 pixels x 150
frames) with L of rank 10 and S sparse (5 % of entries, random signs) so the answer is known,
with: this project's preprocessing.rpca.rpca; a plain inexact ALM with a full SVD per
iteration (written below, Lin, Chen & Ma 2010 as published); and the PyPI packages pyrpca and
skpcp (requirements-bench.txt). Each must recover L and S to a relative error <= 1e-6; a
package that is missing or fails is reported and skipped. All run with one BLAS thread, as
the preprocessing does (one clip per core), at lam = 1/sqrt(12544) and tol = 1e-7.

Part 1b runs the three inexact ALMs on a rendered clip's D, where the answer is not known
and real-looking data (a dominant identity, camera noise) makes A's rank and the iteration
count higher; E is compared with the plain ALM's.

Part 2 times the pipeline's own per-clip chain (preprocessing.clip_chain with the default
options) on synthetic clips written in CASME II's format (640x480 JPEG frames): reading the
frames, the face on the onset frame, the crops registered on it, TIM to 150 frames with
context, RPCA with lambda chosen per clip, the 16 sampled frames. It estimates the full
650-clip preprocessing time on this machine as per-clip time x 650 / workers, (a) from one
process's time per clip, and (b) from `workers` processes running clips at once (which adds
their contention for memory bandwidth). Each is given from CPU time (what an otherwise idle
machine would take: with one BLAS thread a process is never faster than its CPU time) and
from wall time (which also counts waiting for the CPU, so it is inflated when other jobs
share the machine; the load average is printed).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _init_paths  # noqa: F401,E402  (the checkout on sys.path)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from preprocessing.clip_chain import GRAY_WEIGHTS, Options, clip_arrays, clip_crops  # noqa: E402
from preprocessing.rpca import rpca  # noqa: E402
from preprocessing.sampling import N_FRAMES  # noqa: E402
from preprocessing.tim import apply_time_matrix, clip_time_matrix  # noqa: E402

N_CLIPS_PAPER = 650
M, N, RANK, RHO_SPARSE = 112 * 112, 150, 10, 0.05
LAM = 1.0 / math.sqrt(M)
TOL = 1e-7


def problem(seed=0):
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((M, RANK)) @ rng.standard_normal((RANK, N)) / math.sqrt(N)
    S = np.zeros((M, N))
    mask = rng.random((M, N)) < RHO_SPARSE
    S[mask] = rng.choice([-1.0, 1.0], mask.sum()) * rng.uniform(0.5, 2.0, mask.sum())
    return L, S


def plain_inexact_alm(D, lam, tol=TOL, max_iter=1000, rho=1.5):
    """Lin, Chen & Ma's inexact ALM (inexact_alm_rpca.m) with a full SVD every iteration."""
    norm_two = np.linalg.norm(D, 2)
    d_norm = np.linalg.norm(D, "fro")
    Y = D / max(norm_two, np.abs(D).max() / lam)
    mu = 1.25 / norm_two
    mu_bar = mu * 1e7
    A = np.zeros_like(D)
    E = np.zeros_like(D)
    for it in range(1, max_iter + 1):
        T = D - A + Y / mu
        E = np.maximum(T - lam / mu, 0) + np.minimum(T + lam / mu, 0)
        U, s, Vt = np.linalg.svd(D - E + Y / mu, full_matrices=False)
        r = int((s > 1 / mu).sum())
        A = (U[:, :r] * (s[:r] - 1 / mu)) @ Vt[:r]
        Z = D - A - E
        Y = Y + mu * Z
        mu = min(mu * rho, mu_bar)
        if np.linalg.norm(Z, "fro") / d_norm < tol:
            return A, E, it
    return A, E, max_iter


def run_ours(D):
    A, E, info = rpca(D, lam=LAM, tol=TOL)
    return A, E, info["iterations"]


def run_pyrpca(D):
    from pyrpca import rpca_pcp_ialm
    out = io.StringIO()
    with contextlib.redirect_stdout(out):      # it prints one line per iteration
        A, E = rpca_pcp_ialm(D, LAM, tol=TOL, verbose=True)
    return A, E, out.getvalue().count("iter ")


def run_skpcp(D):
    from skpcp import PCP
    p = PCP(alpha=LAM, tol=TOL, max_iter=1000).fit(D)
    return p.low_rank_, p.sparse_, p.n_iter_


METHODS = (
    ("this project (inexact ALM, Gram SVT)", run_ours),
    ("plain inexact ALM, full SVD", lambda D: plain_inexact_alm(D, LAM)),
    ("pyrpca 1.0.1 (inexact ALM)", run_pyrpca),
    ("skpcp 0.1.0 (PCP, fixed mu)", run_skpcp),
)


def _timed(fn, *args):
    """(result, wall s, CPU s of this process). With one BLAS thread the CPU time is what
    the run would take on an idle core; the wall time also counts waiting for the CPU."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w0, time.process_time() - c0


def bench_solvers(repeats):
    with threadpool_limits(1):
        return _bench_solvers(repeats)


def _bench_solvers(repeats):
    L, S = problem()
    D = L + S
    print(f"Part 1: RPCA of one clip-sized problem, D = L + S, {M} x {N}, rank(L) = {RANK}, "
          f"{RHO_SPARSE:.0%} of S non-zero; lam = 1/sqrt({M}), tol = {TOL:g}, 1 BLAS thread, "
          f"median of {repeats} runs; speed-up from CPU time")
    print(f"{'method':38s} {'wall s':>7s} {'cpu s':>7s} {'iters':>6s} {'relerr A':>9s} "
          f"{'relerr E':>9s} {'<=1e-6':>6s} {'vs pyrpca':>9s}")
    rows = []
    for name, fn in METHODS:
        walls, cpus = [], []
        try:
            for _ in range(repeats):
                (A, E, iters), w, c = _timed(fn, D)
                walls.append(w)
                cpus.append(c)
        except Exception as exc:  # a package that is missing or breaks is reported, not fatal
            print(f"{name:38s} skipped: {type(exc).__name__}: {exc}")
            continue
        ea = np.linalg.norm(A - L) / np.linalg.norm(L)
        ee = np.linalg.norm(E - S) / np.linalg.norm(S)
        rows.append((name, statistics.median(walls), statistics.median(cpus), iters, ea, ee))
    ref = next((r[2] for r in rows if r[0].startswith("pyrpca")), None)
    for name, w, c, iters, ea, ee in rows:
        ok = "yes" if max(ea, ee) <= 1e-6 else "NO"
        su = f"{ref / c:8.1f}x" if ref else "      n/a"
        print(f"{name:38s} {w:7.3f} {c:7.3f} {iters:6d} {ea:9.2e} {ee:9.2e} {ok:>6s} {su:>9s}")
    return rows


def bench_real_clip(D):
    """The three inexact ALMs on a rendered clip's D (no known answer: compared to the plain one)."""
    print(f"\nPart 1b: the inexact ALMs on a rendered clip's D ({D.shape[0]} x {D.shape[1]}, gray "
          "in [0, 1], default lam; no known answer, so E is compared with the plain ALM's), 1 run each")
    print(f"{'method':38s} {'wall s':>7s} {'cpu s':>7s} {'iters':>6s} {'rank A':>6s} {'nnz E':>6s} "
          f"{'|E-E_plain|/|E_plain|':>21s} {'vs pyrpca':>9s}")
    res = {}
    with threadpool_limits(1):
        for name, fn in METHODS[:3]:
            try:
                (A, E, iters), w, c = _timed(fn, D)
                res[name] = (w, c, iters, A, E)
            except Exception as exc:
                print(f"{name:38s} skipped: {type(exc).__name__}: {exc}")
    plain = res.get(METHODS[1][0])
    ref = next((v[1] for k, v in res.items() if k.startswith("pyrpca")), None)
    for name, (w, c, iters, A, E) in res.items():
        rank = np.linalg.matrix_rank(A, tol=1e-9 * np.linalg.norm(A, 2))
        diff = (f"{np.linalg.norm(E - plain[4]) / np.linalg.norm(plain[4]):21.2e}"
                if plain is not None else f"{'n/a':>21s}")
        su = f"{ref / c:8.1f}x" if ref else "      n/a"
        print(f"{name:38s} {w:7.3f} {c:7.3f} {iters:6d} {rank:6d} {np.count_nonzero(E) / E.size:6.1%} "
              f"{diff} {su:>9s}")


# --------------------------------------------------------------------------- the chain

# The chain as `tools/preprocess.py run` runs it by default (lambda per clip for 25 % non-zeros
# in E, frames registered on the onset frame).
OPTS = Options()


def make_clips(n, folder, seed=0):
    """n synthetic clips (CASME II's format: 640x480 JPEG frames) written under folder and
    loaded as the pipeline loads them."""
    import synthetic
    from preprocessing.loaders import load_database
    root = os.path.join(folder, "synthetic_casme2")
    synthetic.generate(root, n_subjects=n, clips_per_subject=1, seed=seed)
    clips, _ = load_database("casme2", root)
    return clips[:n]


def clip_matrix(clip):
    """D (12544 x (150 + context)) of one clip, as preprocessing.clip_chain.sparse_part builds it."""
    crops, _, _ = clip_crops(clip, OPTS)
    gray = (crops.astype(np.float64) @ GRAY_WEIGHTS) / 255.0
    M, _ = clip_time_matrix(len(gray), N_FRAMES, OPTS.interp)
    return apply_time_matrix(M, gray).reshape(len(M), -1).T


def chain(clip, stages=None):
    """One clip through the pipeline's own chain (preprocessing.clip_chain): (raw, sparse, RPCA
    info). Two stages are timed: reading, face, crops and registration; TIM, RPCA and sampling."""
    t = time.perf_counter()

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        if stages is not None:
            stages[name] = stages.get(name, 0.0) + now - t
        t = now

    crops, fb, notes = clip_crops(clip, OPTS)
    lap("frames, face, crop, registration")
    raw, sparse, info = clip_arrays(crops, fb, OPTS, notes)
    lap("TIM, RPCA, sampling")
    return raw, sparse, info["rpca"]


def _worker(clip):
    with threadpool_limits(1):
        (_, _, info), w, c = _timed(chain, clip)
        return w, c, info["iterations"]


def bench_chain(clips, workers):
    n_clips = len(clips)
    print(f"\nPart 2: the pipeline's per-clip chain (preprocessing.clip_chain, default options) on "
          f"{n_clips} synthetic clips ({', '.join(str(len(c.frames)) for c in clips)} frames of "
          "640x480 JPEG), 1 BLAS thread")
    stages = {}
    walls, cpus, iters = [], [], []
    with threadpool_limits(1):
        chain(clips[0])                              # warm up: cascades, BLAS buffers
        for c in clips:
            (_, _, info), w, cpu = _timed(chain, c, stages)
            walls.append(w)
            cpus.append(cpu)
            iters.append(info["iterations"])
    print("  one process, wall time by stage: " + ", ".join(
        f"{k} {v / n_clips * 1000:.0f} ms" for k, v in stages.items()))
    wall, cpu = statistics.mean(walls), statistics.mean(cpus)
    print(f"  per clip: wall {wall:.3f} s, CPU {cpu:.3f} s (mean of {n_clips}); RPCA iterations "
          f"{min(iters)}-{max(iters)}")
    for what, t in (("CPU", cpu), ("wall", wall)):
        est = t * N_CLIPS_PAPER / workers
        print(f"  estimate from {what:4s} time: {t:.3f} s x {N_CLIPS_PAPER} clips / {workers} workers "
              f"= {est:.0f} s = {est / 60:.1f} min")
    reps = max(1, -(-2 * workers // n_clips))
    w0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_worker, clips * reps))
    wall_all = time.perf_counter() - w0
    k = len(results)
    cpu_w = statistics.mean(r[1] for r in results)
    print(f"  {workers} worker processes at once: {k} clips in {wall_all:.2f} s wall; per clip "
          f"CPU {cpu_w:.3f} s, wall {statistics.mean(r[0] for r in results):.3f} s")
    for what, t in (("CPU", cpu_w * k / workers), ("wall", wall_all)):
        est = t / k * N_CLIPS_PAPER
        print(f"  estimate from {what:4s} time with {workers} workers: {t:.2f} s / {k} clips x "
              f"{N_CLIPS_PAPER} = {est:.0f} s = {est / 60:.1f} min (target: under 15 min)")
    print(f"  load average now {os.getloadavg()[0]:.1f}. Not included: reading the sheets, writing "
          "HDF5, augmentation; frames larger than 640x480 (CASME A 1280x720, SAMM 2040x1088) "
          "decode more slowly")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs per solver (median reported)")
    ap.add_argument("--clips", type=int, default=4, help="synthetic clips for the chain")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="parallel clips in the estimate (default: CPU count)")
    ap.add_argument("--skip-solvers", action="store_true")
    ap.add_argument("--skip-chain", action="store_true")
    args = ap.parse_args(argv)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
          f"numpy {np.__version__}; opencv {cv2.__version__}")
    if not args.skip_solvers:
        bench_solvers(args.repeats)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        try:
            clips = make_clips(max(1, args.clips), tmp)
        except Exception as exc:
            print(f"\nParts 1b and 2 skipped: cannot render synthetic clips ({type(exc).__name__}: {exc})")
            return
        if not args.skip_solvers:
            bench_real_clip(clip_matrix(clips[0]))
        if not args.skip_chain:
            bench_chain(clips, args.workers)


if __name__ == "__main__":
    main()
