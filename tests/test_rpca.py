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
    assert info["solves"] == len(info["lam_tried"]) >= 2
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
