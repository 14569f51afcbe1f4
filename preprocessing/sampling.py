"""The 16 frames the nets see: 1, 11, 21, ..., 141, 150 of the 150 (paper section 3.2).

The same indices are taken from the raw RGB frames and from RPCA's E, so the two streams
stay frame-aligned.
"""
import numpy as np

from preprocessing.tim import cell_times

__all__ = ["CROP", "N_FRAMES", "N_SAMPLED", "SAMPLE_INDICES_1BASED", "SAMPLE_INDICES", "sample",
           "apex_sample"]

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


def apex_sample(n_frames, onset, apex, offset):
    """Index (0..15) of the sampled frame nearest a clip's apex, for the single-frame net of
    Fig. 10 (the shards keep 16 of the 150 frames, so the apex frame itself is one of them
    only by chance; the nearest is at most 5 normalised frames, 1/30 of the clip, away).

    The apex's place in the clip is its share of onset..offset (frame numbers need not
    count the clip's images one by one); the 150 frames sit at the centres of 150 equal
    parts of the clip (preprocessing.tim.cell_times). None for the apex (SMIC has none, and
    a sheet may leave it blank) gives the middle of the clip."""
    n_frames = int(n_frames)
    if n_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {n_frames}")
    if apex is None or offset <= onset:
        where = (n_frames - 1) / 2.0
    else:
        share = min(max((apex - onset) / float(offset - onset), 0.0), 1.0)
        where = share * (n_frames - 1)
    times = cell_times(n_frames, N_FRAMES)[SAMPLE_INDICES]
    return int(np.argmin(np.abs(times - where)))
