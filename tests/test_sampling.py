"""preprocessing.sampling: the paper's 16 sampled frames of 150, and the apex's sample."""
import numpy as np
import pytest

from preprocessing.sampling import CROP, N_FRAMES, SAMPLE_INDICES, SAMPLE_INDICES_1BASED, sample


def test_indices_are_the_papers():
    assert SAMPLE_INDICES_1BASED == (1, 11, 21, 31, 41, 51, 61, 71, 81, 91, 101, 111, 121,
                                     131, 141, 150)
    assert SAMPLE_INDICES.tolist() == [i - 1 for i in SAMPLE_INDICES_1BASED]


def test_sample_takes_those_frames():
    frames = np.arange(150)[:, None, None] * np.ones((1, 2, 2), int)
    s = sample(frames)
    assert s.shape == (16, 2, 2)
    assert s[:, 0, 0].tolist() == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130,
                                   140, 149]
    s[0] = -1
    assert frames[0, 0, 0] == 0                       # a copy, not a view
    with pytest.raises(ValueError, match="150"):
        sample(np.zeros((149, 2, 2)))
    with pytest.raises(ValueError, match="150"):
        sample(np.float32(1.0))                      # no time axis at all
    assert sample(np.arange(150.0)).tolist() == [i - 1.0 for i in SAMPLE_INDICES_1BASED]


def test_the_papers_frame_count_and_crop():
    # Section 3.2: 150 time-normalised frames, cut to 112 x 112.
    assert (N_FRAMES, CROP) == (150, 112)


def test_apex_sample_is_the_sampled_frame_nearest_the_apex():
    from preprocessing.sampling import apex_sample
    from preprocessing.tim import cell_times
    # 150 frames: the sampled frames are frames 1, 11, ..., 141, 150 themselves.
    assert apex_sample(150, 1, 1, 150) == 0
    assert apex_sample(150, 1, 150, 150) == 15
    assert apex_sample(150, 1, 72, 150) == 7          # frame 72 is 1 from 71, 9 from 81
    assert apex_sample(150, 1, 77, 150) == 8          # 4 from 81
    assert apex_sample(150, 1, 146, 150) == 15        # 4 from 150, 5 from 141
    # 60 frames numbered 100..159: by hand from the cell centres of 150 parts.
    times = cell_times(60, 150)[np.array([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110,
                                          120, 130, 140, 149])]
    for apex in (100, 117, 130, 145, 159):
        where = (apex - 100) / 59.0 * 59
        assert apex_sample(60, 100, apex, 159) == int(np.argmin(np.abs(times - where)))
    # Frame numbers that skip (the share of onset..offset counts, not the numbers).
    assert apex_sample(31, 0, 30, 60) == apex_sample(31, 0, 15, 30) == 7
    # No apex, or onset = offset: the middle of the clip; an apex outside is clamped.
    assert apex_sample(60, 100, None, 159) == apex_sample(60, 100, 129.5, 159)
    assert apex_sample(10, 5, 7, 5) == apex_sample(10, 5, None, 5)
    assert apex_sample(60, 100, 400, 159) == 15 and apex_sample(60, 100, 3, 159) == 0
    with pytest.raises(ValueError):
        apex_sample(0, 1, 1, 2)
