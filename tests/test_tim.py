import numpy as np
import pytest

from preprocessing.tim import interpolate, interpolation_matrix, sample_times


def tim_by_graph_embedding(X, n_out):
    """TIM as Zhou et al. 2011 describe it, step by step, for frames X (F, d) with d >> F.

    Path-graph Laplacian eigenvectors give each frame a point on a curve; a linear map from
    the mean-centred frames to those points is fitted; the curve is sampled at n_out evenly
    spaced times and mapped back to image space.
    """
    F = X.shape[0]
    W = np.eye(F, k=1) + np.eye(F, k=-1)
    L = np.diag(W.sum(1)) - W
    lam, vecs = np.linalg.eigh(L)
    Y = vecs[:, 1:]                                   # drop the constant eigenvector
    # Each eigenvector is sin(pi k t/F + pi (F-k)/(2F)) up to sign and norm: fix both from
    # the closed form so that the curve can be evaluated between frames.
    t = np.arange(1, F + 1)
    k = np.arange(1, F)
    closed = np.sin(np.pi * np.outer(t, k) / F + np.pi * (F - k) / (2 * F))
    scale = (closed * Y).sum(0) / (Y * Y).sum(0)
    assert np.allclose(Y * scale, closed, atol=1e-8)  # the eigenvectors are these sinusoids
    mean = X.mean(0)
    Xc = X - mean
    # Map M: y_t = Xc_t @ M (least squares; exact when the centred frames are independent).
    M, *_ = np.linalg.lstsq(Xc, closed, rcond=None)
    ts = np.linspace(1.0 / F, 1.0, n_out)             # the curve's continuous time
    curve = np.sin(np.pi * np.outer(ts, k) + np.pi * (F - k) / (2 * F))
    # Back to image space through the pseudo-inverse of the map.
    return curve @ np.linalg.pinv(M) + mean


@pytest.mark.parametrize("F,n_out", [(7, 150), (31, 150), (12, 5)])
def test_matches_graph_embedding_tim(F, n_out):
    rng = np.random.default_rng(F)
    X = rng.standard_normal((F, 400))
    ref = tim_by_graph_embedding(X, n_out)
    out = interpolate(X, n_out=n_out, antialias=False)
    assert np.allclose(out, ref, atol=1e-8)


def test_reproduces_frames_when_n_out_equals_F():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 8, 9, 3), dtype=np.uint8)
    assert np.array_equal(interpolate(x, n_out=40), x)
    xf = rng.standard_normal((40, 8, 9))
    assert np.allclose(interpolate(xf, n_out=40), xf, atol=1e-12)


@pytest.mark.parametrize("F", [2, 3, 17, 60, 149, 151, 300])
def test_endpoints_kept_and_shapes(F):
    rng = np.random.default_rng(F)
    x = rng.integers(0, 256, (F, 6, 5, 3), dtype=np.uint8)
    for method in ("tim", "linear"):
        y = interpolate(x, n_out=150, method=method, antialias=False)
        assert y.shape == (150, 6, 5, 3) and y.dtype == np.uint8
        assert np.array_equal(y[0], x[0]) and np.array_equal(y[-1], x[-1])


def test_basis_functions_are_reproduced_between_frames():
    """Any cosine of the DCT-II basis is interpolated exactly at arbitrary times."""
    F, n_out = 20, 150
    t_in = np.arange(F)
    t_out = sample_times(F, n_out)
    for k in (0, 1, 5, F - 1):
        x = np.cos(np.pi * k * (t_in + 0.5) / F)
        y = interpolate(x[:, None], n_out=n_out)[:, 0]
        assert np.allclose(y, np.cos(np.pi * k * (t_out + 0.5) / F), atol=1e-12)


def test_smooth_signal_interpolates_smoothly_and_beats_linear():
    # A pixel through onset, apex and offset: neutral (flat) at both ends, as in a clip.
    F, n_out = 25, 150
    f = lambda t: np.exp(-((t - 10.0) / 4.0) ** 2)
    x = f(np.arange(F, dtype=float))[:, None]
    truth = f(sample_times(F, n_out))
    y_tim = interpolate(x, n_out)[:, 0]
    y_lin = interpolate(x, n_out, method="linear")[:, 0]
    err_tim, err_lin = np.abs(y_tim - truth).max(), np.abs(y_lin - truth).max()
    assert err_tim < 1e-4 and err_tim < err_lin / 100
    # No kinks: the TIM curve's second difference is small everywhere; linear has corners.
    assert np.abs(np.diff(y_tim, 2)).max() < 0.5 * np.abs(np.diff(y_lin, 2)).max()


def test_linear_interpolation_values():
    x = np.array([[0.0], [10.0], [30.0]])
    y = interpolate(x, n_out=5, method="linear")[:, 0]
    assert np.allclose(y, [0, 5, 10, 20, 30])
    ramp = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((1, 3, 3), np.float32)
    y = interpolate(ramp, n_out=150, method="linear")
    assert y.dtype == np.float32
    assert np.allclose(y[:, 0, 0], np.linspace(0, 9, 150), atol=1e-5)


def test_single_frame_is_repeated():
    x = np.full((1, 4, 4, 3), 77, np.uint8)
    y = interpolate(x, 150)
    assert y.shape == (150, 4, 4, 3) and (y == 77).all()


def test_two_frames_give_a_monotone_transition():
    x = np.array([[0.0], [100.0]])
    y = interpolate(x, 150)[:, 0]
    assert y[0] == 0 and y[-1] == 100 and np.all(np.diff(y) > 0)


def test_longer_clip_is_antialiased():
    F, n_out = 300, 150
    t = np.arange(F)
    slow = np.cos(np.pi * 3 * (t + 0.5) / F)
    flicker = np.cos(np.pi * 260 * (t + 0.5) / F)   # too fast for 150 samples
    truth = np.cos(np.pi * 3 * (sample_times(F, n_out) + 0.5) / F)
    y = interpolate((slow + flicker)[:, None], n_out)[:, 0]
    assert np.abs(y - truth).max() < 1e-10         # the flicker is filtered out
    y_raw = interpolate((slow + flicker)[:, None], n_out, antialias=False)[:, 0]
    assert np.abs(y_raw - truth).max() > 0.5       # without the filter it aliases


def test_uint8_output_is_rounded_and_clipped():
    x = np.zeros((5, 1), np.uint8)
    x[2] = 255                                     # a spike: the cosine series overshoots
    M = interpolation_matrix(5, 150)
    raw = M @ x.astype(float)
    assert raw.min() < -0.5                        # overshoot below 0 exists ...
    y = interpolate(x, 150)
    assert y.dtype == np.uint8
    assert np.array_equal(y[:, 0], np.clip(np.rint(raw[:, 0]), 0, 255).astype(np.uint8))


def test_deterministic_and_input_untouched():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (33, 7, 7), dtype=np.uint8)
    x0 = x.copy()
    assert np.array_equal(interpolate(x), interpolate(x))
    assert np.array_equal(x, x0)


def test_bad_input():
    with pytest.raises(ValueError):
        interpolate(np.zeros((0, 4, 4)))
    with pytest.raises(ValueError):
        interpolate(np.zeros((5, 4, 4)), method="cubic")
    with pytest.raises(ValueError):
        interpolate(np.zeros((5, 4, 4), np.int32))
    with pytest.raises(ValueError):
        interpolate(np.zeros((5, 4, 4)), n_out=0)
