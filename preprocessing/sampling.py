"""The 16 frames the nets see: 1, 11, 21, ..., 141, 150 of the 150 (paper section 3.2).

The same indices are taken from the raw RGB frames and from RPCA's E, so the two streams
stay frame-aligned.
"""
import numpy as np

__all__ = ["CROP", "N_FRAMES", "N_SAMPLED", "SAMPLE_INDICES_1BASED", "SAMPLE_INDICES", "sample"]

N_FRAMES = 150
CROP = 112          # every frame is cut to CROP x CROP pixels (paper section 3.2)
SAMPLE_INDICES_1BASED = tuple(range(1, 142, 10)) + (150,)
SAMPLE_INDICES = np.array(SAMPLE_INDICES_1BASED, dtype=np.intp) - 1
N_SAMPLED = len(SAMPLE_INDICES)


def sample(frames):
    """frames (150, ...) -> (16, ...) at the paper's indices (a copy)."""
    x = np.asarray(frames)
    if x.ndim < 1 or x.shape[0] != N_FRAMES:
        raise ValueError(f"sampling needs the {N_FRAMES} time-normalised frames, "
                         f"got shape {x.shape}")
    return x[SAMPLE_INDICES].copy()
