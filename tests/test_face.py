import math

import cv2
import numpy as np
import pytest

from preprocessing.face import (FaceBox, NoFaceError, clip_face_box, crop_clip, crop_frame,
                                find_face)
from synthetic import draw_face


FACE_SEEDS = range(6)


def _faces_with_eyes(seeds=FACE_SEEDS):
    """Drawn faces with their detections. No face is dropped for failing the cascades: every
    one of them must be found (test_face_box_and_eyes_found holds the detections to where the
    face and eyes were drawn)."""
    out = []
    for seed in seeds:
        face = draw_face(np.random.default_rng(seed))
        out.append((seed, face, find_face(face.image)))
    return out


@pytest.fixture(scope="module")
def faces():
    return _faces_with_eyes()


def _rotate(img, center, angle):
    M = cv2.getRotationMatrix2D(center, angle, 1.0)
    return cv2.warpAffine(img, M, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE), M


def _apply(M, pt):
    return M @ np.array([pt[0], pt[1], 1.0])


def test_face_box_and_eyes_found(faces):
    for seed, face, fb in faces:
        assert fb is not None and fb.eyes is not None, f"drawn face {seed}: not found"
        cx, cy = face.points["centre"]
        assert fb.source == "haar"
        assert fb.x < cx < fb.x + fb.w and fb.y < cy < fb.y + fb.h
        # The box is about the face's size (the drawn head is 2a wide).
        assert 1.0 * face.a < fb.w < 3.0 * face.a
        (lx, ly), (rx, ry) = fb.eyes
        for (ex, ey), name in (((lx, ly), "eye_R"), ((rx, ry), "eye_L")):  # image left = R
            tx, ty = face.points[name]
            assert math.hypot(ex - tx, ey - ty) < 0.5 * face.eye_w, (seed, name)
        assert abs(fb.angle) < 2.5


@pytest.mark.parametrize("tilt", [10.0, -7.0])
def test_roll_is_measured_and_corrected(faces, tilt):
    for seed, face, _ in faces[:3]:
        img, R = _rotate(face.image, face.points["centre"], tilt)
        fb = find_face(img)
        assert fb is not None and fb.eyes is not None, seed
        # Turning the picture counter-clockwise by `tilt` tilts the eye line by -tilt.
        # Haar boxes come in coarse steps, so the eye centres are good to a few pixels and
        # the angle to about 2 degrees (0.5 on average over these faces).
        assert fb.angle == pytest.approx(-tilt, abs=2.5), seed
        # After the crop's own rotation the true eye centres are level again.
        M = cv2.getRotationMatrix2D(fb.center, fb.angle, 1.0)
        l = _apply(M, _apply(R, face.points["eye_R"]))
        r = _apply(M, _apply(R, face.points["eye_L"]))
        assert abs(math.degrees(math.atan2(r[1] - l[1], r[0] - l[0]))) < 2.5, seed
        # And the aligned crop of the tilted face looks like the crop of the upright one.
        up = find_face(face.image)
        a = crop_frame(face.image, up).astype(float)
        b = crop_frame(img, fb).astype(float)
        c = crop_frame(img, FaceBox(fb.x, fb.y, fb.w, fb.h, 0.0, fb.center)).astype(float)
        corr = lambda u, v: np.corrcoef(u.ravel(), v.ravel())[0, 1]
        assert corr(a, b) > 0.85 and corr(a, b) > corr(a, c), seed


def test_crop_clip_shape_dtype_and_one_box(faces):
    _, face, fb = faces[0]
    frames = [face.image, face.image.copy(), face.image.copy()]
    out = crop_clip(frames, fb)
    assert out.shape == (3, 112, 112, 3) and out.dtype == np.uint8
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])
    assert crop_clip(np.stack(frames), fb, size=64).shape == (3, 64, 64, 3)


def test_crop_is_rgb_and_in_the_box():
    img = np.zeros((200, 300, 3), np.uint8)
    img[50:150, 100:200] = (255, 0, 0)              # BGR blue square
    img[50:150, 100:110] = (0, 0, 255)              # with a red left edge
    fb = FaceBox.from_user((100, 50, 100, 100))
    out = crop_frame(img, fb)
    assert out.shape == (112, 112, 3)
    assert (out[:, 20:, 2] == 255).all() and (out[:, 20:, 0] == 0).all()   # blue, as RGB
    assert (out[:, :8, 0] == 255).all()                                     # red on the left


def test_gray_frames_are_accepted():
    img = np.full((120, 160), 90, np.uint8)
    out = crop_clip([img, img], FaceBox.from_user((10, 10, 80, 80)))
    assert out.shape == (2, 112, 112, 3) and (out == 90).all()


def test_no_face_raises_or_uses_the_user_box():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 3)
    assert find_face(img) is None
    with pytest.raises(NoFaceError, match="no face found on the onset frame .*img46.jpg"):
        clip_face_box(img, where="sub01/EP02_01f/img46.jpg")
    fb = clip_face_box(img, user_box=(40, 30, 150, 150))
    assert fb.source == "user" and fb.box == (40, 30, 150, 150) and fb.angle == 0.0
    assert any("user" in n for n in fb.notes)
    assert crop_clip([img], fb).shape == (1, 112, 112, 3)


def test_eyes_hidden_falls_back_to_no_rotation(faces):
    seed, face, _ = faces[0]
    img = face.image.copy()
    for name in ("eye_L", "eye_R"):
        x, y = face.points[name]
        skin = img[int(y + 4 * face.eye_h), int(x)].tolist()
        cv2.ellipse(img, (int(x), int(y)), (int(1.6 * face.eye_w), int(2.2 * face.eye_h)), 0, 0,
                    360, skin, -1)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    fb = find_face(img)
    assert fb is not None, "the face without eyes should still be found"
    assert fb.eyes is None and fb.angle == 0.0
    assert any(n.startswith("not aligned") for n in fb.notes)


def test_bad_boxes_and_frames():
    img = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ValueError, match="outside"):
        crop_frame(img, FaceBox.from_user((150, 10, 20, 20)))
    with pytest.raises(ValueError, match="positive"):
        FaceBox.from_user((0, 0, 0, 10))
    with pytest.raises(ValueError):
        FaceBox.from_user("10,10")
    with pytest.raises(ValueError, match="one size"):
        crop_clip([img, np.zeros((90, 100, 3), np.uint8)], FaceBox.from_user((0, 0, 50, 50)))
    with pytest.raises(ValueError, match="uint8"):
        find_face(img.astype(np.float32))
    with pytest.raises(ValueError, match="no frames"):
        crop_clip([], FaceBox.from_user((0, 0, 50, 50)))


def test_margin_grows_the_box(faces):
    _, face, fb = faces[0]
    big = find_face(face.image, margin=0.1)
    assert big.w == fb.w + 2 * round(fb.w * 0.1)
    assert big.x == fb.x - round(fb.w * 0.1)


def test_dark_frame_is_found_on_the_equalised_copy(faces):
    _, face, _ = faces[0]
    dark = (face.image.astype(np.float32) * 0.1).astype(np.uint8)   # values 0..25
    fb = find_face(dark)
    assert fb is not None
    assert any("equalised" in n for n in fb.notes)
    cx, cy = face.points["centre"]
    assert fb.x < cx < fb.x + fb.w and fb.y < cy < fb.y + fb.h


# ------------------------------------------------------------------- landmark alignment

from preprocessing import face as face_mod  # noqa: E402
from preprocessing.face import LandmarksUnavailable, find_face_landmarks  # noqa: E402


@pytest.mark.parametrize("tilt", [-8.0, 4.0])
def test_landmarks_measure_the_roll_and_centre_the_box(tilt):
    """Known geometry: synthetic faces rotated by a known angle about their centre."""
    for seed in range(3):
        face = draw_face(np.random.default_rng(seed))
        img, R = _rotate(face.image, face.points["centre"], tilt)
        fb = clip_face_box(img)
        assert fb.source == "landmarks", fb.notes
        # A counter-clockwise turn by `tilt` puts the eye line at -tilt.
        assert abs(fb.angle + tilt) < 1.5, (seed, fb.angle)
        # The levelled crop's centre is the face's (between the eyes and the mouth).
        x, y, w, h = fb.box
        cx, cy = _apply(R, face.points["centre"])
        lvl = cv2.getRotationMatrix2D(fb.center, fb.angle, 1.0)
        cx, cy = lvl @ np.array([cx, cy, 1.0])
        assert abs(cx - (x + w / 2)) < 0.1 * w and abs(cy - (y + h / 2)) < 0.15 * h
        # About the size of the Haar box (1.2x the landmarks' extent, which spans the face).
        assert 1.6 * face.a < w < 3.2 * face.a
        (ex, ey), _ = fb.eyes
        tx, ty = _apply(R, face.points["eye_R"])      # the eye on the image's left
        assert math.hypot(ex - tx, ey - ty) < 0.5 * face.eye_w


def test_landmarks_keep_one_roll_for_shifted_copies_of_a_face():
    """Copies of one face, only shifted: the roll must not wander (Haar wandered by 5 deg)."""
    face = draw_face(np.random.default_rng(1))
    H, W = face.image.shape[:2]
    rolls = []
    for dx, dy in ((0, 0), (-40, 25), (30, -20), (15, 35), (-25, -30)):
        M = np.float32([[1, 0, dx], [0, 1, dy]])
        img = cv2.warpAffine(face.image, M, (W, H), borderMode=cv2.BORDER_REPLICATE)
        rolls.append(clip_face_box(img).angle)
    assert np.ptp(rolls) < 1.0, rolls


def test_landmarks_fall_back_to_haar_with_a_note(monkeypatch, tmp_path):
    face = draw_face(np.random.default_rng(0))
    monkeypatch.setenv("PSN_LANDMARK_MODEL", str(tmp_path / "missing.dat"))
    with pytest.raises(LandmarksUnavailable, match="missing.dat"):
        find_face_landmarks(face.image)
    fb = clip_face_box(face.image)
    assert fb.source == "haar"
    assert any("landmarks not used" in n and "missing.dat" in n for n in fb.notes)
    # A model file that is not one.
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"not a model")
    monkeypatch.setenv("PSN_LANDMARK_MODEL", str(bad))
    fb = clip_face_box(face.image)
    assert fb.source == "haar" and any("cannot load" in n for n in fb.notes)
    # The user's choice of method is kept.
    monkeypatch.delenv("PSN_LANDMARK_MODEL")
    assert clip_face_box(face.image, method="haar").source == "haar"
    with pytest.raises(ValueError, match="face method"):
        clip_face_box(face.image, method="mtcnn")


def test_landmarks_outside_the_frame_fall_back():
    """A face cut by the frame's edge: the fit leaves the frame, Haar is used (or no face)."""
    face = draw_face(np.random.default_rng(2))
    x0 = int(face.points["centre"][0])
    img = np.ascontiguousarray(face.image[:, x0 - 40:])       # left half of the face gone
    fb, why = find_face_landmarks(img)
    assert fb is None and "outside the frame" in why
    try:
        fb = clip_face_box(img)
    except NoFaceError:
        return
    assert fb.source == "haar" and any("landmarks not used" in n for n in fb.notes)


def test_implausible_fit_is_refused(monkeypatch):
    """A predictor that puts both eyes on one spot: refused with the reason, Haar used."""
    face = draw_face(np.random.default_rng(0))
    detector, predictor, rectangle = face_mod._landmark_model(face_mod.landmark_model_path())

    class Squashed:
        def __call__(self, gray, rect):
            shape = predictor(gray, rect)
            pts = [(p.x, p.y) for p in shape.parts()]
            pts[42:48] = pts[36:42]
            return type("S", (), {"parts": lambda self: [type("P", (), {"x": x, "y": y})()
                                                         for x, y in pts]})()

    monkeypatch.setattr(face_mod, "_landmark_model", lambda path: (detector, Squashed(), rectangle))
    fb, why = find_face_landmarks(face.image)
    assert fb is None and "implausible landmark fit" in why
    assert clip_face_box(face.image).source == "haar"
