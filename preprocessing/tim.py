"""Temporal normalisation of a clip to a fixed number of frames (docs/design.md §1, "length").

TIM, the temporal interpolation model (Zhou, Zhao & Pietikainen 2011; Pfister, Li, Zhao &
Pietikainen 2011), in closed form. The clip's F frames are the vertices of a path graph
(frame t linked to t+1). The eigenvectors of its Laplacian L = D - W are, for k = 0..F-1,

    y_k(t) = sin(pi k t / F + pi (F - k) / (2F)) = cos(pi k (t - 1/2) / F),   t = 1..F,

i.e. the DCT-II basis; k = 0 is the constant vector that the embedding drops and TIM keeps
as the mean frame. TIM embeds frame t as the point (y_1(t), ..., y_{F-1}(t)), lets t run
continuously along that curve, fits the linear map from the mean-centred frames to their
embedded points, samples the curve at n_out evenly spaced times from the first frame to the
last, and maps the samples back to images. When the centred frames are linearly independent
(the usual case: many more pixels than frames) the fitted map is exact, and the whole
procedure equals evaluating, for every pixel, the cosine series that passes through its F
values:

    x(t) = sum_k c_k cos(pi k (t - 1/2) / F),   c = DCT-II of the pixel's F values,

at t_j = 1 + (F - 1) j / (n_out - 1), j = 0..n_out-1. That is what `interpolate` computes
(as one (n_out x F) matrix applied to all pixels). It reproduces the frames exactly wherever
t_j is a frame time (both ends always; all frames when n_out == F), is smooth in between,
and stays defined for repeated frames, where the original code's PCA step would be singular.

The series is that of the clip's even (mirrored) extension, so it fits best where a pixel is
flat at the first and last frame, as at a clip's neutral onset and offset; a pixel still
changing fast at an end is matched less closely next to that end.

Edge cases: F == 1 repeats the frame; F == 2 gives a half cosine between the two frames.
With F > n_out the resampling is coarser than the frame rate; the series is then truncated
to its n_out lowest frequencies first (``antialias=True``), so faster changes are smoothed
away instead of aliasing into slow ones.

method="linear": plain linear interpolation between neighbouring frames at the same t_j.
Both methods are deterministic. uint8 frames come back as rounded, clipped uint8; float
frames come back in their own dtype (cosine interpolation can overshoot slightly at sharp
changes, as any band-limited interpolation does).
"""
from __future__ import annotations

import numpy as np

__all__ = ["interpolate", "interpolation_matrix", "sample_times", "cell_times", "END_CONTEXT",
           "clip_time_matrix", "normalise_clip", "apply_time_matrix"]

# Half-width of the extra context, in input frame intervals, that RPCA sees beyond each end
# of a clip's normalised frames (see clip_time_matrix). Chosen by measurement on clips of
# sensor noise over a still face, 12 to 200 frames (docs/preprocessing.md, "End frames").
END_CONTEXT = {"tim": 0.5, "linear": 0.25}


def sample_times(n_in: int, n_out: int) -> np.ndarray:
    """0-based fractional frame positions of the n_out output frames (first..last frame)."""
    if n_out == 1:
        return np.zeros(1)
    return np.linspace(0.0, n_in - 1.0, n_out)


def _dct_basis(times: np.ndarray, n: int, n_keep: int) -> np.ndarray:
    """Orthonormal DCT-II basis of length n evaluated at 0-based (fractional) times."""
    k = np.arange(n_keep)
    B = np.cos(np.pi * np.outer(times + 0.5, k) / n)
    B *= np.sqrt(2.0 / n)
    B[:, 0] = np.sqrt(1.0 / n)
    return B


def cell_times(n_in: int, n_out: int) -> np.ndarray:
    """0-based times of the centres of n_out equal cells spanning a clip of n_in frames.

    Frame i stands for the time interval [i - 1/2, i + 1/2], so the clip lasts from -1/2 to
    n_in - 1/2; output frame j sits at the centre of the j-th of n_out equal parts of that
    span. With n_in == n_out the times are the frames themselves. Unlike sample_times (first
    frame to last), every input frame is covered by the same share of the output frames,
    the two end frames included.
    """
    return (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5


def interpolation_matrix(n_in: int, n_out: int, method: str = "tim",
                         antialias: bool = True, times=None) -> np.ndarray:
    """The (n_out, n_in) matrix M with output frames = M @ input frames.

    times: 0-based output times (default sample_times(n_in, n_out), first to last frame);
    n_out must then equal len(times). The linear method holds the end frames beyond the clip;
    the cosine series continues as the clip's mirror image.
    """
    if n_in < 1:
        raise ValueError("a clip needs at least one frame")
    if n_out < 1:
        raise ValueError(f"n_out must be at least 1, got {n_out}")
    if method not in ("tim", "linear"):
        raise ValueError(f"method must be 'tim' or 'linear', not {method!r}")
    if times is None:
        t = sample_times(n_in, n_out)
    else:
        t = np.asarray(times, dtype=np.float64)
        if t.shape != (n_out,):
            raise ValueError(f"times must have n_out = {n_out} entries, got shape {t.shape}")
    if n_in == 1:
        return np.ones((n_out, 1))
    if method == "tim":
        n_keep = min(n_in, n_out) if antialias else n_in
        B_in = _dct_basis(np.arange(n_in, dtype=np.float64), n_in, n_keep)
        B_out = _dct_basis(t, n_in, n_keep)
        M = B_out @ B_in.T
        # Output times that fall on a frame are that frame: make it exact, not 1 +- 1e-15
        # (only without truncation, where the series passes through the frames).
        if n_keep == n_in:
            on = np.flatnonzero(np.abs(t - np.round(t)) < 1e-9)
            M[on] = 0.0
            M[on, np.round(t[on]).astype(int)] = 1.0
        return M
    t = np.clip(t, 0.0, n_in - 1.0)
    i0 = np.minimum(np.floor(t).astype(int), n_in - 2)
    f = t - i0
    M = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    M[rows, i0] = 1.0 - f
    M[rows, i0 + 1] += f
    return M


def clip_time_matrix(n_in: int, n_out: int = 150, method: str = "tim",
                     context: float | None = None, cells: bool = True):
    """(M, k): the pipeline's time normalisation of an n_in-frame clip, with RPCA's context.

    M is (n_out + 2k, n_in); M @ frames gives k context frames, the n_out normalised frames,
    and k context frames. The n_out frames sit at cell_times(n_in, n_out); the context frames
    continue that grid by `context` input frame intervals beyond each end (default
    END_CONTEXT[method]), over the clip extended by its second and second-to-last frames
    mirrored outside it (whole-sample reflection: no frame's noise is repeated next to itself).
    cells=False, context=0 give the first-to-last-frame grid of `interpolate` (the pipeline
    before version 2), for comparison.

    Why: interpolating F < n_out frames repeats each frame's sensor noise across several
    output frames, so RPCA's low-rank part absorbs most of it; next to the ends of the time
    axis the interpolated signals have more freedom (a cosine basis' leverage doubles at its
    ends), and RPCA leaves the end frames' noise in E: 5 to 50 times the interior's on a still
    noisy face. Cell-centred times and a little context beyond the ends give the first and
    last frames neighbours on both sides, as every other frame has.
    """
    if n_in < 1:
        raise ValueError("a clip needs at least one frame")
    if method not in ("tim", "linear"):
        raise ValueError(f"method must be 'tim' or 'linear', not {method!r}")
    context = END_CONTEXT[method] if context is None else float(context)
    if not context >= 0:
        raise ValueError(f"context must be >= 0 frame intervals, got {context}")
    core = cell_times(n_in, n_out) if cells else sample_times(n_in, n_out)
    # Mirrored frames enough for the outermost time: context beyond a cell centre that may
    # itself lie half a frame outside the clip.
    p = min(n_in - 1, int(np.ceil(context + 0.5))) if context > 0 else 0
    step = core[1] - core[0] if n_out > 1 else 1.0
    k = int(np.floor(context / step + 0.5)) if p else 0
    extra = step * np.arange(1, k + 1)
    t = p + np.concatenate([core[0] - extra[::-1], core, core[-1] + extra])
    # Frame indices of the reflected clip: p, ..., 1, 0, 1, ..., F-1, F-2, ..., F-1-p.
    idx = np.concatenate([np.arange(p, 0, -1), np.arange(n_in),
                          np.arange(n_in - 2, n_in - 2 - p, -1)])
    M_ext = interpolation_matrix(n_in + 2 * p, len(t), method, times=t)
    M = np.zeros((len(t), n_in))
    np.add.at(M.T, idx, M_ext.T)
    return M, k


def normalise_clip(frames, n_out: int = 150, method: str = "tim") -> np.ndarray:
    """The clip's n_out normalised frames (the middle rows of clip_time_matrix)."""
    x = _check(np.asarray(frames))
    M, k = clip_time_matrix(x.shape[0], n_out, method)
    return apply_time_matrix(M[k:k + n_out], x)


def interpolate(frames, n_out: int = 150, method: str = "tim", *,
                antialias: bool = True) -> np.ndarray:
    """Resample a clip (F, H, W[, C]) in time to (n_out, H, W[, C]); see the module doc."""
    x = np.asarray(frames)
    M = interpolation_matrix(_check(x).shape[0], n_out, method, antialias)
    return apply_time_matrix(M, x)


def _check(x):
    if x.ndim < 2:
        raise ValueError(f"frames must be (F, H, W[, C]), got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or x.dtype == np.uint8):
        raise ValueError(f"frames must be uint8 or float, got {x.dtype}")
    return x


def apply_time_matrix(M, x):
    """M @ frames over all pixels; uint8 in, rounded and clipped uint8 out."""
    x = _check(x)
    n_in, n_out = x.shape[0], M.shape[0]
    flat = x.reshape(n_in, -1)
    if x.dtype == np.uint8:
        y = M @ flat.astype(np.float64)
        np.rint(y, out=y)
        np.clip(y, 0, 255, out=y)
        y = y.astype(np.uint8)
    else:
        y = (M @ flat.astype(np.float64)).astype(x.dtype, copy=False)
    return y.reshape((n_out,) + x.shape[1:])
