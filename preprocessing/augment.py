"""Training-only augmentation: horizontal flip and small rotations (docs/design.md §1).

A variant is one geometric transform applied identically to all 16 frames of a clip and to
both streams (raw RGB and RPCA's E), so the streams stay registered and the temporal order is
untouched. Variant names: "flip", "rot+5" / "rot-10" (degrees, OpenCV's sense: positive turns
the picture counter-clockwise about the image centre), and "flip_rot+5" (flip, then rotate).

Borders uncovered by a rotation: the raw frames repeat their edge pixels (a black wedge would
be a strong, fake edge); E is 0 there (no motion outside the frame). Both use bilinear
sampling, so a rotated E is slightly smoother than the original.
"""
from __future__ import annotations

import re

import cv2
import numpy as np

__all__ = ["DEFAULT_VARIANTS", "parse_variant", "apply_variant", "augment"]

DEFAULT_VARIANTS = ("flip", "rot-10", "rot-5", "rot+5", "rot+10")

_NAME = re.compile(r"^(?:(flip)(?:_rot([+-]\d+(?:\.\d+)?))?|rot([+-]\d+(?:\.\d+)?))$")


def parse_variant(name: str):
    """'flip' -> (True, 0.0); 'rot-5' -> (False, -5.0); 'flip_rot+10' -> (True, 10.0)."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"unknown augmentation {name!r}: use 'flip', 'rot+N', 'rot-N' "
                         "or 'flip_rot+N' (N in degrees)")
    flip = m.group(1) is not None
    angle = float(m.group(2) or m.group(3) or 0.0)
    return flip, angle


def _check(raw, sparse):
    raw = np.asarray(raw)
    sparse = np.asarray(sparse)
    if raw.dtype != np.uint8 or raw.ndim != 4 or raw.shape[3] != 3:
        raise ValueError(f"raw must be uint8 (F, H, W, 3), got {raw.dtype} {raw.shape}")
    if sparse.ndim != 3 or sparse.shape != raw.shape[:3]:
        raise ValueError(f"sparse must be (F, H, W) = {raw.shape[:3]}, got {sparse.shape}")
    return raw, sparse.astype(np.float32, copy=False)


def apply_variant(raw, sparse, name: str):
    """One named variant of a clip: (raw uint8 (F,H,W,3), sparse float32 (F,H,W))."""
    raw, sparse = _check(raw, sparse)
    flip, angle = parse_variant(name)
    if flip:
        raw = raw[:, :, ::-1, :]
        sparse = sparse[:, :, ::-1]
    if angle:
        h, w = raw.shape[1:3]
        M = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
        raw_out = np.empty_like(raw)
        sp_out = np.empty_like(sparse)
        for i in range(raw.shape[0]):
            raw_out[i] = cv2.warpAffine(np.ascontiguousarray(raw[i]), M, (w, h),
                                        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            sp_out[i] = cv2.warpAffine(np.ascontiguousarray(sparse[i]), M, (w, h),
                                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                       borderValue=0.0)
        return raw_out, sp_out
    return np.ascontiguousarray(raw), np.ascontiguousarray(sparse)


def augment(raw, sparse, variants=DEFAULT_VARIANTS):
    """Yield (name, raw_variant, sparse_variant) for each named variant (not the original)."""
    raw, sparse = _check(raw, sparse)
    for name in variants:
        parse_variant(name)  # fail on a bad name before any work
    for name in variants:
        r, s = apply_variant(raw, sparse, name)
        yield name, r, s
