"""How much sensor noise reaches E, frame by frame, on a still face (the end-frame check).

A clip of F frames of one still synthetic face (synthetic.draw_face, cut to
112x112 gray) with independent Gaussian sensor noise in every frame holds no motion at all,
so whatever RPCA puts into E is noise. `e_profile` runs the pipeline's time normalisation and
RPCA on such a clip and returns the mean |E| of the 16 sampled frames; the first and last
should look like the rest (tests/test_clip_chain.py, benchmarks/end_frames.py).
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from preprocessing.hdf5_shards import CROP
from preprocessing.clip_chain import Options, sparse_part
from preprocessing.sampling import N_FRAMES, sample
from synthetic.faces import draw_face
from preprocessing.tim import clip_time_matrix

__all__ = ["still_face", "noisy_still_clip", "e_profile", "end_ratio"]


@functools.lru_cache(maxsize=4)
def still_face(seed: int = 0) -> np.ndarray:
    """One synthetic face's central region as 112x112 gray in [0, 1] (float64, read-only)."""
    img = draw_face(np.random.default_rng(seed)).image
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[100:400, 170:470]
    out = cv2.resize(gray, (CROP, CROP), interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0
    out.flags.writeable = False
    return out


def noisy_still_clip(n_frames: int, sigma: float = 2.0, seed: int = 0) -> np.ndarray:
    """(n_frames, 112, 112) gray in [0, 1]: the still face plus N(0, sigma gray levels) per pixel."""
    rng = np.random.default_rng([seed, n_frames])
    return still_face(seed) + rng.normal(0.0, sigma / 255.0, (n_frames, CROP, CROP))


def e_profile(gray, method: str = "tim", *, cells: bool = True, context=None,
              lam=None) -> np.ndarray:
    """Mean |E| of the 16 sampled frames (E in [0, 1] gray units) of the clip `gray`."""
    M, k = clip_time_matrix(len(gray), N_FRAMES, method, context=context, cells=cells)
    E, _, _ = sparse_part(np.asarray(gray), Options(interp=method, lam=lam, sparsity=None), M, k)
    return np.abs(sample(E.T)).mean(axis=1)


def end_ratio(profile) -> tuple:
    """(first, last) sampled frame's mean |E| over the interior frames' median."""
    p = np.asarray(profile)
    mid = float(np.median(p[1:-1]))
    return float(p[0] / mid), float(p[-1] / mid)
