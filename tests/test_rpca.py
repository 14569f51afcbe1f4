import numpy as np
import pytest

from threadpoolctl import threadpool_limits

from preprocessing.rpca import RPCAError, default_lambda, rpca, rpca_for_sparsity


@pytest.fixture(autouse=True)
def one_blas_thread():
    # As the pipeline runs it (one clip per core); OpenBLAS threads fighting over two
    # busy cores make these mid-sized products several times slower.
    with threadpool_limits(1):
        yield


def candes_problem(m, n, rank, rho, seed):
    """Random rank-r L plus a sparse S with random support and signs (Candes et al. 2011)."""
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n)) / np.sqrt(n)
    S = np.zeros((m, n))
    mask = rng.random((m, n)) < rho
    S[mask] = rng.choice([-1.0, 1.0], mask.sum()) * rng.uniform(0.5, 2.0, mask.sum())
    return L, S


def face_like(m=3000, n=60, seed=0):
    """A strong common image (identity), a few weak smooth changes, sparse motion, noise."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.8, m)
    t = np.linspace(0, 1, n)
    D = np.outer(base, 1 + 0.02 * np.sin(2 * np.pi * t))
    D += 0.01 * np.outer(rng.standard_normal(m), t)
    region = rng.random(m) < 0.05
    D[region] += 0.05 * np.exp(-((t - 0.5) / 0.15) ** 2)[None, :]
    D += 0.002 * rng.standard_normal((m, n))
    return D


@pytest.mark.parametrize("m,n,rank,rho", [(300, 300, 15, 0.05), (4000, 150, 5, 0.05)])
def test_exact_recovery(m, n, rank, rho):
    L, S = candes_problem(m, n, rank, rho, seed=m)
    A, E, info = rpca(L + S)
    assert info["converged"]
    assert info["rank"] == rank
    assert np.linalg.norm(A - L) / np.linalg.norm(L) <= 1e-6
    assert np.linalg.norm(E - S) / np.linalg.norm(S) <= 1e-6
    assert info["lam"] == pytest.approx(1 / np.sqrt(max(m, n)))
    assert info["nnz_share"] == pytest.approx(np.count_nonzero(S) / S.size, abs=2e-3)


def test_dual_certificate():
    """Y certifies optimality: |Y| <= lam, Y = lam sign(E) on supp(E), Y in d||A||_*."""
    L, S = candes_problem(2000, 120, 6, 0.05, seed=7)
    A, E, info = rpca(L + S, return_dual=True)
    Y, lam = info["Y"], info["lam"]
    assert Y.shape == A.shape
    # The E-step's condition holds up to mu*||A_k - A_{k-1}||, which vanishes with tol.
    assert np.abs(Y).max() <= lam * (1 + 1e-2)
    sup = E != 0
    assert sup.any()
    assert np.abs(Y[sup] - lam * np.sign(E[sup])).max() <= 1e-2 * lam
    # Subgradient of the nuclear norm at A: U^T Y V = I on A's singular subspaces, ||Y||_2 <= 1.
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    r = info["rank"]
    assert np.allclose(U[:, :r].T @ Y @ Vt[:r].T, np.eye(r), atol=1e-6)
    assert np.linalg.norm(Y, 2) <= 1 + 1e-6
    # A wrong lam would break the certificate: it is not vacuous.
    assert np.abs(Y).max() > 0.5 * lam


def test_gram_matches_full_svd_on_ill_conditioned_data():
    D = face_like(m=2000, n=50)
    s = np.linalg.svd(D, compute_uv=False)
    assert s[0] / s[5] > 100          # a dominant identity component, as in real clips
    A1, E1, i1 = rpca(D, svd="gram")
    A2, E2, i2 = rpca(D, svd="full")
    assert i1["converged"] and i2["converged"]
    assert i1["iterations"] == i2["iterations"]
    assert np.linalg.norm(A1 - A2) / np.linalg.norm(D) < 1e-9
    assert np.linalg.norm(E1 - E2) / np.linalg.norm(D) < 1e-9


def test_wide_matrix_is_the_transpose_problem():
    L, S = candes_problem(1000, 80, 4, 0.05, seed=3)
    A, E, info = rpca(L + S)
    At, Et, info_t = rpca((L + S).T)
    assert At.shape == (80, 1000) and info_t["lam"] == info["lam"]
    assert np.allclose(At, A.T, atol=1e-9) and np.allclose(Et, E.T, atol=1e-9)


def test_input_dtype_and_no_mutation():
    L, S = candes_problem(500, 40, 3, 0.05, seed=4)
    D = (L + S).astype(np.float32)
    D0 = D.copy()
    A, E, info = rpca(D)
    assert A.dtype == np.float64 and E.dtype == np.float64
    assert np.array_equal(D, D0)
    assert np.allclose(A + E, D, atol=1e-5)


def test_failures_raise_rpca_error():
    D = np.random.default_rng(0).standard_normal((100, 20))
    D[3, 4] = np.nan
    with pytest.raises(RPCAError, match="NaN"):
        rpca(D)
    D[3, 4] = 0.0
    with pytest.raises(RPCAError, match="did not converge in 2 iterations"):
        rpca(D, max_iter=2)
    A, E, info = rpca(D, max_iter=2, strict=False)
    assert info["converged"] is False and info["iterations"] == 2
    with pytest.raises(RPCAError):
        rpca(np.zeros((0, 3)))


def test_zero_matrix():
    A, E, info = rpca(np.zeros((50, 10)))
    assert not A.any() and not E.any()
    assert info["converged"] and info["rank"] == 0 and info["nnz_share"] == 0.0


def test_default_lambda():
    assert default_lambda((12544, 150)) == pytest.approx(1 / 112)


def test_lambda_for_sparsity_hits_target():
    D = face_like(m=2000, n=40, seed=1)
    _, _, base = rpca(D)
    target = 0.25
    assert abs(base["nnz_share"] - target) > 0.05      # the default lam does not already hit it
    A, E, info = rpca_for_sparsity(D, target=target, share_tol=0.01)
    assert info["target_met"]
    assert abs(np.count_nonzero(E) / E.size - target) <= 0.01
    assert info["nnz_share"] == pytest.approx(np.count_nonzero(E) / E.size)
    assert info["lam"] != pytest.approx(base["lam"])
    assert info["solves"] == len(info["lam_tried"]) >= 1
    assert [k for k, _, _ in info["subsample_solves"]] == [9]    # 2000 / 64 rows < 40 columns
    # Every full solve is a cold one: E is exactly what a fixed-lambda solve at lam gives.
    assert np.array_equal(E, rpca(D, lam=info["lam"])[1])
    # Larger lam, fewer non-zeros: the search's own samples are ordered that way.
    pts = sorted(info["lam_tried"])
    shares = [s for _, s in pts]
    assert shares == sorted(shares, reverse=True)


def test_lambda_for_sparsity_bad_target():
    with pytest.raises(ValueError):
        rpca_for_sparsity(np.ones((10, 5)), target=1.5)


def test_rpca_runs_on_one_blas_thread_whatever_the_caller_set(monkeypatch):
    """On a clip-sized matrix OpenBLAS is slower with more threads; the library pins it."""
    from threadpoolctl import threadpool_info, threadpool_limits
    import preprocessing.rpca as R
    seen = []
    real = R._svt_gram

    def spy(X, tau, out):
        seen.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return real(X, tau, out)

    monkeypatch.setattr(R, "_svt_gram", spy)
    D = np.random.default_rng(0).normal(size=(400, 30))
    with threadpool_limits(limits=2, user_api="blas"):
        R.rpca(D, max_iter=5, strict=False)
        assert seen and set(seen) == {1}
        seen.clear()
        R.rpca(D, max_iter=5, strict=False, blas_threads=None)
        assert seen and max(seen) == min(2, max(
            i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))


@pytest.mark.parametrize("svd", ["gram", "full"])
def test_a_lone_spike_is_all_sparse_with_a_rank_zero_low_rank_part(svd):
    """Worked out by hand: one non-zero entry costs lam * 5 in E and 5 (its singular value) in
    A, so with lam < 1 the optimum is A = 0, E = D; the solver's zero-rank branch returns it."""
    D = np.zeros((400, 30))
    D[7, 3] = 5.0
    A, E, info = rpca(D, svd=svd)
    assert info["rank"] == 0 and not A.any() and np.array_equal(E, D)
    assert info["converged"] and info["nnz_share"] == 1 / D.size


def test_the_iteration_count_is_the_number_of_iterations_run(monkeypatch):
    import preprocessing.rpca as R
    calls = []
    real = R._svt_gram
    monkeypatch.setattr(R, "_svt_gram", lambda X, tau, out: calls.append(1) or real(X, tau, out))
    D = np.random.default_rng(3).normal(size=(300, 20)) @ np.random.default_rng(4).normal(size=(20, 20))
    _, _, info = R.rpca(D)
    assert info["iterations"] == len(calls) > 1
    calls.clear()
    _, _, info = R.rpca(D, max_iter=3, strict=False)
    assert info["iterations"] == len(calls) == 3 and not info["converged"]


# ---------------------------------------------------------- against a textbook reference

def reference_inexact_alm(D, lam, n_iter, tol=1e-7, rho=1.5):
    """Lin, Chen & Ma 2010, Algorithm 5 with their inexact_alm_rpca.m's start, written out
    plainly with numpy's full SVD: (A, E, Y, iterations, mu, converged) after at most
    n_iter iterations."""
    D = np.asarray(D, dtype=float)
    norm_two = np.linalg.norm(D, 2)
    Y = D / max(norm_two, np.abs(D).max() / lam)
    mu = 1.25 / norm_two
    mu_max = mu * 1e7
    A = np.zeros_like(D)
    for k in range(1, n_iter + 1):
        T = D - A + Y / mu
        E = np.sign(T) * np.maximum(np.abs(T) - lam / mu, 0.0)
        U, s, Vt = np.linalg.svd(D - E + Y / mu, full_matrices=False)
        A = (U * np.maximum(s - 1.0 / mu, 0.0)) @ Vt
        Z = D - A - E
        Y = Y + mu * Z
        converged = np.linalg.norm(Z) / np.linalg.norm(D) < tol
        if converged or k == n_iter:
            return A, E, Y, k, mu, converged
        mu = min(mu * rho, mu_max)


def small_problem(m=80, n=12, seed=11):
    L, S = candes_problem(m, n, 2, 0.08, seed)
    return L + S + 0.01 * np.random.default_rng(seed).standard_normal((m, n))


@pytest.mark.parametrize("svd", ["gram", "full"])
@pytest.mark.parametrize("n_iter", [1, 2, 5, 1000])
@pytest.mark.parametrize("wide", [False, True])
def test_each_iterate_is_the_reference_algorithms(svd, n_iter, wide):
    D = small_problem()
    D = D.T if wide else D
    lam = 0.2
    A, E, info = rpca(D, lam=lam, max_iter=n_iter, strict=False, svd=svd, return_dual=True)
    rA, rE, rY, k, mu, converged = reference_inexact_alm(D, lam, n_iter)
    scale = np.linalg.norm(D)
    assert np.linalg.norm(A - rA) <= 1e-9 * scale and np.linalg.norm(E - rE) <= 1e-9 * scale
    assert np.linalg.norm(info["Y"] - rY) <= 1e-8 * np.linalg.norm(rY)
    assert info["Y"].shape == D.shape
    assert info["iterations"] == k and info["converged"] == converged
    assert info["mu"] == pytest.approx(mu, rel=1e-12)
    assert info["rank"] == np.linalg.matrix_rank(rA, tol=1e-9 * scale)


def test_mu_growth_and_its_cap_follow_the_reference():
    D = small_problem(seed=12)
    for rho in (3.0, 1e4):                         # 1e4: the cap mu0 * 1e7 is hit at step 3
        A, E, info = rpca(D, lam=0.3, max_iter=4, strict=False, rho=rho)
        rA, rE, _, _, mu, _ = reference_inexact_alm(D, 0.3, 4, rho=rho)
        assert info["mu"] == pytest.approx(mu, rel=1e-12)
        assert np.allclose(A, rA, atol=1e-9) and np.allclose(E, rE, atol=1e-9)


def test_the_default_tolerance_and_iteration_cap():
    D = small_problem(seed=13)
    A, E, info = rpca(D)
    rA, rE, _, k, _, converged = reference_inexact_alm(D, default_lambda(D.shape), 1000)
    assert converged and info["iterations"] == k and np.allclose(E, rE, atol=1e-9)
    # tol 0 can never be met: the default cap stops it after exactly 1000 iterations.
    _, _, info = rpca(D, tol=0.0, strict=False)
    assert info["iterations"] == 1000 and not info["converged"]


def test_the_start_mu_can_be_given():
    D = small_problem(seed=14)
    _, _, a = rpca(D, max_iter=1, strict=False)
    _, _, b = rpca(D, max_iter=1, strict=False, mu=2 * a["mu"])
    assert b["mu"] == pytest.approx(2 * a["mu"])


def reference_svt(X, tau):
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    return (U * np.maximum(s - tau, 0.0)) @ Vt, int(np.count_nonzero(s > tau))


@pytest.mark.parametrize("route", ["_svt_gram", "_svt_full"])
@pytest.mark.parametrize("tau", [2.0, 0.3, 1e-3, 3e-6, 1e-9])
def test_singular_value_threshold_over_twelve_decades(route, tau):
    """Singular values 1 .. 1e-12: the Gram route must match the SVD where sqrt(w) could
    not (small values next to the threshold), and overwrite whatever `out` held before.
    Under the Gram matrix's resolution (s < 1e-8 s_1) its singular vectors mix, and the
    module's doc promises only an error of about the threshold (measured: 1.67 tau at
    tau = 1e-9, rank 24 for the SVD's 18)."""
    import preprocessing.rpca as R
    rng = np.random.default_rng(5)
    U, _ = np.linalg.qr(rng.standard_normal((300, 24)))
    V, _ = np.linalg.qr(rng.standard_normal((24, 24)))
    X = (U * np.logspace(0, -12, 24)) @ V.T
    out = np.full_like(X, 7.0)                   # the previous iterate's A
    rank = getattr(R, route)(X, tau, out)
    ref, ref_rank = reference_svt(X, tau)
    assert np.linalg.norm(out - ref, 2) <= 2 * tau
    if tau >= 1e-6:
        assert rank == ref_rank
        assert np.abs(out - ref).max() <= 1e-12


@pytest.mark.parametrize("route", ["_svt_gram", "_svt_full"])
def test_singular_value_threshold_of_nothing(route):
    import preprocessing.rpca as R
    for X in (np.zeros((40, 6)), np.ones((40, 6)) * 1e-3):   # zero; one value under tau
        out = np.full_like(X, 7.0)
        assert getattr(R, route)(X, 1.0, out) == 0 and not out.any()


def test_spectral_norm_of_tall_wide_and_small_matrices():
    import preprocessing.rpca as R
    rng = np.random.default_rng(6)
    for shape, scale in (((50, 7), 1.0), ((7, 50), 1.0), ((9, 9), 1e-3)):
        D = scale * rng.standard_normal(shape)
        assert R._spectral_norm(D) == pytest.approx(np.linalg.norm(D, 2), rel=1e-12)


def test_the_svd_route_asked_for_is_the_one_run(monkeypatch):
    import preprocessing.rpca as R
    shapes = {"gram": [], "full": []}
    real = {"gram": R._svt_gram, "full": R._svt_full}
    for name in shapes:
        monkeypatch.setattr(R, "_svt_" + name, lambda X, tau, out, name=name: (
            shapes[name].append(X.shape), real[name](X, tau, out))[1])
    D = small_problem(seed=15)
    R.rpca(D.T, max_iter=3, strict=False)               # wide: solved as its transpose
    assert shapes["gram"] == [(80, 12)] * 3 and not shapes["full"]
    R.rpca(D, max_iter=2, strict=False, svd="full")
    assert shapes["full"] == [(80, 12)] * 2
    with pytest.raises(ValueError, match="svd must be 'gram' or 'full'"):
        R.rpca(D, svd="qr")


@pytest.mark.parametrize("lam", [0.0, -0.1, float("inf"), float("nan")])
def test_lambda_must_be_positive_and_finite(lam):
    with pytest.raises(ValueError, match="lam must be a positive number"):
        rpca(np.ones((10, 3)), lam=lam)


def test_zero_matrix_info():
    A, E, info = rpca(np.zeros((5, 20)), return_dual=True)
    assert A.shape == E.shape == info["Y"].shape == (5, 20) and not info["Y"].any()
    assert (info["iterations"], info["rank"], info["rel_residual"], info["mu"]) == (0, 0, 0.0, 0.0)


def test_a_singular_value_exactly_at_the_threshold_is_cut():
    import preprocessing.rpca as R
    X = np.zeros((40, 6))
    X[0, 0] = 1.0
    for route in (R._svt_gram, R._svt_full):
        out = np.full_like(X, 7.0)
        assert route(X, 1.0, out) == 0 and not out.any()


def test_overflowing_input_and_iterates_are_rpca_errors(monkeypatch):
    import preprocessing.rpca as R
    big = 1e160 * np.random.default_rng(0).standard_normal((30, 5))
    with pytest.raises(RPCAError, match="too large"):
        rpca(big)
    # A LAPACK failure that leaves NaN in A: stopped at once, not iterated on.
    monkeypatch.setattr(R, "_svt_gram", lambda X, tau, out: (out.fill(np.nan), 1)[1])
    with pytest.raises(RPCAError, match="non-finite at iteration 1"):
        R.rpca(small_problem())
    with pytest.raises(ValueError, match="max_iter must be at least 1"):
        rpca(np.ones((10, 3)), max_iter=0)


# ------------------------------------------- the lambda search, on shares known by hand

def known_share_solver(monkeypatch, share_of):
    """Puts a stand-in for rpca under rpca_for_sparsity whose E's share of non-zeros is
    share_of(lam), so each step of the search can be worked out by hand; E is lam itself,
    so the solve that was returned can be seen."""
    import preprocessing.rpca as R
    monkeypatch.setattr(R, "rpca", lambda D, lam, tol, max_iter, **kw: (
        None, lam, {"nnz_share": share_of(lam), "lam": lam}))
    return R.rpca_for_sparsity


def logistic(lam_star):
    # logit(share) = -2 log(lam / lam_star): linear in log(lam), as the search assumes.
    return lambda lam: 1.0 / (1.0 + (lam / lam_star) ** 2)


def slope_step(lam, share, target=0.5):
    """The search's step along R.SHARE_SLOPE, worked out here."""
    import math
    import preprocessing.rpca as R
    logit = lambda p: math.log(p / (1 - p))
    return lam * math.exp((logit(target) - logit(share)) / R.SHARE_SLOPE)


@pytest.mark.parametrize("lam_star", [10.0, 0.1])
def test_search_steps_along_the_slope_then_along_the_secant(monkeypatch, lam_star):
    """logit(share) = -2 log(lam / lam_star): much flatter than SHARE_SLOPE, so the first step
    falls short; the next ones take the slope of the last two solves (-2), the first of them
    cut to MAX_STEP (a factor of 4), the second landing on lam_star."""
    share = logistic(lam_star)
    search = known_share_solver(monkeypatch, share)
    _, E, info = search(np.zeros((4, 4)), target=0.5, lam0=1.0)
    lams = [lam for lam, _ in info["lam_tried"]]
    assert lams[:2] == [1.0, pytest.approx(slope_step(1.0, share(1.0)), rel=1e-12)]
    assert (lams[1] - 1.0) * (lam_star - 1.0) > 0 and abs(np.log(lams[1] / lam_star)) > 1
    assert lams[2] == pytest.approx(lams[1] * (4.0 if lam_star > 1 else 0.25), rel=1e-12)
    assert len(lams) == 4 == info["solves"] and lams[3] == pytest.approx(lam_star, rel=1e-12)
    assert info["target_met"] and E == lams[3] and info["target"] == 0.5
    assert info["subsample_solves"] == []           # lam0 given: nothing predicted


def test_search_defaults_start_and_target(monkeypatch):
    # 20 x 4: too few rows for any subsample level (every 9th row leaves 3 < 4 columns), so
    # the default lam0 = 1/sqrt(20); the default target 0.25 is reached at lam_star * sqrt(3).
    start = 1 / np.sqrt(20)
    search = known_share_solver(monkeypatch, logistic(start / np.sqrt(3)))
    _, E, info = search([[0.0] * 4] * 20)                  # any array-like
    assert info["lam_tried"] == [(start, pytest.approx(0.25))] and info["target_met"]
    assert info["subsample_solves"] == []
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match=r"target share must be in \(0, 1\)"):
            search(np.zeros((4, 4)), target=bad)
    # Within share_tol (0.01 by default) of the target: no second solve.
    search = known_share_solver(monkeypatch, lambda lam: 0.259 if lam == start else 0.0)
    assert search(np.zeros((20, 4)))[2]["solves"] == 1
    search = known_share_solver(monkeypatch, lambda lam: 0.261 if lam == start else 0.0)
    assert search(np.zeros((20, 4)))[2]["solves"] > 1


def test_the_prediction_from_row_subsamples_lands_on_the_target(monkeypatch):
    """A share that behaves as the levels were measured to: logit-linear in log(lam) at
    SHARE_SLOPE, each subsample's lambda* its rows' sqrt(m / rows) times the level's ratio.
    The coarse level's first solve steps onto lambda*, its second confirms it, the fine level
    solves once there, and the first full solve meets the target."""
    import preprocessing.rpca as R
    m, n, lam_star = 12544, 152, 0.0105
    ratio = {m: 1.0}
    for k, r, _, _ in R.PREDICT_LEVELS:
        ratio[len(range(0, m, k))] = r

    def stand_in(D, lam, tol, max_iter, **kw):
        rows = max(D.shape)
        star = lam_star * np.sqrt(m / rows) * ratio[rows]
        return None, lam, {"nnz_share": 1 / (1 + 3 * (lam / star) ** -R.SHARE_SLOPE),
                           "lam": lam}
    monkeypatch.setattr(R, "rpca", stand_in)
    _, E, info = R.rpca_for_sparsity(np.zeros((m, n)))
    assert [k for k, _, _ in info["subsample_solves"]] == [64, 64, 9]
    assert info["subsample_solves"][1][2] == pytest.approx(0.25)
    assert info["solves"] == 1 and info["target_met"] and E == pytest.approx(lam_star)
    # A wide D is subsampled along its long side the same way.
    lam, subs = R.predicted_lambda(np.zeros((n, m)))
    assert lam == pytest.approx(lam_star) and len(subs) == 3


def test_search_gives_up_after_max_solves_with_the_closest_solve(monkeypatch):
    """The share stays at 1: every step is the largest allowed (MAX_STEP = 4)."""
    search = known_share_solver(monkeypatch, logistic(1e6))
    _, E, info = search(np.zeros((4, 4)), target=0.5, lam0=1.0, max_solves=4)
    assert [lam for lam, _ in info["lam_tried"]] == [1, 4, 16, 64]
    assert not info["target_met"] and E == 64 and info["solves"] == 4


def test_search_bisects_in_log_lambda_where_regula_falsi_would_overshoot(monkeypatch):
    """A share that jumps from 0.9999 to 0.3 at lam = 3: the slope step from 1 crosses it;
    the logit line through the bracket then puts its guess beyond the 0.4-from-the-middle
    limit, so each step is the midpoint of log(lam); the target is never met and all 16
    solves are spent."""
    search = known_share_solver(monkeypatch, lambda lam: 0.9999 if lam < 3 else 0.3)
    _, E, info = search(np.zeros((4, 4)), target=0.5, lam0=1.0)
    lams = [lam for lam, _ in info["lam_tried"]]
    hi = slope_step(1.0, 0.9999)
    assert lams[:2] == [1, pytest.approx(hi, rel=1e-12)] and hi > 3
    assert np.allclose(np.log(lams[2:4]), [0.5 * np.log(hi), 0.75 * np.log(hi)])
    assert len(lams) == 16 and not info["target_met"]
    # Every solve above 3 is as close as any (share 0.3): the first of them is kept.
    assert E == lams[1]
    assert abs(np.log(lams[-1]) - np.log(3)) < 2 ** -10


def test_a_share_exactly_share_tol_away_meets_the_target(monkeypatch):
    search = known_share_solver(monkeypatch, lambda lam: 0.75)     # binary-exact distances
    _, _, info = search(np.zeros((4, 4)), target=0.5, share_tol=0.25, lam0=1.0)
    assert info["solves"] == 1 and info["target_met"]


def test_gram_route_counts_a_singular_value_just_above_the_threshold():
    """tau a hundred-millionth below s_k (s_k ~ 6e-6 and 2e-6 of s_1): sqrt of the Gram
    eigenvalue is off by more than that (measured: it drops s_k), so these candidates need
    the exact ||X v||; the rank must be the SVD's k + 1."""
    import preprocessing.rpca as R
    rng = np.random.default_rng(5)
    U, _ = np.linalg.qr(rng.standard_normal((300, 24)))
    V, _ = np.linalg.qr(rng.standard_normal((24, 24)))
    X = (U * np.logspace(0, -12, 24)) @ V.T
    s = np.linalg.svd(X, compute_uv=False)
    for k in (10, 11):
        tau = s[k] * (1 - 1e-8)
        out = np.empty_like(X)
        assert R._svt_gram(X, tau, out) == k + 1
        ref, _ = reference_svt(X, tau)
        assert np.abs(out - ref).max() <= 1e-12


def test_a_step_past_a_steep_share_brackets_it_and_regula_falsi_lands_on_it(monkeypatch):
    """logit(share) = -20 log(lam / 1.05): steeper than SHARE_SLOPE, so the first step
    overshoots (share 0.0176); one regula-falsi step on the exactly logit-linear share hits
    the lam of share 0.25, 1.05 * 3 ** (1 / 20)."""
    search = known_share_solver(monkeypatch, lambda lam: 1 / (1 + (lam / 1.05) ** 20))
    _, E, info = search(np.zeros((4, 4)), target=0.25, lam0=1.0)
    lams = [lam for lam, _ in info["lam_tried"]]
    assert lams[1] == pytest.approx(slope_step(1.0, 1 / (1 + 1.05 ** -20), 0.25), rel=1e-12)
    assert info["lam_tried"][1][1] < 0.02
    assert len(lams) == 3 and info["target_met"]
    assert E == lams[2] == pytest.approx(1.05 * 3 ** (1 / 20), rel=1e-12)


def test_search_survives_shares_of_exactly_one_and_zero(monkeypatch):
    # All of E non-zero below lam = 3, none above: logit needs its clamp (the first step is
    # the largest allowed, to 4), and bisection narrows the bracket [1, 4] to 1e-6 in
    # log(lam): 2 bracketing solves, then 21 halvings of log 4 until it is under 1e-6
    # (log(4) / 2**21 = 6.6e-7).
    search = known_share_solver(monkeypatch, lambda lam: 1.0 if lam < 3 else 0.0)
    _, E, info = search(np.zeros((4, 4)), target=0.5, lam0=1.0, max_solves=100)
    assert info["lam_tried"][1][0] == 4.0
    assert info["solves"] == 23 and not info["target_met"]
    assert abs(np.log(info["lam_tried"][-1][0] / 3)) < 2e-6
    assert E == 1                        # every solve is 0.5 away: the first is kept


def test_rank_one_threshold_by_hand():
    import preprocessing.rpca as R
    X = np.zeros((40, 6))
    X[0, 0] = 1.0                          # one singular value, 1
    for route in (R._svt_gram, R._svt_full):
        out = np.full_like(X, 7.0)
        assert route(X, 0.25, out) == 1 and np.array_equal(out, 0.75 * X)


def test_the_dual_is_returned_only_when_asked():
    _, _, info = rpca(small_problem(seed=16), max_iter=2, strict=False)
    assert "Y" not in info


def test_search_solves_at_rpcas_own_defaults(monkeypatch):
    import inspect
    import preprocessing.rpca as R
    defaults = inspect.signature(R.rpca).parameters
    seen = []
    monkeypatch.setattr(R, "rpca", lambda D, lam, tol, max_iter, **kw: (
        seen.append((tol, max_iter)), (None, lam, {"nnz_share": 0.25, "lam": lam}))[1])
    R.rpca_for_sparsity(np.zeros((4, 4)))
    assert seen == [(defaults["tol"].default, defaults["max_iter"].default)] == [(1e-7, 1000)]


@pytest.mark.parametrize("shares, n_solves", [
    # lam 1 gives 1.0, the largest step 4 gives 0, the midpoint 2 gives 0.75, exactly
    # share_tol from the target.
    (lambda lam: 1.0 if lam < 1.5 else (0.75 if lam < 3 else 0.0), 3),
    # lam 1, 2 give 1.0, lam 4 gives 0; the midpoint 2.83 gives 0.75.
    (lambda lam: 1.0 if lam < 2.5 else (0.75 if lam < 3.5 else 0.0), 4),
])
def test_a_share_exactly_share_tol_away_stops_the_search(monkeypatch, shares, n_solves):
    search = known_share_solver(monkeypatch, shares)
    _, _, info = search(np.zeros((4, 4)), target=0.5, share_tol=0.25, lam0=1.0)
    assert info["solves"] == n_solves and info["target_met"]


def test_search_needs_at_least_one_solve():
    with pytest.raises(ValueError, match="max_solves must be at least 1, got 0"):
        rpca_for_sparsity(np.ones((10, 5)), max_solves=0)
