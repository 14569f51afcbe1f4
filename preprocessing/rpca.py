"""Robust PCA (principal component pursuit) by the inexact augmented Lagrange multiplier method.

    min ||A||_* + lam ||E||_1   subject to   D = A + E        (the paper's Eq. 2, D = A + E Eq. 1)

Inexact ALM (Lin, Chen & Ma 2010, Algorithm 5; same initialisation and mu schedule as their
``inexact_alm_rpca.m``): with Y0 = D / max(||D||_2, ||D||_inf / lam), mu0 = 1.25 / ||D||_2,
rho = 1.5, mu capped at mu0 * 1e7, repeat

    E <- S_{lam/mu}(D - A + Y/mu)          soft threshold, elementwise
    A <- D_{1/mu}(D - E + Y/mu)            singular value threshold
    Y <- Y + mu (D - A - E),  mu <- min(rho mu, mu_max)

until ||D - A - E||_F / ||D||_F < tol.

Speed. The clips give D of 12544 x 150 (pixels x frames): tall and skinny. The singular value
threshold only needs the right singular vectors, so it is done from the 150 x 150 Gram matrix
X^T X (one SYRK and a 150 x 150 symmetric eigensolve instead of a 12544 x 150 SVD), and then
A = X V_k diag(1 - 1/(mu s_i)) V_k^T over the kept i. The Gram matrix squares the condition
number: its eigenvalues w_i = s_i^2 carry an absolute error of a few eps * s_1^2. So s_i is
taken as sqrt(w_i) only where that error moves s_i by less than 1e-10 s_1 and w_i is clearly
on one side of the threshold; every other candidate gets s_i = ||X v_i||, which is accurate to
working precision however small s_i is. What is left of the Gram matrix's error is a rotation
among singular vectors whose singular values are near or under the threshold, which moves A by
at most about the threshold itself, and the ALM corrects that in the next iteration. On
clip-like data A agrees with the full-SVD route to ~1e-10 relative (tests/test_rpca.py).
``svd="full"`` uses LAPACK's SVD of X instead, for checking.

The iteration count is set by the mu schedule (about 17 on a synthetic low-rank + sparse clip,
about 38 on a rendered face clip at tol 1e-7). A larger rho would cut it, but the stopping test
only measures feasibility: on the face-like 12544 x 150 matrix of tests/test_rpca.py, E at
tol 1e-7 was 6 % (relative) away from the optimum with rho = 2 and 0.03 % with 1.5, so rho
stays at the published 1.5.

Call this with one BLAS thread per process when several clips run in parallel: OpenBLAS
threads competing for two cores make these mid-sized products many times slower.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg

__all__ = ["RPCAError", "rpca", "rpca_for_sparsity", "predicted_lambda", "default_lambda",
           "DEFAULT_SPARSITY"]

# The share of non-zeros RPCA's E keeps by default: lambda is chosen per clip for it. The
# paper's Fig. 10 found 20-30 % best. The fixed lambda = 1/sqrt(12544) keeps whatever the
# clip's noise makes it: 38 % on average on the synthetic demo (10-74 %), and on a real face
# photograph with sensor noise of 1-4 gray levels 12-14 % for 30-frame clips but 75 % for 60
# frames and 87-97 % for 150 (benchmarks/e_share.py): E is then mostly noise. On the demo the
# single-frame net of Fig. 10 scored RR 98.3 % at 10-40 %, 96.7 % at 0-10 % and 40-50 %, and
# 97.5 % with the fixed lambda (docs/preprocessing.md). The search (rpca_for_sparsity) costs a
# median 1.3 times one fixed-lambda solve per clip (benchmarks/lambda_search.py).
DEFAULT_SPARSITY = 0.25


class RPCAError(RuntimeError):
    """The decomposition failed (non-finite input or iterate, or no convergence).

    The message is meant to be recorded as the clip's exclusion reason.
    """


def default_lambda(shape) -> float:
    """lam = 1/sqrt(max(m, n)) (Candes, Li, Ma & Wright 2011)."""
    return 1.0 / math.sqrt(max(shape))


def _svt_gram(X: np.ndarray, tau: float, out: np.ndarray) -> int:
    """Singular value threshold of tall X by tau via the Gram matrix, written into `out`.

    Returns the rank. Accurate to the degree explained in the module docstring.
    """
    n = X.shape[1]
    G = X.T @ X
    w, V = scipy.linalg.eigh(G, overwrite_a=True, check_finite=False, driver="evd")
    w_max = max(float(w[-1]), 0.0)
    eps = np.finfo(np.float64).eps
    # Candidates: eigenvalues that could belong to a singular value above tau given a
    # pessimistic bound on the Gram matrix's absolute eigenvalue error.
    slack = 64.0 * n * eps * w_max
    cand = np.flatnonzero(w >= tau * tau - slack) if w_max > 0.0 else np.empty(0, int)
    if cand.size == 0:
        out.fill(0.0)
        return 0
    # sqrt(w) is accurate enough for a singular value well above the threshold and well
    # above the Gram matrix's resolution (error ~ a few eps * w_max, which moves s_i by
    # < 1e-10 s_1 when w_i > 3e-10 w_max). The rest get s_i = ||X v_i||, accurate for any s_i.
    wc = w[cand]
    sure = (wc >= tau * tau + slack) & (wc >= 3e-10 * w_max)
    s = np.sqrt(np.maximum(wc, 0.0))
    unsure = np.flatnonzero(~sure)
    if unsure.size:
        Bu = X @ V[:, cand[unsure]]
        s[unsure] = np.sqrt(np.einsum("ij,ij->j", Bu, Bu))
    keep = s > tau
    r = int(np.count_nonzero(keep))
    if r == 0:
        out.fill(0.0)
        return 0
    Vk = np.ascontiguousarray(V[:, cand[keep]])
    scale = 1.0 - tau / s[keep]
    if 2 * r <= n // 2:
        # A = X Vk diag(scale) Vk^T through the thin factor: 4 m n r flops.
        B = X @ Vk
        B *= scale
        np.matmul(B, Vk.T, out=out)
    else:
        # Through the n x n matrix: 2 m n^2 flops, fewer when r is large.
        np.matmul(X, (Vk * scale) @ Vk.T, out=out)
    return r


def _svt_full(X: np.ndarray, tau: float, out: np.ndarray) -> int:
    U, s, Vt = scipy.linalg.svd(X, full_matrices=False, check_finite=False)
    r = int(np.count_nonzero(s > tau))
    if r == 0:
        out.fill(0.0)
        return 0
    np.matmul(U[:, :r] * (s[:r] - tau), Vt[:r], out=out)
    return r


def _spectral_norm(D: np.ndarray) -> float:
    m, n = D.shape
    small = D.T @ D if m >= n else D @ D.T
    top = scipy.linalg.eigh(small, eigvals_only=True, subset_by_index=[small.shape[0] - 1] * 2,
                            check_finite=False)
    return math.sqrt(max(float(top[-1]), 0.0))


def rpca(D, lam: float | None = None, tol: float = 1e-7, max_iter: int = 1000, *,
         rho: float = 1.5, mu: float | None = None, svd: str = "gram",
         strict: bool = True, return_dual: bool = False, blas_threads: int | None = 1):
    """Decompose D = A + E with A low rank and E sparse (inexact ALM).

    blas_threads: BLAS threads for the solve (threadpoolctl), 1 by default whatever the caller
    set: on a clip's 12544 x 152 matrix OpenBLAS is slower with more (a noisy 60-frame clip:
    1.3-1.5 s with one thread, 2.7-3.0 s with two, on this project's 2-core machine; tools
    like predict.py that call the library directly got the slow path). None leaves the
    caller's setting.

    Parameters
    ----------
    D : (m, n) array (any real dtype; float64 internally). For a clip: one column per frame.
    lam : weight of ||E||_1; default 1/sqrt(max(m, n)).
    tol : stop when ||D - A - E||_F / ||D||_F < tol.
    max_iter : iteration cap.
    rho, mu : mu's growth factor and start (default 1.25/||D||_2), as in Lin et al.
    svd : "gram" (fast, for tall or wide D) or "full" (LAPACK SVD each iteration).
    strict : raise RPCAError when not converged within max_iter (else return with
        info["converged"] False). Non-finite input or iterates always raise.
    return_dual : put the final multiplier Y (m x n float64) in info["Y"]. At the optimum
        Y is a dual certificate: |Y| <= lam everywhere, Y = lam sign(E) on E's support, and
        Y is a subgradient of ||.||_* at A.

    Returns
    -------
    A, E : float64 arrays of D's shape.
    info : dict with iterations, rank (of A), nnz_share (share of non-zero entries of E),
        converged, lam, rel_residual, mu (final), svd.
    """
    if blas_threads is None:
        return _rpca(D, lam, tol, max_iter, rho, mu, svd, strict, return_dual)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=int(blas_threads), user_api="blas"):
        return _rpca(D, lam, tol, max_iter, rho, mu, svd, strict, return_dual)


def _rpca(D, lam, tol, max_iter, rho, mu, svd, strict, return_dual):
    D = np.array(D, dtype=np.float64, copy=True, order="C")
    if D.ndim != 2 or D.size == 0:
        raise RPCAError(f"RPCA needs a non-empty 2-D matrix, got shape {D.shape}")
    if not np.all(np.isfinite(D)):
        raise RPCAError("RPCA input contains NaN or infinite values")
    if svd not in ("gram", "full"):
        raise ValueError(f"svd must be 'gram' or 'full', not {svd!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    transposed = D.shape[0] < D.shape[1]
    if transposed:      # the Gram route wants the short side as columns
        D = np.ascontiguousarray(D.T)
    m, n = D.shape
    lam = default_lambda((m, n)) if lam is None else float(lam)
    if not lam > 0 or not math.isfinite(lam):
        raise ValueError(f"lam must be a positive number, got {lam}")
    svt = _svt_gram if svd == "gram" else _svt_full

    def finish(A, E, Y, it, rank, converged, rel, mu_):
        if transposed:
            A, E = A.T, E.T
            Y = None if Y is None else Y.T
        info = {"iterations": it, "rank": rank,
                "nnz_share": float(np.count_nonzero(E)) / E.size,
                "converged": converged, "lam": lam, "rel_residual": rel, "mu": mu_, "svd": svd}
        if return_dual:
            info["Y"] = Y
        return np.ascontiguousarray(A), np.ascontiguousarray(E), info

    d_norm = math.sqrt(float(np.vdot(D, D)))
    if not math.isfinite(d_norm):
        raise RPCAError("RPCA input too large: its norm overflows float64 (values up to "
                        f"{float(np.abs(D).max()):.3g}); scale the input down")
    if d_norm == 0.0:
        Z0 = np.zeros_like(D)
        return finish(Z0, Z0.copy(), Z0.copy() if return_dual else None, 0, 0, True, 0.0, 0.0)
    norm_two = _spectral_norm(D)
    norm_inf = float(np.abs(D).max()) / lam
    mu = 1.25 / norm_two if mu is None else float(mu)
    mu_max = mu * 1e7

    # Buffers, reused: every pass over a 12544 x 150 float64 array costs about a
    # millisecond, as much as the rest of an iteration's arithmetic, so the loop is written
    # to make few. With T = D + Y/mu - A the soft threshold is E = T - clip(T, -lam/mu,
    # lam/mu), so X = D - E + Y/mu = A + clip(T, ...); and the new multiplier is
    # Y' = Y + mu (D - A' - E) = mu (X - A'). E itself is formed once, from the last T.
    A = np.zeros_like(D)
    T = np.empty_like(D)
    X = np.empty_like(D)
    Ys = D * (1.0 / (max(norm_two, norm_inf) * mu))   # Y / mu
    it = 0
    while True:                                  # at least one pass: max_iter >= 1
        it += 1
        t = lam / mu
        np.add(D, Ys, out=T)
        T -= A
        np.clip(T, -t, t, out=X)
        X += A                                   # X = D - E + Y/mu
        rank = svt(X, 1.0 / mu, A)
        X -= A                                   # X - A' = Y'/mu
        np.subtract(X, Ys, out=Ys)               # Z = D - A' - E = (X - A') - Y/mu
        rel = math.sqrt(float(np.vdot(Ys, Ys))) / d_norm
        if not math.isfinite(rel):
            raise RPCAError(f"RPCA iterate became non-finite at iteration {it}")
        if rel < tol or it >= max_iter:
            converged = rel < tol
            break
        mu_next = min(mu * rho, mu_max)
        np.multiply(X, mu / mu_next, out=Ys)     # Y'/mu'
        mu = mu_next
    if not converged and strict:
        raise RPCAError(f"RPCA did not converge in {max_iter} iterations "
                        f"(relative residual {rel:.3g} > tol {tol:g}, lam {lam:.4g})")
    E = np.clip(T, -t, t)
    np.subtract(T, E, out=E)                     # exact zeros where |T| <= lam/mu
    Y = None
    if return_dual:
        Y = X
        Y *= mu                                  # Y' = mu (X - A')
    return finish(A, E, Y, it, rank, converged, rel, mu)


# The lambda search. Near the target, logit(share of non-zeros in E) falls linearly in
# log(lambda) with nearly the same slope on every clip: -8.3 +- 0.3 from lambda* to 0.95 lambda*,
# -7.7 +- 0.6 to 1.05 lambda* (benchmarks/lambda_search.py, docs/measurements.md). One solve
# anywhere near lambda* therefore says where lambda* is, to a fraction of a percent.
SHARE_SLOPE = -8.3
# A step never moves lambda by more than this factor: far from the target the share saturates
# and the line above overstates how far lambda* is.
MAX_STEP = 4.0
# Row subsamples that predict lambda* before the first full solve: (keep every k-th row, the
# ratio of the subsample's lambda* to the full problem's beyond the sqrt(k) that 1/sqrt(rows)
# accounts for, the share within which the level stops stepping, the most solves it makes).
# Measured on 18 clips (12544 x 152, benchmarks/lambda_search.py): every 64th row
# 1.106 +- 0.018, every 9th 1.021 +- 0.006. A solve of every 64th row costs about 0.05 of a
# full one (the 152 x 152 eigensolve dominates it), of every 9th 0.13; the coarse level steps
# until its share is within 0.04 of the target, the fine one solves once and steps along
# SHARE_SLOPE.
PREDICT_LEVELS = ((64, 1.106, 0.04, 4), (9, 1.021, 1.0, 1))


def logit(p):
    """log(p / (1 - p)), p clamped to [1e-6, 1 - 1e-6] (a share of exactly 0 or 1)."""
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _slope_step(lam, share, target, slope=SHARE_SLOPE):
    """The lambda where the line of slope `slope` through (log lam, logit share) meets the
    target, moved by at most MAX_STEP."""
    step = (logit(target) - logit(share)) / slope
    step = min(max(step, -math.log(MAX_STEP)), math.log(MAX_STEP))
    return lam * math.exp(step)


def _secant(points):
    """The slope of logit(share) against log(lam) through two solves on one side of the
    target, or SHARE_SLOPE where that is flat, rising or implausibly steep (a share that
    jumps, or saturates)."""
    (l1, s1), (l2, s2) = points
    if l1 == l2:
        return SHARE_SLOPE
    slope = (logit(s2) - logit(s1)) / (math.log(l2) - math.log(l1))
    return slope if -50.0 <= slope <= -0.5 else SHARE_SLOPE


def row_subsample(D, k: int):
    """Every k-th row of D's long side, and the factor that scales a lambda of the subsample
    to D's size (lambda goes as 1/sqrt of the long side): (sub, sqrt(long side / rows kept))."""
    long_axis = 0 if D.shape[0] >= D.shape[1] else 1
    sub = D[::k] if long_axis == 0 else D[:, ::k]
    return sub, math.sqrt(D.shape[long_axis] / sub.shape[long_axis])


def predicted_lambda(D, target: float = DEFAULT_SPARSITY, *, tol: float = 1e-7,
                     max_iter: int = 1000, **kw):
    """lambda for `target` share of non-zeros in E, predicted from solves of row subsamples.

    Each level of PREDICT_LEVELS keeps every k-th row of D's long side (1/k of the pixels),
    solves at the current guess scaled to its size (lambda goes as 1/sqrt(rows), times the
    level's measured ratio) and steps along SHARE_SLOPE. Starts at 1/sqrt(max(m, n)). A level
    is skipped where it would keep fewer rows than D has columns. Every step is along
    SHARE_SLOPE: a subsample's share is not logit-linear far from the target (the slope
    through two of its solves there overshoots). Returns (lam, solves) with
    solves a list of (k, lam of the subsample, its share).
    """
    D = np.asarray(D)
    if D.ndim != 2:
        raise RPCAError(f"RPCA needs a non-empty 2-D matrix, got shape {D.shape}")
    lam = default_lambda(D.shape)
    solves = []
    for k, ratio, near, steps in PREDICT_LEVELS:
        sub, scale = row_subsample(D, k)
        if min(sub.shape) < min(D.shape):      # fewer rows kept than D has columns
            continue
        scale *= ratio
        for _ in range(steps):
            _, _, info = rpca(sub, lam=lam * scale, tol=tol, max_iter=max_iter,
                              **dict(kw, strict=False))
            share = info["nnz_share"]
            solves.append((k, lam * scale, share))
            lam = _slope_step(lam, share, target)
            if abs(share - target) <= near:
                break
    return lam, solves


def rpca_for_sparsity(D, target: float = DEFAULT_SPARSITY, *, share_tol: float = 0.01,
                      lam0: float | None = None, max_solves: int = 16, tol: float = 1e-7,
                      max_iter: int = 1000, **kw):
    """RPCA with lam chosen per clip so that E keeps about `target` share of non-zeros.

    The first full solve is at lam0, by default predicted_lambda's (row subsamples, about 0.4
    of a solve on a clip). While the target is not bracketed, each next lam steps along
    SHARE_SLOPE from the last solve, or along the slope through the last two once there are two
    (at most MAX_STEP a step); once it is bracketed, regula falsi
    on the logit of the shares against log(lam), bisecting when the guess lands near an end,
    until |share - target| <= share_tol. Every full solve is a cold one: the E returned is
    exactly what rpca(D, lam=info["lam"]) gives.

    Returns (A, E, info) of the solve closest to the target; info adds target, target_met,
    solves (full solves), lam_tried (list of (lam, share) of the full solves) and
    subsample_solves (list of (k, lam, share) of the prediction's). Raises RPCAError when a
    solve fails, ValueError for a target outside (0, 1).
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target share must be in (0, 1), got {target}")
    if max_solves < 1:
        raise ValueError(f"max_solves must be at least 1, got {max_solves}")
    D = np.asarray(D)
    sub_solves = []
    if lam0 is None:
        lam, sub_solves = predicted_lambda(D, target, tol=tol, max_iter=max_iter, **kw)
    else:
        lam = float(lam0)
    tried = []
    best = None

    def solve(lam_):
        nonlocal best
        A, E, info = rpca(D, lam=lam_, tol=tol, max_iter=max_iter, **kw)
        share = info["nnz_share"]
        tried.append((lam_, share))
        if best is None or abs(share - target) < abs(best[2]["nnz_share"] - target):
            best = (A, E, info)
        return share

    def done():
        A, E, info = best
        info = dict(info, target=target, solves=len(tried), lam_tried=list(tried),
                    subsample_solves=list(sub_solves),
                    target_met=abs(info["nnz_share"] - target) <= share_tol)
        return A, E, info

    # lo has share above the target (small lam), hi below it (large lam).
    lo = hi = None
    while len(tried) < max_solves:
        share = solve(lam)
        if abs(share - target) <= share_tol:
            break
        if share > target:
            lo = (lam, share) if lo is None or lam > lo[0] else lo
        else:
            hi = (lam, share) if hi is None or lam < hi[0] else hi
        if lo is None or hi is None:
            lam = _slope_step(lam, share, target, _secant(tried[-2:]) if len(tried) > 1 else
                              SHARE_SLOPE)
            continue
        # The share falls along a sigmoid of log(lam): interpolate linearly in logit(share)
        # against log(lam) (regula falsi), and bisect when the guess lands near an end.
        a, b = math.log(lo[0]), math.log(hi[0])
        if abs(b - a) < 1e-6:
            break
        mid = 0.5 * (a + b)
        fa, fb, ft = logit(lo[1]), logit(hi[1]), logit(target)
        if fa != fb:
            guess = a + (fa - ft) * (b - a) / (fa - fb)
            if abs(guess - mid) <= 0.4 * abs(b - a):
                mid = guess
        lam = math.exp(mid)
    return done()
