"""Drawn faces: one identity per subject, and the local movement of each action unit."""
import re
from dataclasses import dataclass

import cv2
import numpy as np
from synthetic.constants import HEIGHT, WIDTH


# --------------------------------------------------------------------------- drawing helpers

def _ellipse_pts(cx, cy, ax, ay, angle=0.0, n=96, t0=0.0, t1=2 * np.pi):
    t = np.linspace(t0, t1, n)
    c, s = np.cos(angle), np.sin(angle)
    x, y = ax * np.cos(t), ay * np.sin(t)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _poly_mask(pts, blur=0.0, shape=(HEIGHT, WIDTH)):
    """Anti-aliased filled polygon as a float mask in [0, 1] (sub-pixel vertices)."""
    m = np.zeros(shape, np.uint8)
    p = np.round(np.asarray(pts, np.float64) * 16).astype(np.int32)
    cv2.fillPoly(m, [p], 255, cv2.LINE_AA, shift=4)
    m = m.astype(np.float32) * (1.0 / 255)
    return cv2.GaussianBlur(m, (0, 0), blur) if blur > 0 else m


def _line_mask(pts, thickness, blur=0.0, shape=(HEIGHT, WIDTH)):
    m = np.zeros(shape, np.uint8)
    p = np.round(np.asarray(pts, np.float64) * 16).astype(np.int32)
    cv2.polylines(m, [p], False, 255, max(1, int(round(thickness))), cv2.LINE_AA, shift=4)
    m = m.astype(np.float32) * (1.0 / 255)
    return cv2.GaussianBlur(m, (0, 0), blur) if blur > 0 else m


def _gauss(cx, cy, sx, sy, shape=(HEIGHT, WIDTH)):
    y = np.arange(shape[0], dtype=np.float32)[:, None]
    x = np.arange(shape[1], dtype=np.float32)[None, :]
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2)).astype(np.float32)


def _paint(img, mask, color):
    """Alpha-composite a colour (BGR in [0,1], or an image) over img where mask is 1."""
    rows = np.flatnonzero(mask.max(axis=1) > 0)
    cols = np.flatnonzero(mask.max(axis=0) > 0)
    if rows.size == 0:
        return
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    m = mask[sl][..., None]
    color = np.asarray(color, np.float32)
    if color.ndim == 3:
        color = color[sl]
    img[sl] += m * (color - img[sl])


def _smooth_noise(rng, sigma, shape=(HEIGHT, WIDTH)):
    n = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return n / (n.std() + 1e-6)


def _rgb(r, g, b):
    return np.array([b, g, r], np.float32) / 255.0


# --------------------------------------------------------------------------- identities

SKIN_TONES = (_rgb(241, 204, 178), _rgb(232, 188, 155), _rgb(214, 163, 124),
              _rgb(190, 139, 100), _rgb(160, 110, 78), _rgb(128, 86, 60), _rgb(247, 218, 196))
HAIR_COLOURS = (_rgb(20, 16, 14), _rgb(45, 32, 24), _rgb(80, 56, 38), _rgb(120, 86, 52),
                _rgb(160, 130, 90), _rgb(110, 106, 104), _rgb(30, 26, 30))
IRIS_COLOURS = (_rgb(60, 40, 25), _rgb(90, 62, 35), _rgb(70, 95, 120), _rgb(80, 100, 70),
                _rgb(40, 30, 25))


@dataclass
class Face:
    """A drawn neutral face: the image and where its parts are (pixels, image coordinates).

    Sides follow FACS: 'L' is the subject's left, which is the image's right (x > cx)."""
    image: np.ndarray     # HxWx3 uint8 BGR
    points: dict          # name -> (x, y)
    a: float              # face half-width at the cheekbones
    b: float              # face half-height
    eye_w: float          # eye half-width
    eye_h: float          # eye half-height
    mouth_w: float        # mouth half-width
    lip_h: float          # upper/lower lip thickness


def draw_face(rng):
    """Draw one identity's neutral face on its background; returns a Face."""
    H, W = HEIGHT, WIDTH
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    cx = W / 2 + rng.uniform(-20, 20)
    cy = H / 2 + 8 + rng.uniform(-10, 10)
    a = rng.uniform(96, 112)
    b = a * rng.uniform(1.24, 1.36)
    taper = rng.uniform(0.12, 0.30)

    # Background: a lit wall (two-colour gradient with a soft blob), as in a lab booth.
    c1 = rng.uniform(0.25, 0.85, 3).astype(np.float32)
    c2 = np.clip(c1 * rng.uniform(0.6, 1.1) + rng.uniform(-0.08, 0.08, 3), 0, 1).astype(np.float32)
    gdir = rng.uniform(0, 2 * np.pi)
    g = ((xx - W / 2) * np.cos(gdir) + (yy - H / 2) * np.sin(gdir)) / W + 0.5
    img = (c1[None, None] * (1 - g[..., None]) + c2[None, None] * g[..., None]).astype(np.float32)
    img *= 1.0 + 0.06 * _smooth_noise(rng, 40)[..., None]

    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.93, 1.05, 3).astype(np.float32)
    skin = np.clip(skin, 0, 1)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
    long_hair = rng.random() < 0.45

    # Light from the front, tilted left/right/up; shading of an ellipsoidal head.
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.5, 0.1), 1.0], np.float32)
    light /= np.linalg.norm(light)
    ambient = rng.uniform(0.45, 0.6)

    def shade(ax, ay, ox, oy):
        nx = (xx - ox) / ax
        ny = (yy - oy) / ay
        nz = np.sqrt(np.clip(1 - nx ** 2 - ny ** 2, 0.02, 1))
        d = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0, 1)
        return (ambient + (1 - ambient) * 1.05 * d).astype(np.float32)

    # Long hair behind the head and shoulders.
    if long_hair:
        hp = np.concatenate([_ellipse_pts(cx, cy - 0.15 * b, a * 1.28, b * 1.12, t0=np.pi, t1=2 * np.pi),
                             [[cx + a * 1.35, cy + b * 1.15], [cx - a * 1.35, cy + b * 1.15]]])
        _paint(img, _poly_mask(hp, 1.5), hair * 0.8)

    # Neck and clothes.
    neck = [[cx - 0.5 * a, cy + 0.5 * b], [cx + 0.5 * a, cy + 0.5 * b],
            [cx + 0.58 * a, cy + 1.35 * b], [cx - 0.58 * a, cy + 1.35 * b]]
    _paint(img, _poly_mask(neck, 1.0), skin * 0.72)
    cloth = rng.uniform(0.1, 0.8, 3).astype(np.float32)
    cl = _ellipse_pts(cx, cy + 1.75 * b, a * 2.3, b * 0.75)
    _paint(img, _poly_mask(cl, 1.0), cloth)
    # Ears.
    for sgn in (-1, 1):
        ear = _ellipse_pts(cx + sgn * 0.97 * a, cy - 0.02 * b, 0.16 * a, 0.27 * b, angle=sgn * 0.15)
        _paint(img, _poly_mask(ear, 1.0), skin * 0.8)
        _paint(img, _poly_mask(_ellipse_pts(cx + sgn * 0.99 * a, cy - 0.02 * b, 0.07 * a, 0.17 * b), 2.0),
               skin * 0.62)

    # Face outline: an ellipse whose lower half narrows to the chin.
    t = np.linspace(0, 2 * np.pi, 160)
    wf = 1 - taper * np.clip(np.sin(t), 0, 1) ** 2
    outline = np.stack([cx + a * wf * np.cos(t), cy + b * np.sin(t)], axis=1)
    face_m = _poly_mask(outline, 1.2)
    sh = shade(a * 1.05, b * 1.05, cx, cy)
    tex = (1 + 0.035 * _smooth_noise(rng, 9) + 0.02 * _smooth_noise(rng, 2.5)
           + 0.012 * rng.standard_normal((H, W)).astype(np.float32))
    # Mild redness on the cheeks and nose.
    blush = rng.uniform(0.0, 0.08)
    red = np.zeros((H, W), np.float32)
    for sgn in (-1, 1):
        red += _gauss(cx + sgn * 0.45 * a, cy + 0.15 * b, 0.2 * a, 0.15 * b)
    red += 0.6 * _gauss(cx, cy + 0.2 * b, 0.08 * a, 0.08 * b)
    skin_img = skin[None, None] * (sh * tex)[..., None]
    skin_img[..., 0] *= 1 - blush * red
    skin_img[..., 1] *= 1 - 0.8 * blush * red
    _paint(img, face_m, skin_img)

    P = {}
    eye_y = cy - rng.uniform(0.10, 0.14) * b
    eye_dx = a * rng.uniform(0.37, 0.42)
    ew = a * rng.uniform(0.17, 0.2)
    eh = ew * rng.uniform(0.38, 0.46)
    brow_y = eye_y - b * rng.uniform(0.15, 0.18)
    nose_y = cy + b * rng.uniform(0.2, 0.25)
    nose_w = a * rng.uniform(0.16, 0.2)
    mouth_y = cy + b * rng.uniform(0.46, 0.52)
    mw = a * rng.uniform(0.31, 0.38)
    lip_h = b * rng.uniform(0.055, 0.075)

    def darken(mask, k):
        img[...] *= (1 - k * mask)[..., None]

    # Sockets, the sides of the nose and the area under the brows are darker (as lit faces are:
    # this dark-light pattern is also what the Haar cascades look for).
    for sgn in (-1, 1):
        darken(_gauss(cx + sgn * eye_dx, eye_y - 0.2 * eh, ew * 1.1, eh * 2.4), 0.34)
        darken(_gauss(cx + sgn * 0.14 * a, eye_y + 0.2 * b, 0.05 * a, 0.16 * b), 0.12)
        darken(_gauss(cx + sgn * 0.33 * a, mouth_y - 0.1 * b, 0.07 * a, 0.09 * b), 0.06)
    img[...] *= (1 + 0.12 * _gauss(cx, eye_y + 0.18 * b, 0.06 * a, 0.2 * b))[..., None]
    darken(_gauss(cx, nose_y + 0.07 * b, 0.18 * a, 0.025 * b), 0.22)
    darken(_gauss(cx, mouth_y + 2.2 * lip_h, 0.22 * a, 0.03 * b), 0.14)

    # Hair on top, above a hairline that dips at the temples.
    hair_top = _poly_mask(_ellipse_pts(cx, cy - 0.06 * b, a * 1.1, b * 1.07), 1.0)
    hl_y = brow_y - b * rng.uniform(0.30, 0.40)
    dip = rng.uniform(0.1, 0.35) * b
    part = rng.uniform(-0.4, 0.4) * a
    hairline = (hl_y + dip * np.clip(np.abs(xx - cx) / a, 0, 1.3) ** 2
                - 0.06 * b * np.exp(-((xx - cx - part) / (0.15 * a)) ** 2))
    hmask = hair_top * np.clip((hairline - yy) / 2.0 + 0.5, 0, 1)
    hair_img = hair[None, None] * (shade(a * 1.15, b * 1.1, cx, cy - 0.1 * b)
                                   * (1 + 0.1 * _smooth_noise(rng, 1.5) + 0.06 * _smooth_noise(rng, 6)))[..., None]
    _paint(img, hmask, np.clip(hair_img, 0, 1))

    # Eyebrows.
    brow_col = np.minimum(hair, skin * 0.4) * rng.uniform(0.7, 1.0)
    bthick = b * rng.uniform(0.035, 0.05)
    arch = b * rng.uniform(0.015, 0.045)
    for sgn, side in ((1, "L"), (-1, "R")):
        xs = cx + sgn * np.linspace(0.1 * a, 0.66 * a, 24)
        u = np.linspace(0, 1, 24)
        yc = brow_y - arch * np.sin(np.pi * np.clip(u * 1.2, 0, 1)) + 0.02 * b * u
        thick = bthick * (1.15 - 0.7 * u)
        poly = np.concatenate([np.stack([xs, yc - thick / 2], 1), np.stack([xs, yc + thick / 2], 1)[::-1]])
        _paint(img, _poly_mask(poly, 1.0) * 0.92, brow_col)
        P["brow_inner_" + side] = (xs[2], yc[2])
        P["brow_mid_" + side] = (xs[11], yc[11])
        P["brow_outer_" + side] = (xs[20], yc[20])

    # Eyes: almond sclera, iris, pupil, lash line, crease, highlight.
    iris_col = IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]
    for sgn, side in ((1, "L"), (-1, "R")):
        ex = cx + sgn * eye_dx
        u = np.linspace(-1, 1, 40)
        upper = np.stack([ex + ew * u, eye_y - eh * (1 - u ** 2) ** 0.8 - 0.1 * eh * sgn * u], 1)
        lower = np.stack([ex + ew * u[::-1], eye_y + 0.75 * eh * (1 - u[::-1] ** 2) ** 0.9], 1)
        almond = _poly_mask(np.concatenate([upper, lower]), 0.6)
        _paint(img, almond, _rgb(232, 226, 220) * (0.75 + 0.25 * ambient))
        ir = eh * 1.0
        iris = _poly_mask(_ellipse_pts(ex, eye_y, ir, ir), 0.5) * almond
        _paint(img, iris, iris_col)
        _paint(img, _poly_mask(_ellipse_pts(ex, eye_y, ir * 0.45, ir * 0.45), 0.5) * almond, _rgb(8, 8, 8))
        _paint(img, _line_mask(upper, max(2, eh * 0.45), 0.6), _rgb(25, 18, 15))
        _paint(img, _line_mask(lower, 1, 0.8) * 0.5, skin * 0.45)
        crease = upper.copy()
        crease[:, 1] -= eh * 0.55
        crease = crease[6:-6]
        _paint(img, _line_mask(crease, 1, 1.0) * 0.5, skin * 0.5)
        _paint(img, _poly_mask(_ellipse_pts(ex + 0.3 * ir, eye_y - 0.3 * ir, 1.6, 1.6), 0.6), _rgb(250, 250, 250))
        P["eye_" + side] = (ex, eye_y)
        P["lid_upper_" + side] = (ex, eye_y - eh)
        P["lid_lower_" + side] = (ex, eye_y + 0.75 * eh)
        P["eye_outer_" + side] = (ex + sgn * ew, eye_y)
        P["cheek_" + side] = (cx + sgn * 0.42 * a, cy + 0.14 * b)
        P["nose_wing_" + side] = (cx + sgn * nose_w * 0.9, nose_y - 0.02 * b)
        P["mouth_corner_" + side] = (cx + sgn * mw, mouth_y)
        P["lip_upper_side_" + side] = (cx + sgn * 0.4 * mw, mouth_y - 0.9 * lip_h)

    # Nose: tip, wings, nostrils.
    for sgn in (-1, 1):
        _paint(img, _poly_mask(_ellipse_pts(cx + sgn * nose_w * 0.45, nose_y + 0.02 * b, nose_w * 0.22,
                                            nose_w * 0.11, angle=sgn * 0.3), 1.2), skin * 0.3)
        wing = _ellipse_pts(cx + sgn * nose_w * 0.85, nose_y - 0.02 * b, nose_w * 0.35, nose_w * 0.45,
                            t0=np.pi / 2 - sgn * np.pi / 2 - 1.2, t1=np.pi / 2 - sgn * np.pi / 2 + 1.2, n=20)
        _paint(img, _line_mask(wing, 2, 1.2) * 0.6, skin * 0.45)
    img[...] *= (1 + 0.1 * _gauss(cx, nose_y - 0.04 * b, 0.07 * a, 0.04 * b))[..., None]

    # Mouth: upper lip with a Cupid's bow, fuller lower lip, dark line between.
    lip_col = np.clip(skin * np.array([0.72, 0.62, 1.08], np.float32) * rng.uniform(0.78, 0.92), 0, 1)
    u = np.linspace(-1, 1, 48)
    line = np.stack([cx + mw * u, mouth_y + 0.06 * lip_h * np.cos(np.pi * u)], 1)
    bow = lip_h * (1 - 0.35 * np.exp(-(u / 0.12) ** 2) + 0.2 * np.exp(-((np.abs(u) - 0.22) / 0.15) ** 2))
    up = np.stack([cx + mw * u, mouth_y - bow * (1 - u ** 2) ** 0.7], 1)
    lo = np.stack([cx + mw * u, mouth_y + 1.25 * lip_h * (1 - u ** 2) ** 0.6], 1)
    lips = _poly_mask(np.concatenate([up, lo[::-1]]), 0.8)
    lip_img = lip_col[None, None] * (sh * (1 + 0.02 * _smooth_noise(rng, 1.5)))[..., None]
    _paint(img, lips, lip_img)
    img[...] *= (1 + 0.12 * _gauss(cx, mouth_y + 0.7 * lip_h, 0.25 * mw, 0.3 * lip_h))[..., None]
    _paint(img, _line_mask(line, 2, 0.7) * 0.85, lip_col * 0.3)
    P["lip_upper"] = (cx, mouth_y - lip_h)
    P["lip_lower"] = (cx, mouth_y + 1.25 * lip_h)
    P["lip_line"] = (cx, mouth_y)
    P["nose_tip"] = (cx, nose_y)
    P["chin"] = (cx, cy + 0.8 * b)
    P["glabella"] = (cx, brow_y)
    P["centre"] = (cx, cy)

    # A few moles or freckles for some identities.
    for _ in range(rng.integers(0, 4)):
        ang = rng.uniform(0, 2 * np.pi)
        r = rng.uniform(0.3, 0.8)
        mx, my = cx + r * a * np.cos(ang), cy + 0.2 * b + r * 0.6 * b * np.sin(ang)
        _paint(img, _poly_mask(_ellipse_pts(mx, my, 1.6, 1.6), 0.7) * 0.6, skin * 0.45)

    # Auto exposure, as the lab's camera did: dark skin is not left in the shadows (the
    # cascades need the eyes' contrast).
    patch = img[int(cy):int(cy + 0.3 * b), int(cx - 0.4 * a):int(cx + 0.4 * a)]
    lum = float((patch @ np.array([0.114, 0.587, 0.299], np.float32)).mean())
    img *= np.clip(rng.uniform(0.47, 0.6) / max(lum, 1e-3), 0.85, 1.7)

    out = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return Face(out, P, a, b, ew, eh, mw, lip_h)


# --------------------------------------------------------------------------- action units
# Each AU moves skin around named points of the face: (point, sigma in face half-widths,
# dx outward from the midline, dy down), both in units of the clip's apex amplitude (pixels).
# Points without a side ('lip_upper') sit on the midline. The moves follow FACS's
# descriptions; each class's AUs act on different parts of the face (surprise: brows up and
# lips apart; positive: corners up and out, cheeks up; negative: brows down and together,
# lids, nose, upper lip, corners down; others: corners pulled in, dimples).
AU_MOVES = {
    1: (("brow_inner", 0.13, 0.0, -1.0),),
    2: (("brow_outer", 0.14, 0.0, -1.0), ("brow_mid", 0.12, 0.0, -0.5)),
    4: (("brow_inner", 0.12, -0.5, 0.9), ("brow_mid", 0.13, -0.2, 0.5)),
    5: (("lid_upper", 0.06, 0.0, -0.6),),
    6: (("cheek", 0.2, 0.1, -1.0), ("lid_lower", 0.08, 0.0, -0.5), ("eye_outer", 0.07, 0.0, -0.3)),
    7: (("lid_lower", 0.07, 0.0, -0.8), ("lid_upper", 0.06, 0.0, 0.3)),
    9: (("nose_wing", 0.09, 0.0, -1.0), ("lip_upper", 0.12, 0.0, -0.4), ("brow_inner", 0.1, 0.0, 0.4)),
    10: (("lip_upper_side", 0.1, 0.0, -1.0), ("nose_wing", 0.08, 0.0, -0.3)),
    12: (("mouth_corner", 0.11, 0.6, -0.9), ("cheek", 0.16, 0.1, -0.3)),
    14: (("mouth_corner", 0.09, -0.8, 0.0),),
    15: (("mouth_corner", 0.11, 0.0, 1.0),),
    17: (("chin", 0.16, 0.0, -1.0), ("lip_lower", 0.1, 0.0, -0.5)),
    18: (("mouth_corner", 0.1, -1.0, 0.0), ("lip_upper", 0.1, 0.0, 0.3), ("lip_lower", 0.1, 0.0, -0.3)),
    25: (("lip_upper", 0.13, 0.0, -0.5), ("lip_lower", 0.13, 0.0, 0.8)),
    26: (("chin", 0.3, 0.0, 1.2), ("lip_lower", 0.18, 0.0, 0.8)),
}


def parse_au_code(code):
    """'1+R2+25' -> [(1, None), (2, 'R'), (25, None)]: the AUs this module draws."""
    out = []
    for tok in str(code).split("+"):
        m = re.fullmatch(r"([LR]?)(\d+)", tok.strip())
        if not m or int(m.group(2)) not in AU_MOVES:
            raise ValueError(f"AU token {tok!r} in {code!r} cannot be drawn; known AUs: {sorted(AU_MOVES)}")
        out.append((int(m.group(2)), m.group(1) or None))
    return out


def _sides(points, name):
    """(x, y, outward sign, side) for a named point: both sides, or the midline point."""
    if name in points:
        x, y = points[name]
        return [(x, y, 0.0, None)]
    return [(points[name + "_" + s][0], points[name + "_" + s][1], sg, s) for s, sg in (("L", 1.0), ("R", -1.0))]


def au_handles(face_points, a, code, amplitude):
    """The Gaussian displacement handles of an AU code: list of (x, y, sigma, dx, dy) pixels.

    A side prefix keeps that side's handles and halves the midline ones."""
    handles = []
    for au, side in parse_au_code(code):
        for name, sig, dout, dy in AU_MOVES[au]:
            for x, y, sg, s in _sides(face_points, name):
                k = 1.0 if side is None or s == side else (0.5 if s is None else 0.0)
                if k:
                    handles.append((x, y, sig * a, k * sg * dout * amplitude, k * dy * amplitude))
    return handles


def wrinkle_map(face, code, strength):
    """Darkening (0..1 per pixel) that deepens with the AU: furrows, folds, the lips' gap."""
    P, a, b = face.points, face.a, face.b
    m = np.zeros((HEIGHT, WIDTH), np.float32)
    for au, side in parse_au_code(code):
        sides = [(s, sg) for s, sg in (("L", 1.0), ("R", -1.0)) if side in (None, s)]
        half = 1.0 if side is None else 0.5
        if au == 1:
            gx, gy = P["glabella"]
            for k in (0.1, 0.17):
                xs = np.linspace(gx - 0.25 * a, gx + 0.25 * a, 20)
                ys = gy - k * b - 0.02 * b * np.cos(np.pi * (xs - gx) / (0.5 * a))
                m = np.maximum(m, half * 0.10 * _line_mask(np.stack([xs, ys], 1), 1, 1.0))
        elif au == 2:
            for s, sg in sides:
                ox, oy = P["brow_outer_" + s]
                xs = np.linspace(ox - sg * 0.25 * a, ox + sg * 0.05 * a, 12)
                m = np.maximum(m, 0.10 * _line_mask(np.stack([xs, np.full_like(xs, oy - 0.09 * b)], 1), 1, 1.0))
        elif au == 4:
            gx, gy = P["glabella"]
            for sg in (-1, 1):
                pts = [[gx + sg * 0.04 * a, gy - 0.06 * b], [gx + sg * 0.055 * a, gy + 0.05 * b]]
                m = np.maximum(m, half * 0.18 * _line_mask(pts, 2, 1.0))
        elif au == 6:
            for s, sg in sides:
                ox, oy = P["eye_outer_" + s]
                for ang in (-0.35, 0.0, 0.35):
                    p0 = (ox + sg * 0.04 * a, oy + 0.02 * b * ang * 2)
                    p1 = (p0[0] + sg * 0.12 * a * np.cos(ang), p0[1] + 0.12 * a * np.sin(ang))
                    m = np.maximum(m, 0.12 * _line_mask([p0, p1], 1, 0.8))
        elif au == 7:
            for s, sg in sides:
                ex, ey = P["lid_lower_" + s]
                xs = np.linspace(ex - 0.8 * face.eye_w, ex + 0.8 * face.eye_w, 16)
                ys = ey + 0.5 * face.eye_h + 0.3 * face.eye_h * (1 - ((xs - ex) / face.eye_w) ** 2)
                m = np.maximum(m, 0.10 * _line_mask(np.stack([xs, ys], 1), 1, 1.0))
        elif au == 9:
            nx, ny = P["nose_tip"]
            ey = P["eye_L"][1]
            for k in (0.3, 0.45, 0.6):
                y = ey + k * (ny - ey) * 0.6
                m = np.maximum(m, half * 0.15 * _line_mask([[nx - 0.07 * a, y], [nx + 0.07 * a, y]], 1, 0.8))
        elif au in (10, 12):
            for s, sg in sides:
                wx, wy = P["nose_wing_" + s]
                mx, my = P["mouth_corner_" + s]
                end = 0.55 if au == 10 else 1.15
                t = np.linspace(0, end, 16)
                xs = wx + sg * 0.08 * a + (mx + sg * 0.1 * a - wx - sg * 0.08 * a) * np.sin(t * np.pi / 2.3)
                ys = wy + (my + 0.05 * b - wy) * t
                m = np.maximum(m, 0.12 * _line_mask(np.stack([xs, ys], 1), 2, 1.2))
        elif au == 14:
            for s, sg in sides:
                mx, my = P["mouth_corner_" + s]
                m = np.maximum(m, 0.22 * _gauss(mx + sg * 0.1 * a, my, 0.025 * a, 0.035 * a))
        elif au == 15:
            for s, sg in sides:
                mx, my = P["mouth_corner_" + s]
                pts = [[mx + sg * 0.02 * a, my + 0.03 * b], [mx + sg * 0.05 * a, my + 0.15 * b]]
                m = np.maximum(m, 0.10 * _line_mask(pts, 1, 1.0))
        elif au == 17:
            cx, cy = P["chin"]
            bumps = _gauss(cx, cy - 0.02 * b, 0.12 * a, 0.06 * b)
            y = np.arange(HEIGHT, dtype=np.float32)[:, None]
            x = np.arange(WIDTH, dtype=np.float32)[None, :]
            m = np.maximum(m, 0.1 * bumps * (0.5 + 0.5 * np.cos(x * 0.9) * np.cos(y * 0.9)))
            lx, ly = P["lip_lower"]
            m = np.maximum(m, 0.08 * _line_mask([[lx - 0.15 * a, ly + 0.04 * b],
                                                 [lx + 0.15 * a, ly + 0.04 * b]], 2, 1.5))
        elif au == 18:
            lx, ly = P["lip_line"]
            for dx in (-0.12, -0.05, 0.05, 0.12):
                pts = [[lx + dx * a, ly - 0.8 * face.lip_h], [lx + dx * a, ly + 0.9 * face.lip_h]]
                m = np.maximum(m, 0.12 * _line_mask(pts, 1, 0.7))
        elif au in (25, 26):
            lx, ly = P["lip_line"]
            u = np.linspace(-1, 1, 32)
            gap = (0.35 if au == 25 else 0.6) * face.lip_h * (1 - u ** 2) ** 0.8
            poly = np.concatenate([np.stack([lx + 0.8 * face.mouth_w * u, ly - gap], 1),
                                   np.stack([lx + 0.8 * face.mouth_w * u[::-1], ly + gap[::-1]], 1)])
            m = np.maximum(m, 0.55 * _poly_mask(poly, 0.8))
    return m * strength
