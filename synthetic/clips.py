"""Clip plans (which AU, when, how strong) and their rendered frames."""
import os
import threading
from dataclasses import dataclass

import cv2
import numpy as np
from synthetic.constants import (AU_CHOICES, CLASS_SHARES, FPS, HEIGHT, MIN_PER_CLASS,
                                 NO_NUISANCES, WIDTH)
from synthetic.faces import au_handles, Face, wrinkle_map


# --------------------------------------------------------------------------- clips

@dataclass(frozen=True)
class ClipPlan:
    """One clip as the sheet lists it, and what is drawn."""
    subject: int        # 1-based; folder sub01
    filename: str       # EPxx_yy, unique per subject
    onset: int
    apex: int           # the frame drawn at full intensity
    offset: int
    apex_cell: object   # what the sheet says: the apex, or '/' (a quirk of the real sheet)
    aus: str            # AU code as written, e.g. '4+7', 'R12'
    emotion: str
    label: int          # the class the AU code is chosen for (0..3, docs/design.md §1)
    seed: tuple         # entropy of this clip's random stream

    @property
    def au_cell(self):
        """The sheet's cell: pure numbers are int cells, as Excel readers see the real sheet."""
        return int(self.aus) if self.aus.isdigit() else self.aus


def intensity_profile(n, apex_index, lead, tail):
    """Per-frame AU intensity over onset..offset: neutral for `lead` frames, a raised-cosine
    rise to 1 at apex_index, a fall back to 0, neutral for the last `tail` frames."""
    i = np.arange(n, dtype=np.float64)
    end = n - 1 - tail
    if not (lead < apex_index < end):
        raise ValueError(f"apex index {apex_index} must lie strictly between {lead} and {end}")
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip((i - lead) / (apex_index - lead), 0, 1))
    fall = 0.5 + 0.5 * np.cos(np.pi * np.clip((i - apex_index) / (end - apex_index), 0, 1))
    return np.where(i <= apex_index, rise, fall).astype(np.float32)


def _class_counts(total):
    """Clips per class: Table 4-like shares, at least MIN_PER_CLASS each where total allows."""
    floor = min(MIN_PER_CLASS, total // 4)
    raw = np.array(CLASS_SHARES) * total
    counts = np.floor(raw).astype(int)
    for k in np.argsort(-(raw - counts), kind="stable")[: total - counts.sum()]:
        counts[k] += 1
    while counts.min() < floor:
        counts[np.argmin(counts)] += 1
        counts[np.argmax(counts)] -= 1
    return counts


def plan_database(n_subjects=12, clips_per_subject=10, seed=0):
    """The sheet's rows (as ClipPlans, sorted like the real sheet), without drawing anything."""
    if n_subjects < 1 or clips_per_subject < 1:
        raise ValueError("need at least one subject and one clip per subject")
    if clips_per_subject > 99:
        raise ValueError("at most 99 clips per subject (EPxx_yy filenames)")
    rng = np.random.default_rng([seed, 0, n_subjects, clips_per_subject])
    total = n_subjects * clips_per_subject
    labels = np.repeat(np.arange(4), _class_counts(total))
    rng.shuffle(labels)
    plans = []
    for si in range(n_subjects):
        names = set()
        while len(names) < clips_per_subject:
            ep, k = int(rng.integers(1, 24)), int(rng.integers(1, 9))
            names.add(f"EP{ep:02d}_{k:02d}" + ("f" if rng.random() < 0.3 else ""))
            # 'EP02_01' and 'EP02_01f' would be the same clip twice.
            names = {n for n in names if not (n.endswith("f") and n[:-1] in names)}
        for j, name in enumerate(sorted(names)):
            label = int(labels[si * clips_per_subject + j])
            choices = AU_CHOICES[label]
            w = np.array([c[1] for c in choices], np.float64)
            code, _, emotion = choices[rng.choice(len(choices), p=w / w.sum())]
            n = int(rng.integers(30, 61))
            onset = int(rng.integers(1, 220))
            apex = onset + int(round(n * rng.uniform(0.32, 0.55)))
            plans.append(ClipPlan(si + 1, name, onset, apex, onset + n - 1, apex, code, emotion,
                                  label, (seed, 2, si + 1, j)))
    # The real sheet has a few rows without an apex ('/'); such a clip is drawn with its
    # apex at the midpoint, which is where a loader would have to guess it.
    q = int(rng.integers(len(plans)))
    p = plans[q]
    mid = (p.onset + p.offset) // 2
    plans[q] = ClipPlan(p.subject, p.filename, p.onset, mid, p.offset, "/", p.aus, p.emotion, p.label, p.seed)
    return plans


def transform_face(face, M):
    """The face after the affine M (2x3) applied to the whole picture."""
    img = cv2.warpAffine(face.image, M, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT101)
    pts = {k: tuple(M[:, :2] @ np.array(v) + M[:, 2]) for k, v in face.points.items()}
    sc = float(np.sqrt(abs(np.linalg.det(M[:, :2]))))
    return Face(img, pts, face.a * sc, face.b * sc, face.eye_w * sc, face.eye_h * sc,
                face.mouth_w * sc, face.lip_h * sc)


class NoiseBank:
    """Sensor noise: a few int16 noise fields, read per frame at random offsets (cheap)."""
    PAD = 48

    def __init__(self, seed, sigma=2.0, count=6):
        rng = np.random.default_rng([seed, 3])
        shape = (count, HEIGHT + self.PAD, WIDTH + self.PAD, 3)
        self.fields = np.round(rng.standard_normal(shape, np.float32) * sigma).astype(np.int16)

    def add(self, frame, rng):
        k, oy, ox = rng.integers(len(self.fields)), rng.integers(self.PAD), rng.integers(self.PAD)
        n = self.fields[k, oy:oy + HEIGHT, ox:ox + WIDTH]
        return np.clip(frame.astype(np.int16) + n, 0, 255).astype(np.uint8)


def clip_setup(face, plan, attempt=0):
    """Per-clip pose, AU handles and wrinkles (attempt: a later draw of the pose)."""
    rng = np.random.default_rng(list(plan.seed) + [attempt])
    c = face.points["centre"]
    M = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), rng.uniform(-2.5, 2.5), rng.uniform(0.97, 1.03))
    M[:, 2] += rng.uniform(-8, 8, 2)
    posed = transform_face(face, M)
    amplitude = rng.uniform(3.0, 5.0) * posed.a / 104.0
    handles = au_handles(posed.points, posed.a, plan.aus, amplitude)
    wrinkles = wrinkle_map(posed, plan.aus, rng.uniform(0.8, 1.2))
    return rng, posed, handles, wrinkles


def blink_profile(n, rng):
    """Per-frame eyelid closure (0 open, 1 shut) for a clip of n frames at 200 fps: one
    blink as people blink, closing in 35-50 ms, shut for 10-30 ms, reopening in 70-120 ms,
    starting anywhere after the third frame (the preprocessing finds the face on the first)."""
    close, shut, reopen = (int(round(v * FPS)) for v in
                           (rng.uniform(0.035, 0.05), rng.uniform(0.01, 0.03),
                            rng.uniform(0.07, 0.12)))
    start = int(rng.integers(3, max(4, n - close)))
    i = np.arange(n, dtype=np.float64) - start
    rise = np.clip(i / close, 0, 1)
    fall = np.clip(1 - (i - close - shut) / reopen, 0, 1)
    return np.where(i < close + shut, rise, fall) * (i >= 0)


def close_eyes(frame, face, closure):
    """The frame with both upper lids lowered by `closure` (0..1) of the eye's height: skin
    from just above the eye drawn down over it, and the lash line at the lid's edge."""
    if closure <= 0:
        return frame
    out = frame.astype(np.float32)
    ew, eh = face.eye_w, face.eye_h
    for side in ("L", "R"):
        ex, ey = face.points["eye_" + side]
        x0, x1 = int(ex - 1.3 * ew), int(ex + 1.3 * ew) + 1
        y0, y1 = int(ey - 2.2 * eh), int(ey + 1.2 * eh) + 1
        if x0 < 0 or y0 < 0 or x1 > WIDTH or y1 > HEIGHT:
            continue
        gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        inside = ((gx - ex) / (1.15 * ew)) ** 2 + ((gy - ey) / (1.1 * eh)) ** 2 < 1
        edge = ey - 1.1 * eh + closure * 2.0 * eh         # the lid's lower edge, moving down
        skin = np.median(out[y0:int(ey - 1.6 * eh), int(ex - 0.6 * ew):int(ex + 0.6 * ew)]
                         .reshape(-1, 3), axis=0)
        lid = (inside & (gy < edge)).astype(np.float32)
        lid = cv2.GaussianBlur(lid, (0, 0), 0.8)[..., None]
        lash = (inside & (np.abs(gy - edge) < max(1.0, 0.25 * eh))).astype(np.float32)[..., None]
        patch = out[y0:y1, x0:x1]
        patch[...] = patch * (1 - lid) + skin * lid
        patch[...] = patch * (1 - 0.7 * lash) + 25.0 * 0.7 * lash
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def render_frames(face, plan, noise, quality=90, attempts=10, nuisances=None):
    """Yield (frame number, BGR uint8 image) for onset..offset of one clip.

    A pose in which the cascades miss the face on the onset frame (where the preprocessing
    detects it) is drawn again, as for identities. `nuisances` (constants.NUISANCES' keys;
    None: none) adds a blink, slow head drift and brightness flicker, drawn from a random
    stream of their own, so a clip without them has the same bytes as before they existed."""
    for attempt in range(attempts):
        frames = _render(face, plan, noise, attempt, nuisances)
        number, first = next(frames)
        if detectable(jpeg_roundtrip(first, quality)):
            break
    else:
        raise RuntimeError(f"no pose of sub{plan.subject:02d}/{plan.filename} in which the face is detectable")
    yield number, first
    yield from frames


def draw_nuisances(plan, attempt, nuisances=None):
    """(blink closure per frame, drift (dx, dy) px over the clip, drift roll in degrees,
    flicker per frame) of one clip, from a random stream of their own (constants.NUISANCES'
    keys; None: none)."""
    n = plan.offset - plan.onset + 1
    nz = dict(NO_NUISANCES, **(nuisances or {}))
    nrng = np.random.default_rng(list(plan.seed) + [attempt, 7])
    blink = (blink_profile(n, nrng) if nrng.random() < nz["blink"] else np.zeros(n))
    # Drift: a straight slow movement over the clip, of a random size up to the maximum.
    angle = nrng.uniform(0, 2 * np.pi)
    drift = nrng.uniform(0, nz["drift_px"]) * np.array([np.cos(angle), np.sin(angle)])
    drift_roll = nrng.uniform(-nz["drift_deg"], nz["drift_deg"])
    flicker = nrng.uniform(-nz["flicker"], nz["flicker"], n)
    return blink, drift, drift_roll, flicker


def clip_nuisances(face, plan, noise, quality=90, nuisances=None, attempts=10):
    """What render_frames drew for one clip, without writing it: {'attempt', 'blink' (frames
    with the lids at least half shut), 'drift_px', 'drift_deg'} (the pose's attempt found as
    render_frames finds it, so the values are those of the written clip)."""
    for attempt in range(attempts):
        number, first = next(_render(face, plan, noise, attempt, nuisances))
        if detectable(jpeg_roundtrip(first, quality)):
            break
    else:
        raise RuntimeError(f"no pose of sub{plan.subject:02d}/{plan.filename} in which the face is detectable")
    blink, drift, roll, _ = draw_nuisances(plan, attempt, nuisances)
    return {"attempt": attempt, "blink": int((blink >= 0.5).sum()),
            "drift_px": float(np.hypot(*drift)), "drift_deg": float(roll)}


def _render(face, plan, noise, attempt, nuisances=None):
    rng, posed, handles, wrinkles = clip_setup(face, plan, attempt)
    n = plan.offset - plan.onset + 1
    lead, tail = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    prof = intensity_profile(n, plan.apex - plan.onset, lead, tail)
    blink, drift, drift_roll, flicker = draw_nuisances(plan, attempt, nuisances)

    # The region the AUs touch: handles to 3 sigma, plus where the wrinkles are.
    x0 = min(h[0] - 3 * h[2] for h in handles)
    x1 = max(h[0] + 3 * h[2] for h in handles)
    y0 = min(h[1] - 3 * h[2] for h in handles)
    y1 = max(h[1] + 3 * h[2] for h in handles)
    rows, cols = np.flatnonzero(wrinkles.max(1) > 0), np.flatnonzero(wrinkles.max(0) > 0)
    if rows.size:
        x0, x1 = min(x0, cols[0]), max(x1, cols[-1])
        y0, y1 = min(y0, rows[0]), max(y1, rows[-1])
    x0, y0 = max(0, int(x0) - 4), max(0, int(y0) - 4)
    x1, y1 = min(WIDTH, int(x1) + 5), min(HEIGHT, int(y1) + 5)
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx = np.zeros_like(gx)
    dy = np.zeros_like(gx)
    for hx, hy, sig, mx, my in handles:
        g = np.exp(-((gx - hx) ** 2 + (gy - hy) ** 2) / (2 * sig * sig))
        dx += mx * g
        dy += my * g
    gx -= x0
    gy -= y0
    patch = posed.image[y0:y1, x0:x1].astype(np.float32)
    wr = wrinkles[y0:y1, x0:x1, None]

    # Slight head sway (a fraction of a pixel, hundredths of a degree of roll) and a
    # flicker of the lights: low rank for RPCA, but not a frozen picture.
    c = posed.points["centre"]
    amp = rng.uniform(0.05, 0.2, 2)
    freq = rng.uniform(1.0, 3.0, 3)
    phase = rng.uniform(0, 2 * np.pi, 3)
    roll = rng.uniform(0.01, 0.04)
    for i in range(n):
        s = float(prof[i])
        frame = posed.image.copy()
        if s > 0:
            p = patch * (1.0 - s * wr)
            w = cv2.remap(p, gx - s * dx, gy - s * dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            frame[y0:y1, x0:x1] = np.clip(w + 0.5, 0, 255).astype(np.uint8)
        frame = close_eyes(frame, posed, blink[i])
        t = i / FPS
        tx, ty, th = (amp[0] * np.sin(2 * np.pi * freq[0] * t + phase[0]),
                      amp[1] * np.sin(2 * np.pi * freq[1] * t + phase[1]),
                      roll * np.sin(2 * np.pi * freq[2] * t + phase[2]))
        along = i / max(1, n - 1)
        M = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), th + along * drift_roll, 1.0)
        M[:, 2] += (tx + along * drift[0], ty + along * drift[1])
        frame = cv2.warpAffine(frame, M, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT101)
        gain = 1.0 + 0.004 * rng.standard_normal()
        frame = cv2.convertScaleAbs(frame, alpha=gain, beta=float(flicker[i]))
        yield plan.onset + i, noise.add(frame, rng)


_local = threading.local()


def _cascade(name):
    # A CascadeClassifier is not safe to share between threads: one per thread.
    c = getattr(_local, name, None)
    if c is None:
        c = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, name))
        if c.empty():
            raise RuntimeError(f"OpenCV's {name} is missing from {cv2.data.haarcascades}; "
                               "reinstall opencv-contrib-python-headless 4.x")
        setattr(_local, name, c)
    return c


def detectable(image):
    """True if OpenCV's cascades find this face as preprocessing.face does, with margin.

    Frontal-face cascade (scale 1.1, faces of at least a sixth of the frame): exactly one
    face even when grouping with 3 neighbours (no second face), still found with 6. Eye
    cascade in the box's eye band (12-62 % of its height), 3 neighbours plus one of margin:
    an eye in each half."""
    g = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    side = min(g.shape) // 6
    # One scan, then OpenCV's own grouping (eps 0.2) at each neighbour count.
    raw = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
        g, 1.1, 0, minSize=(side, side))
    raw = [list(map(int, r)) for r in raw]
    faces3, _ = cv2.groupRectangles(raw, 3, 0.2)
    faces6, _ = cv2.groupRectangles(raw, 6, 0.2)
    if len(faces3) != 1 or len(faces6) != 1:
        return False
    x, y, w, h = faces3[0]
    y0, y1 = y + int(0.12 * h), y + int(0.62 * h)
    eyes = _cascade("haarcascade_eye.xml").detectMultiScale(
        g[max(y0, 0):max(y1, 0), max(x, 0):max(x + w, 0)], 1.1, 4,
        minSize=(max(8, w // 10),) * 2, maxSize=(w // 2, w // 2))
    left = sum(ex + ew / 2 < w / 2 for ex, ey, ew, eh in eyes)
    return left >= 1 and len(eyes) - left >= 1


def encode_jpeg(image, quality):
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buf


def jpeg_roundtrip(image, quality):
    return cv2.imdecode(encode_jpeg(image, quality), cv2.IMREAD_COLOR)


# Poses an identity must stay detectable in: the extremes of clip_setup's pose draw.
