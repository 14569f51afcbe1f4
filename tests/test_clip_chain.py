"""preprocessing.clip_chain: one clip's frames to its 16 crops and E (read_frame,
compute_clip, sparse_part's end frames, too_few_frames)."""
import cv2
import numpy as np
import pytest

from pipeline_helpers import CORRUPT, OPTIONS, copy_run
from preprocessing.clip_chain import Options
from preprocessing.loaders import load_databases


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_a_truncated_frame_is_named_not_decoded_half_gray(tmp_path, ext):
    from preprocessing.clip_chain import ClipExcluded, read_frame
    img = (np.arange(64 * 48 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    path = str(tmp_path / ("f" + ext))
    assert cv2.imwrite(path, img)
    assert read_frame(path).shape == (48, 64, 3)
    data = open(path, "rb").read()
    with open(path, "wb") as f:                 # padding after the end marker is fine
        f.write(data + b"\0" * 300)
    assert read_frame(path).shape == (48, 64, 3)
    with open(path, "wb") as f:
        f.write(data[:len(data) * 2 // 3])
    # OpenCV alone would return an image here (gray where the data ends).
    with pytest.raises(ClipExcluded, match="truncated frame .*f" + ext.replace(".", r"\.")):
        read_frame(path)


def test_a_clip_without_any_motion_is_flagged(tmp_path):
    from preprocessing.clips import Clip
    from preprocessing.clip_chain import compute_clip
    paths = []
    for n in range(1, 11):
        path = str(tmp_path / f"img{n}.png")
        cv2.imwrite(path, np.full((60, 80, 3), 120, np.uint8))
        paths.append(path)
    clip = Clip("user", "user/s", "blank", 1, None, 10, "", frozenset(), 3, "", "test",
                frames=tuple(paths))
    raw, sparse, info = compute_clip(clip, Options(face_box=(0, 0, 40, 40)))
    assert not sparse.any()
    assert any(n.startswith("E is zero in every sampled frame") for n in info["notes"])
    # The temporal stream's input (frames minus their mean, over their rms) is zero too: the
    # manifest says so (the net sees zeros, not 0 / 0: tests/test_nets.py).
    assert (raw == raw[0]).all()
    assert any(n.startswith("the 16 sampled frames are identical") for n in info["notes"])
    cv2.imwrite(paths[4], np.full((60, 80, 3), 121, np.uint8))
    _, _, info = compute_clip(clip, Options(face_box=(0, 0, 40, 40)))
    assert not any(n.startswith("the 16 sampled frames are identical") for n in info["notes"])


@pytest.mark.parametrize("method", ["tim", "linear"])
@pytest.mark.parametrize("n_frames", [30, 60, 100])
def test_end_frames_of_E_carry_no_more_noise_than_the_rest(method, n_frames):
    """A still face with sensor noise: E's first and last sampled frames within 1.5x of the
    interior median (both ways); the first-to-last grid without context fails this."""
    from synthetic.noise_check import e_profile, end_ratio, noisy_still_clip
    gray = noisy_still_clip(n_frames, sigma=2.0)
    for r in end_ratio(e_profile(gray, method)):
        assert 1 / 1.5 <= r <= 1.5, (method, n_frames, r)
    old = end_ratio(e_profile(gray, method, cells=False, context=0))
    assert min(old) > 1.3, old


def test_a_clip_of_fewer_than_four_frames_is_excluded_even_when_cached(first, roots, tmp_path):
    """A clip of 1-3 frames went into training with only a manifest note (tools/predict.py
    refused it)."""
    import dataclasses
    from preprocessing import pipeline
    from preprocessing.clip_cache import process_clip
    from preprocessing.workers import Runner
    clips, _ = load_databases(roots[0])
    clip = next(c for c in clips if c.database == "casme2" and (c.subject, c.clip) != CORRUPT[:2])
    short = dataclasses.replace(clip, frames=clip.frames[:3])
    out = copy_run(first, tmp_path)          # its cache holds this clip, included, under its name
    res = process_clip(short, str(tmp_path / "short.npz"), OPTIONS)
    assert not res["included"] and res["reason"].startswith("3 frame(s) from onset to offset")
    runner = Runner(1)
    _, results, _ = pipeline._clips_stage([short], [], out, OPTIONS, runner, 1, False, lambda *a: None)
    assert not results[0]["included"] and "a clip needs at least 4" in results[0]["reason"]
    four = dataclasses.replace(clip, frames=clip.frames[:4])
    assert process_clip(four, str(tmp_path / "four.npz"), OPTIONS)["included"]
