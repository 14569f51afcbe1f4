"""Face detection, eye alignment and one crop box per clip.

The face is found once, on the clip's onset frame, by one of two methods:

- "landmarks" (the default): dlib's HOG face detector (OpenCV's Haar face box where it finds
  none) and dlib's 68-point shape predictor (the model file shipped in the PyPI package
  face-recognition-models). The roll angle is that of the line through the two eyes' centres
  (the means of points 37-42 and 43-48); the box is a square around all 68 points after
  levelling the eyes: LANDMARK_SCALE times the points' larger extent, its centre lifted by
  LANDMARK_LIFT of the side so that the forehead above the brows (where AU1 and AU2 wrinkle)
  is inside. These two constants make the box match the Haar box on average (measured on the
  scikit-image astronaut photograph and eight synthetic faces: Haar side 1.06-1.26 times the
  points' extent, its centre 0.13-0.17 of the side above theirs).
- "haar": OpenCV's Haar cascades (frontal face, then the eyes inside its upper part); the eye
  line gives the roll. Used as the fallback of "landmarks", with a note saying why, when dlib or
  the model file is missing or the fitted points fail a plausibility check (outside the frame,
  eyes too close or too far apart for the face, a roll beyond MAX_EYE_ANGLE).

Every frame of the clip is rotated by the one angle about the eyes' midpoint (so the eyes
become level) and cut to the one box, then resized to 112x112. One box and one angle for the
whole clip keep the frames registered to each other, which RPCA needs: a box that moved from
frame to frame would put motion into E that is not the face's. benchmarks/face_alignment.py
measures both methods on rotated and shifted faces (docs/preprocessing.md).

If the eyes are not found (or give an implausible pair) the clip is cropped without rotation
and the FaceBox says so in its notes. If no face is found, `clip_face_box` raises NoFaceError
unless the user gave a box (x, y, w, h) for the clip.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from preprocessing.sampling import CROP

__all__ = ["FaceBox", "NoFaceError", "LandmarksUnavailable", "FACE_METHODS", "find_face",
           "find_face_landmarks", "landmark_model_path", "clip_face_box", "crop_clip",
           "crop_frame"]

FACE_METHODS = ("landmarks", "haar")
LANDMARK_SCALE = 1.2
LANDMARK_LIFT = 0.14
N_LANDMARKS = 68
LEFT_EYE_POINTS = slice(36, 42)    # the eye on the image's left (the subject's right)
RIGHT_EYE_POINTS = slice(42, 48)

FACE_CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml")
EYE_CASCADES = ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml")
# A roll beyond this is more likely a wrong eye pair (brow, nostril) than a tilted head.
MAX_EYE_ANGLE = 30.0


class NoFaceError(RuntimeError):
    """No face on the onset frame and no user box: the clip is excluded with this message."""


class LandmarksUnavailable(RuntimeError):
    """dlib or its 68-point model cannot be loaded; the message says which and how to fix it."""


@dataclass(frozen=True)
class FaceBox:
    """Where to crop a clip.

    x, y, w, h: the box in the frame after rotating it by `angle` degrees (OpenCV's sense:
    positive turns the picture counter-clockwise) about `center`.
    eyes: ((x, y) of the eye on the image's left, (x, y) of the other) in the original frame,
    or None. source: 'landmarks', 'haar' or 'user' (what found the box). notes: what was not
    as expected.
    """
    x: int
    y: int
    w: int
    h: int
    angle: float = 0.0
    center: tuple = (0.0, 0.0)
    eyes: tuple | None = None
    source: str = "haar"
    notes: tuple = field(default=())

    @classmethod
    def from_user(cls, box, angle: float = 0.0, center=None, note: str = "box given by the user"):
        """A box the user gives as (x, y, w, h) in frame pixels (no rotation by default)."""
        try:
            x, y, w, h = (int(round(float(v))) for v in box)
        except (TypeError, ValueError):
            raise ValueError(f"a face box is (x, y, w, h) in pixels, got {box!r}") from None
        if w <= 0 or h <= 0:
            raise ValueError(f"face box {box!r} needs a positive width and height")
        if center is None:
            center = (x + w / 2.0, y + h / 2.0)
        return cls(x, y, w, h, float(angle), (float(center[0]), float(center[1])), None,
                   "user", (note,) if note else ())

    @property
    def box(self):
        return (self.x, self.y, self.w, self.h)


@functools.lru_cache(maxsize=None)
def _cascade(name: str) -> cv2.CascadeClassifier:
    path = os.path.join(cv2.data.haarcascades, name)
    c = cv2.CascadeClassifier(path)
    if c.empty():
        raise RuntimeError(f"cannot load OpenCV Haar cascade {path}; install "
                           "opencv-contrib-python-headless 4.x (5.x ships no cascades)")
    return c


def _as_gray(img: np.ndarray, what: str = "image") -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8, got {img.dtype}")
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    raise ValueError(f"{what} must be HxW gray or HxWx3 BGR, got shape {img.shape}")


def _detect_faces(gray: np.ndarray):
    """(boxes, how, image searched) from the first (image, cascade) pair that finds a face.

    ([], None, None) if none.

    The plain gray frame comes first; its histogram-equalised copy only second, for dark or
    washed-out frames (equalising a well-exposed frame can make the cascade miss the face
    or lock onto a part of it).
    """
    h, w = gray.shape
    min_side = max(24, min(h, w) // 6)
    for equalise in (False, True):
        img = cv2.equalizeHist(gray) if equalise else gray
        for name in FACE_CASCADES:
            found = _cascade(name).detectMultiScale(img, scaleFactor=1.1, minNeighbors=5,
                                                    minSize=(min_side, min_side))
            if len(found):
                how = name + (" on the equalised frame" if equalise else "")
                return [tuple(int(v) for v in f) for f in found], how, img
    return [], None, None


def _find_eyes(gray: np.ndarray, box):
    """Eye centres (left-in-image, right-in-image) inside the face box, or (None, reason)."""
    x, y, w, h = box
    # Eyes sit in the upper part of a Haar face box; searching only there keeps the
    # nostrils and the mouth corners out.
    y0, y1 = y + int(0.12 * h), y + int(0.62 * h)
    roi = gray[max(y0, 0):max(y1, 0), max(x, 0):max(x + w, 0)]
    if roi.size == 0:
        return None, "face box outside the frame"
    ox, oy = max(x, 0), max(y0, 0)
    min_eye = max(8, w // 10)
    for name in EYE_CASCADES:
        found = _cascade(name).detectMultiScale(roi, scaleFactor=1.1, minNeighbors=3,
                                                minSize=(min_eye, min_eye),
                                                maxSize=(w // 2, w // 2))
        cands = [(ox + ex + ew / 2.0, oy + ey + eh / 2.0, ew) for ex, ey, ew, eh in found]
        left = [c for c in cands if c[0] < x + w / 2.0]
        right = [c for c in cands if c[0] >= x + w / 2.0]
        if not left or not right:
            continue
        # Largest on each side: the cascades' false hits (brows, lash lines) are smaller.
        le = max(left, key=lambda c: c[2])
        re = max(right, key=lambda c: c[2])
        dx, dy = re[0] - le[0], re[1] - le[1]
        if not 0.2 * w <= dx <= 0.75 * w:
            continue
        if abs(math.degrees(math.atan2(dy, dx))) > MAX_EYE_ANGLE:
            continue
        return ((le[0], le[1]), (re[0], re[1])), None
    return None, "eyes not found (a pair, one each side of the face)"


def _iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0


def _rotation(center, angle):
    return cv2.getRotationMatrix2D((float(center[0]), float(center[1])), float(angle), 1.0)


def _expand(box, margin):
    x, y, w, h = box
    if margin:
        dx, dy = int(round(w * margin)), int(round(h * margin))
        x, y, w, h = x - dx, y - dy, w + 2 * dx, h + 2 * dy
    return (x, y, w, h)


def find_face(img_bgr: np.ndarray, *, margin: float = 0.0, align: bool = True) -> FaceBox | None:
    """Face box and eye alignment for one frame (the clip's onset); None if no face.

    The largest face is used. With eyes found, the roll angle is the eye line's angle and
    the frame is rotated by it about the eyes' midpoint; the face is then detected again on
    the levelled frame (a better box for an upright face), falling back to the first box.
    margin: grow the box by this share of its size on every side.
    """
    gray = _as_gray(img_bgr, "onset frame")
    faces, cascade, searched = _detect_faces(gray)
    if not faces:
        return None
    notes = []
    if cascade != FACE_CASCADES[0]:
        notes.append(f"face found by {cascade} only")
    if len(faces) > 1:
        notes.append(f"{len(faces)} faces found; the largest is used")
    box = max(faces, key=lambda f: f[2] * f[3])
    center = (box[0] + box[2] / 2.0, box[1] + box[3] / 2.0)
    angle = 0.0
    eyes = None
    if align:
        eyes, why = _find_eyes(searched, box)
        if eyes is None and searched is gray:
            eyes, why = _find_eyes(cv2.equalizeHist(gray), box)
        if eyes is None:
            notes.append(f"not aligned: {why}")
        else:
            (lx, ly), (rx, ry) = eyes
            angle = math.degrees(math.atan2(ry - ly, rx - lx))
            center = ((lx + rx) / 2.0, (ly + ry) / 2.0)
            if abs(angle) >= 0.5:
                h, w = gray.shape
                levelled = cv2.warpAffine(gray, _rotation(center, angle), (w, h),
                                          flags=cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_REPLICATE)
                again, _, _ = _detect_faces(levelled)
                if again:
                    best = max(again, key=lambda f: _iou(f, box))
                    if _iou(best, box) > 0.3:
                        box = best
                    else:
                        notes.append("box from the unlevelled frame (no matching face after rotation)")
                else:
                    notes.append("box from the unlevelled frame (no face after rotation)")
    x, y, w, h = _expand(box, margin)
    return FaceBox(x, y, w, h, float(angle), (float(center[0]), float(center[1])), eyes,
                   "haar", tuple(notes))


def landmark_model_path() -> str:
    """The 68-point model: $PSN_LANDMARK_MODEL, else face-recognition-models' copy."""
    path = os.environ.get("PSN_LANDMARK_MODEL")
    if path:
        return path
    try:
        import face_recognition_models
    except ImportError:
        raise LandmarksUnavailable("the 68-point landmark model is not installed (pip install "
                                   "face-recognition-models, or set PSN_LANDMARK_MODEL to "
                                   "shape_predictor_68_face_landmarks.dat)") from None
    return face_recognition_models.pose_predictor_model_location()


@functools.lru_cache(maxsize=4)
def _landmark_model(path: str):
    try:
        import dlib
    except ImportError:
        raise LandmarksUnavailable("dlib is not installed (pip install dlib-bin)") from None
    if not os.path.isfile(path):
        raise LandmarksUnavailable(f"landmark model {path} is missing (pip install "
                                   "face-recognition-models, or set PSN_LANDMARK_MODEL)")
    try:
        predictor = dlib.shape_predictor(path)
    except RuntimeError as exc:
        raise LandmarksUnavailable(f"cannot load the landmark model {path}: {exc}") from None
    return dlib.get_frontal_face_detector(), predictor, dlib.rectangle


def find_face_landmarks(img_bgr: np.ndarray, *, margin: float = 0.0):
    """(FaceBox with source 'landmarks', None) for one frame, or (None, why not).

    Raises LandmarksUnavailable when dlib or the model cannot be loaded.
    """
    detector, predictor, rectangle = _landmark_model(landmark_model_path())
    gray = _as_gray(img_bgr, "onset frame")
    H, W = gray.shape
    notes = []
    for upsample in (0, 1):       # one upsampling step for small faces
        rects, scores, _ = detector.run(gray, upsample, 0.0)
        if len(rects):
            break
    if len(rects):
        # The most face-like, not the largest: a false hit on a busy background can be
        # as large as the face (seen on the astronaut photograph rotated by 6 degrees).
        best = int(np.argmax(scores))
        r = rects[best]
        x, y, w, h = r.left(), r.top(), r.width(), r.height()
        if len(rects) > 1:
            notes.append(f"{len(rects)} faces found by dlib; the highest-scoring is used")
    else:
        found, how, _ = _detect_faces(gray)
        if not found:
            return None, "no face found by dlib's detector or the Haar cascades"
        notes.append(f"face found by {how} (dlib's detector found none)")
        if len(found) > 1:
            notes.append(f"{len(found)} faces found; the largest is used")
        x, y, w, h = max(found, key=lambda f: f[2] * f[3])
    shape = predictor(gray, rectangle(int(x), int(y), int(x + w), int(y + h)))
    pts = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
    if pts.shape != (N_LANDMARKS, 2):
        return None, f"the landmark model gave {len(pts)} points, not {N_LANDMARKS}"
    if pts.min() < 0 or (pts[:, 0] >= W).any() or (pts[:, 1] >= H).any():
        return None, "landmarks outside the frame (face cut off by the frame's edge)"
    le, re = pts[LEFT_EYE_POINTS].mean(axis=0), pts[RIGHT_EYE_POINTS].mean(axis=0)
    dx, dy = re - le
    if not 0.2 * w <= dx <= 0.75 * w:
        return None, (f"implausible landmark fit (eye distance {dx:.0f} px in a {w} px face box)")
    angle = math.degrees(math.atan2(dy, dx))
    if abs(angle) > MAX_EYE_ANGLE:
        return None, f"implausible landmark fit (eye line at {angle:.1f} degrees)"
    center = (le + re) / 2.0
    R = _rotation(center, angle)
    level = pts @ R[:, :2].T + R[:, 2]
    (x0, y0), (x1, y1) = level.min(axis=0), level.max(axis=0)
    side = LANDMARK_SCALE * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0 - LANDMARK_LIFT * side
    box = (int(round(cx - side / 2)), int(round(cy - side / 2)), int(round(side)), int(round(side)))
    bx, by, bw, bh = _expand(box, margin)
    eyes = ((float(le[0]), float(le[1])), (float(re[0]), float(re[1])))
    return FaceBox(bx, by, bw, bh, float(angle), (float(center[0]), float(center[1])), eyes,
                   "landmarks", tuple(notes)), None


def clip_face_box(onset_bgr: np.ndarray, user_box=None, *, method: str = "landmarks",
                  margin: float = 0.0, align: bool = True, where: str = "") -> FaceBox:
    """The clip's FaceBox: found on the onset frame by `method`, else the user's (x, y, w, h).

    method 'landmarks' falls back to 'haar' (with a note saying why) when dlib, its model or
    the fit fails. Raises NoFaceError (message names `where`, e.g. the onset frame's path)
    when there is no face and no user box.
    """
    if method not in FACE_METHODS:
        raise ValueError(f"face method must be one of {FACE_METHODS}, not {method!r}")
    notes = ()
    if method == "landmarks" and align:
        try:
            fb, why = find_face_landmarks(onset_bgr, margin=margin)
        except LandmarksUnavailable as exc:
            fb, why = None, str(exc)
        if fb is not None:
            return fb
        notes = (f"landmarks not used: {why}; Haar cascades instead",)
    fb = find_face(onset_bgr, margin=margin, align=align)
    if fb is not None:
        return replace(fb, notes=notes + fb.notes)
    if user_box is not None:
        return FaceBox.from_user(user_box, note="no face detected; box given by the user")
    place = f" ({where})" if where else ""
    raise NoFaceError(f"no face found on the onset frame{place} by dlib's detector or OpenCV's "
                      "Haar cascades; give a box (x, y, w, h) for this clip to include it")


def crop_frame(frame_bgr: np.ndarray, fb: FaceBox, size: int = CROP, warp=None) -> np.ndarray:
    """One frame rotated and cropped by `fb`, resized to size x size, as RGB uint8.

    warp: a 2x3 affine W in the output's pixels (preprocessing.register); the result is then
    the crop sampled at W p, cut from the full frame so that a shift brings in the frame's
    own pixels rather than a replicated border."""
    img = np.asarray(frame_bgr)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"a frame must be HxWx3 BGR or HxW gray uint8, got {img.dtype} {img.shape}")
    if fb.w <= 0 or fb.h <= 0:
        raise ValueError(f"face box {fb.box} has no area")
    H, W = img.shape[:2]
    if fb.x >= W or fb.y >= H or fb.x + fb.w <= 0 or fb.y + fb.h <= 0:
        raise ValueError(f"face box {fb.box} lies outside the {W}x{H} frame")
    M = _rotation(fb.center, fb.angle) if fb.angle else np.array([[1.0, 0, 0], [0, 1.0, 0]])
    M[0, 2] -= fb.x
    M[1, 2] -= fb.y
    if warp is not None:
        # W acts on output pixels; at the cut's own scale it is S^-1 W S (S: cut -> output),
        # and the cut is taken through its inverse.
        S = np.diag([size / fb.w, size / fb.h, 1.0])
        W = np.vstack([np.asarray(warp, np.float64), [0, 0, 1]])
        M = (np.linalg.inv(np.linalg.inv(S) @ W @ S) @ np.vstack([M, [0, 0, 1]]))[:2]
    # Rotate-and-cut at the frame's own scale, then shrink with INTER_AREA: warpAffine's
    # bilinear sampling would alias when the box is several times larger than 112.
    cut = cv2.warpAffine(img, M, (fb.w, fb.h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if fb.w >= size and fb.h >= size else cv2.INTER_CUBIC
    out = cv2.resize(cut, (size, size), interpolation=interp)
    if out.ndim == 2:
        return cv2.cvtColor(out, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def crop_clip(frames_bgr, fb: FaceBox, size: int = CROP) -> np.ndarray:
    """All frames of a clip cut by the same FaceBox: uint8 (F, size, size, 3) RGB.

    frames_bgr: a sequence of HxWx3 BGR (or HxW gray) uint8 frames of one size, or an
    array (F, H, W[, 3]).
    """
    seq = list(frames_bgr)
    if not seq:
        raise ValueError("crop_clip got no frames")
    shape0 = np.asarray(seq[0]).shape
    out = np.empty((len(seq), size, size, 3), np.uint8)
    for i, f in enumerate(seq):
        if np.asarray(f).shape != shape0:
            raise ValueError(f"frame {i} has shape {np.asarray(f).shape}, the clip's first "
                             f"frame {shape0}: all frames of a clip must have one size")
        out[i] = crop_frame(f, fb, size)
    return out
