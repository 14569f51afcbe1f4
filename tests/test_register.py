"""preprocessing.register: each frame registered on the onset frame before TIM and RPCA."""
import math

import cv2
import numpy as np
import pytest

from preprocessing.clips import Clip
from preprocessing.errors import InputError
from preprocessing.face import FaceBox, crop_frame
from preprocessing.clip_chain import GRAY_WEIGHTS, Options, clip_crops, compute_clip
from preprocessing.register import MAX_SHIFT, OnsetRegistration, ecc_warps, warp_size
from synthetic import draw_face

CROP = 112


@pytest.fixture(scope="module")
def face():
    return draw_face(np.random.default_rng(3))


def _box(face):
    cx, cy = face.points["centre"]
    side = int(2.4 * face.a)
    return FaceBox(int(cx - side / 2), int(cy - side / 2), side, side)


def _moved(image, center, dx, dy, roll):
    M = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), roll, 1.0)
    M[:, 2] += (dx, dy)
    return cv2.warpAffine(image, M, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)


def _gray(crop):
    return crop @ GRAY_WEIGHTS


def _inner_error(a, b, margin=12):
    d = np.abs(_gray(a.astype(np.float64)) - _gray(b.astype(np.float64)))
    return float(d[margin:-margin, margin:-margin].mean())


@pytest.mark.parametrize("dx,dy,roll", [(4.0, -2.5, 0.0), (-3.0, 1.5, 1.0), (0.6, 0.3, -0.4)])
def test_a_rigid_head_movement_is_undone(face, dx, dy, roll):
    """A frame moved by a shift and a roll of the whole picture comes back onto the onset
    frame's crop: the crops differ by several gray levels before and by a fraction of one after,
    and the warp is the movement seen in crop pixels."""
    fb = _box(face)
    onset = crop_frame(face.image, fb, CROP)
    moved = _moved(face.image, face.points["centre"], dx, dy, roll)
    plain = crop_frame(moved, fb, CROP)
    reg = OnsetRegistration(_gray(onset))
    W = reg.step(_gray(plain))
    again = crop_frame(moved, fb, CROP, warp=W)
    before, after = _inner_error(plain, onset), _inner_error(again, onset)
    assert after < 1.0 and after < before / 3, (before, after)
    scale = CROP / fb.w
    shift, turned = warp_size(W)
    # The roll about the face's centre also shifts the crop's origin: compare the shift the
    # warp gives the crop's centre with the one the movement gave it.
    centre = np.array([CROP / 2, CROP / 2, 1.0])
    moved_centre = (W @ centre)[:2] - centre[:2]
    expect = np.array([dx, dy]) * scale
    assert np.allclose(moved_centre, expect, atol=0.15 + abs(roll) * 0.3), (moved_centre, expect)
    assert abs(turned - abs(roll)) < 0.15
    assert reg.notes() == []


def test_flicker_does_not_pull_the_warp(face):
    """ECC is invariant to gain and offset: a brighter, stronger-contrast copy of the onset
    frame registers onto it with the identity."""
    fb = _box(face)
    onset = crop_frame(face.image, fb, CROP)
    bright = cv2.convertScaleAbs(face.image, alpha=1.05, beta=6)
    W = OnsetRegistration(_gray(onset)).step(_gray(crop_frame(bright, fb, CROP)))
    shift, roll = warp_size(W)
    assert shift < 0.05 and roll < 0.05


def test_a_local_movement_is_left_in_the_frames(face):
    """A rigid warp cannot follow an AU: a local deformation (a brow raised by 4 px) moves the
    warp by a small fraction of that, so the movement stays in the registered frames."""
    fb = _box(face)
    img = face.image.astype(np.float32)
    ex, ey = face.points["eye_L"]
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]].astype(np.float32)
    g = np.exp(-((xx - ex) ** 2 + (yy - ey + 1.5 * face.eye_h) ** 2) / (2 * (0.6 * face.eye_w) ** 2))
    raised = cv2.remap(img, xx, yy + 4.0 * g, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    raised = np.clip(raised + 0.5, 0, 255).astype(np.uint8)
    onset = crop_frame(face.image, fb, CROP)
    W = OnsetRegistration(_gray(onset)).step(_gray(crop_frame(raised, fb, CROP)))
    shift, roll = warp_size(W)
    assert shift < 0.25 * 4.0 * CROP / fb.w and roll < 0.3
    again = crop_frame(raised, fb, CROP, warp=W)
    assert _inner_error(again, onset) > 0.5 * _inner_error(crop_frame(raised, fb, CROP), onset)


def test_the_warped_crop_takes_the_frames_own_pixels_at_the_border(face):
    """The warp is folded into the cut from the full frame: after a shift the crop's edge holds
    what the onset crop holds there, not a replicated border."""
    fb = _box(face)
    onset = crop_frame(face.image, fb, CROP)
    moved = _moved(face.image, face.points["centre"], 6.0, 0.0, 0.0)
    W = OnsetRegistration(_gray(onset)).step(_gray(crop_frame(moved, fb, CROP)))
    again = crop_frame(moved, fb, CROP, warp=W).astype(np.float64)
    edge = np.abs(_gray(again[:, -3:]) - _gray(onset[:, -3:].astype(np.float64))).mean()
    # What warping the 112-pixel crop itself would give: its last columns replicated.
    inner = cv2.warpAffine(crop_frame(moved, fb, CROP), W, (CROP, CROP),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
    replicated = np.abs(_gray(inner[:, -3:]) - _gray(onset[:, -3:].astype(np.float64))).mean()
    assert edge < 1.5 and edge < replicated / 2, (edge, replicated)


def test_an_implausible_frame_keeps_the_previous_warp_and_says_so(face):
    """A frame that is not the face (a cut, an occlusion) gets no warp of its own: the previous
    frame's is kept, and the note names the frame."""
    fb = _box(face)
    onset = _gray(crop_frame(face.image, fb, CROP))
    moved = _gray(crop_frame(_moved(face.image, face.points["centre"], 2.0, 1.0, 0.0), fb, CROP))
    other = np.random.default_rng(0).uniform(0, 255, onset.shape)
    warps, notes = ecc_warps(np.stack([onset, moved, other, moved]))
    assert np.allclose(warps[0], np.eye(2, 3))
    assert np.allclose(warps[2], warps[1])
    assert len(notes) == 1 and "1 of 3 frames (2," in notes[0], notes
    # A warp past MAX_SHIFT of the crop is refused the same way.
    far = np.roll(onset, int(MAX_SHIFT * CROP) + 8, axis=1)
    _, notes = ecc_warps(np.stack([onset, far]))
    assert notes and "no plausible warp" in notes[0]


def test_a_flat_onset_crop_is_not_registered():
    flat = np.full((3, 40, 40), 120.0)
    warps, notes = ecc_warps(flat)
    assert np.allclose(warps, np.eye(2, 3)) and "flat" in notes[0]


def _drifting_clip(tmp_path, face, n=24, drift=(5.0, -3.0), roll=1.0):
    paths = []
    for i in range(n):
        a = i / (n - 1)
        frame = _moved(face.image, face.points["centre"], a * drift[0], a * drift[1], a * roll)
        path = str(tmp_path / f"img{i + 1:03d}.png")
        cv2.imwrite(path, frame)
        paths.append(path)
    return Clip("user", "user/s", "drift", 1, None, n, "", frozenset(), 3, "", "test",
                frames=tuple(paths))


def test_the_pipeline_registers_by_default_and_none_restores_the_box_alone(tmp_path, face):
    """A clip whose head drifts by 5.8 px and rolls 1 degree and nothing else: registered, its
    last crop is its first (so RPCA's E, which would hold the moving outline, is almost empty);
    with register='none' the drift stays."""
    clip = _drifting_clip(tmp_path, face)
    box = _box(face).box
    crops, _, notes = clip_crops(clip, Options(face_box=box, face="haar"))
    plain, _, _ = clip_crops(clip, Options(face_box=box, face="haar", register="none"))
    assert notes == []
    assert _inner_error(crops[-1], crops[0]) < 0.6
    assert _inner_error(plain[-1], plain[0]) > 4 * _inner_error(crops[-1], crops[0])
    _, e_reg, _ = compute_clip(clip, Options(face_box=box, face="haar", lam=0.05))
    _, e_plain, _ = compute_clip(clip, Options(face_box=box, face="haar", lam=0.05,
                                               register="none"))
    assert np.abs(e_reg).sum() < 0.25 * np.abs(e_plain).sum()


def test_the_register_option_is_checked_and_stamped():
    with pytest.raises(InputError, match="--register"):
        Options(register="sift")
    assert Options().register == "ecc" and Options().stamp()["register"] == "ecc"
    # Unregistered clips keep the stamp of the releases before registration, so their caches
    # stay valid.
    assert "register" not in Options(register="none").stamp()


def test_warp_size_reads_shift_and_roll():
    M = cv2.getRotationMatrix2D((0.0, 0.0), 3.0, 1.0)
    M[:, 2] = (3.0, 4.0)
    shift, roll = warp_size(M)
    assert math.isclose(shift, 5.0) and math.isclose(roll, 3.0, abs_tol=1e-9)
