import numpy as np
import pytest

from preprocessing.tim import (apply_time_matrix, cell_times, clip_time_matrix, interpolate,
                               interpolation_matrix, normalise_clip, sample_times)


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


def cosine_series(x, times):
    """A signal's cosine series (its DCT-II, from scipy) evaluated at 0-based times."""
    from scipy.fft import dct
    F = len(x)
    c = dct(np.asarray(x, float), type=2, norm="ortho")
    k = np.arange(F)
    basis = np.cos(np.pi * np.outer(np.asarray(times) + 0.5, k) / F) * np.sqrt(2.0 / F)
    basis[:, 0] = np.sqrt(1.0 / F)
    return basis @ c


def test_uint8_output_is_rounded_and_clipped():
    x = np.zeros((5, 1), np.uint8)
    x[2] = 255                                     # a spike: the cosine series overshoots
    raw = cosine_series(x[:, 0], np.linspace(0, 4, 150))
    assert raw.min() < -0.5                        # overshoot below 0 exists ...
    y = interpolate(x, 150)
    assert y.dtype == np.uint8
    assert np.array_equal(y[:, 0], np.clip(np.rint(raw), 0, 255).astype(np.uint8))


def test_the_float_result_is_the_cosine_series():
    x = np.random.default_rng(2).standard_normal(9)
    t = np.linspace(0, 8, 40)
    assert np.allclose(interpolate(x[:, None], 40)[:, 0], cosine_series(x, t), atol=1e-12)


def test_frame_times_give_exactly_the_frame():
    assert np.array_equal(interpolation_matrix(10, 10), np.eye(10))
    M = interpolation_matrix(10, 19)               # every other output time is a frame
    assert np.array_equal(M[::2], np.eye(10))


def test_one_output_frame_is_the_first_frame():
    assert sample_times(7, 1).tolist() == [0.0]
    assert np.array_equal(interpolation_matrix(7, 1, antialias=False), np.eye(7)[:1])
    assert np.array_equal(interpolation_matrix(7, 1, "linear"), np.eye(7)[:1])


def test_antialiasing_is_the_default():
    M = interpolation_matrix(300, 150)
    assert np.array_equal(M, interpolation_matrix(300, 150, antialias=True))
    assert not np.allclose(M, interpolation_matrix(300, 150, antialias=False))


def test_linear_holds_the_end_frames_beyond_the_clip():
    M = interpolation_matrix(5, 4, "linear", times=[-1.0, 2.0, 4.0, 6.5])
    assert np.array_equal(M, np.eye(5)[[0, 2, 4, 4]])
    with pytest.raises(ValueError, match="times must have n_out = 3 entries"):
        interpolation_matrix(5, 3, times=[0.0, 1.0])


def test_the_pipelines_length_is_150_by_default():
    x = np.zeros((12, 2), np.float32)
    assert interpolate(x).shape == (150, 2) and normalise_clip(x).shape == (150, 2)
    M, k = clip_time_matrix(12)
    assert M.shape == (150 + 2 * k, 12)


def test_input_without_pixels_or_of_integer_type_is_refused():
    with pytest.raises(ValueError, match=r"frames must be \(F, H, W"):
        interpolate(np.zeros(5))
    with pytest.raises(ValueError, match="uint8 or float"):
        apply_time_matrix(np.eye(3), np.zeros((3, 2), np.int32))
    with pytest.raises(ValueError, match="at least one frame"):
        clip_time_matrix(0)


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


# ------------------------------------------------------------- the pipeline's time grid


def test_cell_times_cover_every_frame_equally():
    assert np.allclose(cell_times(150, 150), np.arange(150))
    t = cell_times(30, 150)
    assert np.isclose(t[0], -0.4) and np.isclose(t[-1], 29.4)
    # Five output frames fall in each input frame's interval [i - 1/2, i + 1/2).
    counts = np.bincount(np.floor(t + 0.5).astype(int), minlength=30)
    assert counts.tolist() == [5] * 30


@pytest.mark.parametrize("method", ["tim", "linear"])
@pytest.mark.parametrize("n_in", [1, 2, 7, 30, 150, 200])
def test_clip_time_matrix_shapes_and_constant_clips(method, n_in):
    M, k = clip_time_matrix(n_in, 150, method)
    assert M.shape == (150 + 2 * k, n_in)
    # Every output frame is a weighted mean: a still clip stays still, context included.
    assert np.allclose(M.sum(axis=1), 1.0)
    if n_in > 1 and n_in < 150:
        assert k >= 1


def test_clip_time_matrix_is_identity_on_a_150_frame_clip():
    M, k = clip_time_matrix(150, 150, "tim")
    assert k == 1
    assert np.allclose(M[k:k + 150], np.eye(150), atol=1e-12)
    # The context frames are the reflected neighbours (frame 2 before frame 1, ...).
    assert np.allclose(M[0], np.eye(150)[1], atol=1e-12)
    assert np.allclose(M[-1], np.eye(150)[148], atol=1e-12)


def test_clip_time_matrix_without_cells_or_context_is_interpolate():
    for method in ("tim", "linear"):
        M, k = clip_time_matrix(23, 150, method, context=0, cells=False)
        assert k == 0
        assert np.allclose(M, interpolation_matrix(23, 150, method))


def test_normalise_clip_keeps_uint8_and_follows_a_ramp():
    ramp = np.repeat(np.arange(0, 200, 10, dtype=np.uint8)[:, None], 3, axis=1)  # 20 frames
    y = normalise_clip(ramp, 150, "linear")
    assert y.dtype == np.uint8 and y.shape == (150, 3)
    # Linear, cell-centred: output j at time (j + 0.5) * 20/150 - 0.5; beyond the ends the
    # clip is mirrored about its first and last frames.
    t = cell_times(20, 150)
    t = np.where(t < 0, -t, np.where(t > 19, 38 - t, t))
    assert np.abs(y[:, 0].astype(float) - 10 * t).max() <= 0.5
    with pytest.raises(ValueError):
        clip_time_matrix(10, 150, "cubic")
    with pytest.raises(ValueError):
        clip_time_matrix(10, 150, "tim", context=-1)


def test_uint8_output_is_clipped_where_the_cosine_series_overshoots():
    """A 0 -> 255 step: the series rings above 255 and below 0 (worked out by hand: the float
    result passes 255.5 and -0.5), and the uint8 result holds exactly 255 and 0 there."""
    step = np.array([0] * 6 + [255] * 6, np.uint8)[:, None]
    yf = interpolate(step.astype(np.float64), 150)[:, 0]
    y = interpolate(step, 150)[:, 0]
    assert yf.max() > 255.5 and yf.min() < -0.5
    assert (y[yf > 255.5] == 255).all() and (y[yf < -0.5] == 0).all()
    assert y.dtype == np.uint8


def _reflected(t, F):
    """A time of the clip mirrored about its first and last frames (whole-sample reflection)."""
    return np.where(t < 0, -t, np.where(t > F - 1, 2 * (F - 1) - t, t))


@pytest.mark.parametrize("context, k", [(None, 2), (2.0, 15)])
def test_context_frames_continue_the_cell_grid_into_the_mirrored_clip(context, k):
    """Linear interpolation of a ramp returns the (mirrored) time itself, so each output row
    shows where it sits: k rows before and after the 150, one cell apart (20/150 frames).
    k by hand: context / step rounded, 0.25 / (2/15) = 1.875 -> 2 and 2 / (2/15) = 15."""
    F = 20
    M, got_k = clip_time_matrix(F, 150, "linear", context=context)
    assert got_k == k
    j = np.arange(-k, 150 + k)
    t = (j + 0.5) * F / 150 - 0.5
    assert np.allclose(M @ np.arange(F, dtype=float), _reflected(t, F), atol=1e-12)


def test_default_context_per_method():
    # Half a frame interval for TIM, a quarter for linear (docs/preprocessing.md), in cells of
    # 20/150 frames: 0.5 * 7.5 = 3.75 -> 4 cells, 0.25 * 7.5 = 1.875 -> 2 cells.
    assert clip_time_matrix(20, 150, "tim")[1] == 4
    assert clip_time_matrix(20, 150, "linear")[1] == 2


def test_context_of_very_short_outputs():
    # One output frame: the cell centre of 5 frames is frame 2, its cell one frame wide.
    M, k = clip_time_matrix(5, 1, "linear", context=0.5)
    assert k == 1 and np.allclose(M, np.eye(5)[[1, 2, 3]], atol=1e-12)
    # Two output frames of 4 input frames: cells 2 frames wide, half a frame rounds to none.
    M, k = clip_time_matrix(4, 2, "linear", context=0.5)
    assert k == 0 and M.shape == (2, 4)


def test_two_output_frames_are_the_first_and_last():
    assert sample_times(5, 2).tolist() == [0.0, 4.0]
