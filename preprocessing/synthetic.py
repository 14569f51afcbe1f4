"""A synthetic micro-expression database written in CASME II's (or CASME's) on-disk format.

A newcomer without the licensed databases must still be able to run the whole system, and
tests need clips whose class is known and visible in the frames. This module draws faces
with OpenCV/numpy (one identity per subject: face shape, skin tone and texture, hair, eyes,
brows, mouth, background, lighting), and animates each clip at 200 fps as a neutral start,
an onset-apex-offset of local AU-like deformations a few pixels large at the apex, and a
neutral end, with slight head motion and sensor noise (so RPCA has an identity to remove).

On disk (what `preprocessing.loaders` reads for CASME II):
    OUT/CASME2-coding-20140508.xlsx
    OUT/CASME2_RAW_selected/sub01/EP02_01f/img46.jpg ... (onset..offset, file number =
        absolute frame number, not zero padded), 640x480 JPEG
    OUT/synthetic_stamp.json (parameters; lets a second run with the same ones skip)

With format "casme" the same clips are written as CASME's owners ship it (what the CASME
loader reads; the clips keep their 200 fps timing, only the layout is CASME's): the first
half of the subjects as Section A, the rest as Section B,
    OUT/CASME_A/Section A/Section A.xls     (CASME's header: Subject, Filename, OnsetF, ApexF1,
                                             ApexF2, OffsetF, Onset, Total, AU, Emotion; '\\'
                                             for a missing value)
    OUT/CASME_A/Section A/sub01/EP02_1/EP02_1-46.jpg     (Section A: no padding)
    OUT/CASME_B/Section B/sub07/EP05_3/EP05_3-046.jpg    (Section B: 3-digit padding)
with CASME-style filenames (EP02_01f -> EP02_1). Together with a CASME II-format database of
other subjects this gives a two-database run of the whole pipeline.

The AU codes are written like the real sheet (`4+7`, `R12`, `1+R2+25`; pure numbers as int
cells) and chosen so every class of docs/design.md §1 occurs through the exact-match rule of the
paper's Table 2; what is drawn is what the sheet says (each AU has its own local movement).
Output is deterministic for a seed: same parameters, same bytes (with the same numpy,
OpenCV and zlib builds; another build may round a few pixels differently).
"""
import argparse
import io
import json
import os
import re
import shutil
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from preprocessing.errors import fail
from preprocessing.labels import CLASSES

SHEET_NAME = "CASME2-coding-20140508.xlsx"
FRAMES_DIR = "CASME2_RAW_selected"
FORMATS = ("casme2", "casme")
CASME_HEADER = ("Subject", "Filename", None, "OnsetF", "ApexF1", "ApexF2", "OffsetF", None,
                "Onset", "Total", "AU", "Emotion")
CASME_FPS = 60   # for the sheet's millisecond columns, as the owners computed them
STAMP_NAME = "synthetic_stamp.json"
HEADER = ("Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
          "Action Units", "Estimated Emotion")
WIDTH, HEIGHT = 640, 480
FPS = 200
# Bump when the drawing or the plan changes, so stale databases are regenerated.
GENERATOR_VERSION = 1

POSITIVE, NEGATIVE, SURPRISE, OTHERS = 0, 1, 2, 3
# Class shares of the paper's Table 4 (all 650 clips: 55/280/50/265), moved towards the
# small classes so that each has enough clips for 10 stratified folds.
CLASS_SHARES = (0.12, 0.37, 0.10, 0.41)
MIN_PER_CLASS = 10

# (AU cell, weight, estimated emotion). Every cell's AU set is checked against Table 2 by
# the tests; side prefixes follow FACS (L = the subject's left = the image's right).
AU_CHOICES = {
    POSITIVE: (("12", 3, "happiness"), ("6+12", 3, "happiness"), ("R12", 1, "happiness"),
               ("L12", 1, "happiness"), ("6+R12", 1, "happiness"), ("7+12", 1, "happiness")),
    NEGATIVE: (("4", 3, "repression"), ("4+7", 3, "disgust"), ("9", 2, "disgust"),
               ("4+9", 1, "disgust"), ("10", 1, "disgust"), ("L10", 1, "disgust"),
               ("15", 2, "sadness"), ("15+17", 1, "sadness"), ("4+7+10", 1, "disgust"),
               ("7+10", 1, "disgust"), ("R15", 1, "sadness"), ("4+R7", 1, "repression")),
    SURPRISE: (("1+2", 4, "surprise"), ("25", 2, "surprise"), ("1+2+25", 2, "surprise"),
               ("1+R2", 1, "surprise"), ("25+26", 1, "surprise")),
    OTHERS: (("14", 4, "others"), ("R14", 2, "others"), ("L14", 2, "others"),
             ("14+17", 1, "others"), ("4+14", 1, "repression"), ("R12+14", 1, "others"),
             ("18", 1, "others")),
}


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
    hairline = hl_y + dip * np.clip(np.abs(xx - cx) / a, 0, 1.3) ** 2 - 0.06 * b * np.exp(-((xx - cx - part) / (0.15 * a)) ** 2)
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


def _wrinkles(face, code, strength):
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
            m = np.maximum(m, 0.08 * _line_mask([[lx - 0.15 * a, ly + 0.04 * b], [lx + 0.15 * a, ly + 0.04 * b]], 2, 1.5))
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


def _transform_face(face, M):
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
    posed = _transform_face(face, M)
    amplitude = rng.uniform(3.0, 5.0) * posed.a / 104.0
    handles = au_handles(posed.points, posed.a, plan.aus, amplitude)
    wrinkles = _wrinkles(posed, plan.aus, rng.uniform(0.8, 1.2))
    return rng, posed, handles, wrinkles


def render_frames(face, plan, noise, quality=90, attempts=10):
    """Yield (frame number, BGR uint8 image) for onset..offset of one clip.

    A pose in which the cascades miss the face on the onset frame (where the preprocessing
    detects it) is drawn again, as for identities."""
    for attempt in range(attempts):
        frames = _render(face, plan, noise, attempt)
        number, first = next(frames)
        if detectable(_unjpeg(first, quality)):
            break
    else:
        raise RuntimeError(f"no pose of sub{plan.subject:02d}/{plan.filename} in which the face is detectable")
    yield number, first
    yield from frames


def _render(face, plan, noise, attempt):
    rng, posed, handles, wrinkles = clip_setup(face, plan, attempt)
    n = plan.offset - plan.onset + 1
    lead, tail = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    prof = intensity_profile(n, plan.apex - plan.onset, lead, tail)

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
        t = i / FPS
        tx, ty, th = (amp[0] * np.sin(2 * np.pi * freq[0] * t + phase[0]),
                      amp[1] * np.sin(2 * np.pi * freq[1] * t + phase[1]),
                      roll * np.sin(2 * np.pi * freq[2] * t + phase[2]))
        M = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), th, 1.0)
        M[:, 2] += (tx, ty)
        frame = cv2.warpAffine(frame, M, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT101)
        gain = 1.0 + 0.004 * rng.standard_normal()
        frame = cv2.convertScaleAbs(frame, alpha=gain)
        yield plan.onset + i, noise.add(frame, rng)


# --------------------------------------------------------------------------- writing

_FIXED_TIME = (2014, 5, 8, 0, 0, 0)


def sheet_bytes(plans):
    """The coding sheet as .xlsx bytes, identical for identical plans.

    openpyxl stamps the save time into docProps/core.xml and the zip entries; both are
    replaced by the real sheet's date so that a seed always gives the same bytes."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(list(HEADER))
    for p in plans:
        ws.append([p.subject, p.filename, None, p.onset, p.apex_cell, p.offset, None, p.au_cell, p.emotion])
    raw = io.BytesIO()
    wb.save(raw)
    out = io.BytesIO()
    stamp = "%04d-%02d-%02dT%02d:%02d:%02dZ" % _FIXED_TIME
    with zipfile.ZipFile(raw) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:)",
                              lambda m: m.group(1) + stamp.encode() + m.group(3), data)
            zi = zipfile.ZipInfo(info.filename, date_time=_FIXED_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zout.writestr(zi, data)
    return out.getvalue()


def casme_filename(filename):
    """CASME II-style 'EP02_01f' -> CASME-style 'EP02_1'."""
    ep, k = filename.rstrip("f").split("_")
    return f"{ep}_{int(k)}"


def casme_section(plan, n_subjects):
    """'A' for the first half of the subjects, else 'B'."""
    return "A" if plan.subject <= (n_subjects + 1) // 2 else "B"


def clip_dir(root, plan, fmt="casme2", n_subjects=None):
    if fmt == "casme":
        sec = casme_section(plan, n_subjects)
        return os.path.join(root, f"CASME_{sec}", f"Section {sec}", "sub%02d" % plan.subject,
                            casme_filename(plan.filename))
    return os.path.join(root, FRAMES_DIR, "sub%02d" % plan.subject, plan.filename)


def frame_name(plan, number, fmt="casme2", n_subjects=None):
    if fmt == "casme":
        name = casme_filename(plan.filename)
        if casme_section(plan, n_subjects) == "A":
            return f"{name}-{number}.jpg"
        return f"{name}-{number:03d}.jpg"
    return "img%d.jpg" % number


def casme_sheets(plans, n_subjects):
    """{relative path: .xls bytes} of the two section sheets."""
    import xlwt
    out = {}
    for sec in ("A", "B"):
        rows = [p for p in plans if casme_section(p, n_subjects) == sec]
        if not rows:
            continue
        wb = xlwt.Workbook()
        ws = wb.add_sheet("Sheet1")
        for c, name in enumerate(CASME_HEADER):
            if name is not None:
                ws.write(0, c, name)
        for r, p in enumerate(rows, start=1):
            apex = "\\" if p.apex_cell == "/" else p.apex_cell
            ms = round(p.onset * 1000 / CASME_FPS)
            total = round((p.offset - p.onset + 1) * 1000 / CASME_FPS)
            cells = (p.subject, casme_filename(p.filename), None, p.onset, apex, "\\", p.offset,
                     None, ms, total, p.au_cell, p.emotion)
            for c, value in enumerate(cells):
                if value is not None:
                    ws.write(r, c, value)
        buf = io.BytesIO()
        wb.save(buf)
        out[os.path.join(f"CASME_{sec}", f"Section {sec}", f"Section {sec}.xls")] = buf.getvalue()
    return out


def _write_clip(root, face, plan, noise, quality, fmt="casme2", n_subjects=None):
    d = clip_dir(root, plan, fmt, n_subjects)
    os.makedirs(d, exist_ok=True)
    nbytes = 0
    for number, frame in render_frames(face, plan, noise, quality):
        buf = _jpeg(frame, quality)
        with open(os.path.join(d, frame_name(plan, number, fmt, n_subjects)), "wb") as f:
            f.write(buf.tobytes())
        nbytes += buf.size
    return plan.offset - plan.onset + 1, nbytes


_local = threading.local()


def _cascade(name):
    # A CascadeClassifier is not safe to share between threads: one per thread.
    c = getattr(_local, name, None)
    if c is None:
        c = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, name))
        if c.empty():
            raise RuntimeError(f"OpenCV's {name} is missing from {cv2.data.haarcascades}; "
                               "reinstall opencv-python-headless 4.x")
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


def _jpeg(image, quality):
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buf


def _unjpeg(image, quality):
    return cv2.imdecode(_jpeg(image, quality), cv2.IMREAD_COLOR)


# Poses an identity must stay detectable in: the extremes of clip_setup's pose draw.
_TEST_POSES = ((-2.5, 0.97, -8, 6), (2.5, 1.03, 8, -6), (0.0, 1.0, 0, 0), (2.5, 0.97, -6, -8))


def subject_face(seed, subject, quality=90):
    """A subject's identity; depends only on (seed, subject), not on the database's size.

    Identities the cascades would miss (about 2 % of those drawn) are drawn again, checked
    in a few poses with sensor noise and JPEG: every face of the real databases is found by
    a detector, and the preprocessing relies on that."""
    rng = np.random.default_rng([seed, 1, subject])
    noise = np.random.default_rng([seed, 4, subject]).normal(0, 2.0, (HEIGHT, WIDTH, 3)).astype(np.float32)
    for _ in range(50):
        face = draw_face(rng)
        c = face.points["centre"]
        for ang, sc, tx, ty in _TEST_POSES:
            M = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), ang, sc)
            M[:, 2] += (tx, ty)
            img = np.clip(_transform_face(face, M).image + noise, 0, 255).astype(np.uint8)
            if not detectable(_unjpeg(img, quality)):
                break
        else:
            return face
    raise RuntimeError(f"no detectable face drawn for subject {subject} (seed {seed}) in 50 tries")


def _params(n_subjects, clips_per_subject, seed, quality, fmt="casme2"):
    params = {"generator_version": GENERATOR_VERSION, "n_subjects": int(n_subjects),
              "clips_per_subject": int(clips_per_subject), "seed": int(seed),
              "quality": int(quality), "width": WIDTH, "height": HEIGHT, "fps": FPS}
    if fmt != "casme2":     # CASME II databases written before formats existed stay valid
        params["format"] = fmt
    return params


def _remove_stale_tmp(parent, name):
    """Temporary folders of runs that were killed (their process is gone)."""
    pattern = re.compile(r"\.%s\.tmp-(\d+)(\.old)?$" % re.escape(name))
    for entry in os.listdir(parent):
        m = pattern.match(entry)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        except PermissionError:
            pass


def generate(out_dir, n_subjects=12, clips_per_subject=10, seed=0, quality=90, workers=None,
             progress=False, force=False, fmt="casme2"):
    """Write a synthetic CASME II-format (fmt 'casme': CASME-format) database to out_dir;
    returns a summary dict.

    The database is built in a temporary sibling folder and renamed into place at the end, so
    out_dir never holds half a database. If out_dir already holds a database generated with
    the same parameters (its stamp file says so), nothing is written (summary['skipped']).
    A folder that exists but is not one of ours is never overwritten."""
    t0 = time.time()
    out_dir = os.path.abspath(out_dir)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    params = _params(n_subjects, clips_per_subject, seed, quality, fmt)
    stamp_path = os.path.join(out_dir, STAMP_NAME)
    if os.path.isfile(stamp_path):
        try:
            with open(stamp_path) as f:
                stamp = json.load(f)
        except (OSError, ValueError):
            stamp = {}
        if not force and stamp.get("params") == params:
            return dict(stamp["summary"], out_dir=out_dir, skipped=True, seconds=time.time() - t0)
    elif os.path.isdir(out_dir) and os.listdir(out_dir):
        raise FileExistsError(
            f"{out_dir} exists and is not a synthetic database (it has no {STAMP_NAME}); "
            "choose another output folder or remove this one")
    elif os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not a folder; choose another output folder")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")

    plans = plan_database(n_subjects, clips_per_subject, seed)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    _remove_stale_tmp(parent, os.path.basename(out_dir))
    tmp = os.path.join(parent, ".%s.tmp-%d" % (os.path.basename(out_dir), os.getpid()))
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    workers = workers or min(4, os.cpu_count() or 1)
    bar = None
    try:
        sheets = (casme_sheets(plans, n_subjects) if fmt == "casme"
                  else {SHEET_NAME: sheet_bytes(plans)})
        for name, data in sheets.items():
            os.makedirs(os.path.dirname(os.path.join(tmp, name)), exist_ok=True)
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        noise = NoiseBank(seed)
        subjects = sorted({p.subject for p in plans})
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(plans), unit="clip", desc="synthetic database")
        # OpenCV releases the GIL while warping and encoding, so threads do run in parallel.
        pool = ThreadPoolExecutor(workers)
        try:
            faces = dict(zip(subjects, pool.map(lambda s: subject_face(seed, s, quality), subjects)))
            futures = [pool.submit(_write_clip, tmp, faces[p.subject], p, noise, quality, fmt,
                                   n_subjects) for p in plans]
            frames = nbytes = 0
            for fut in futures:
                n, b = fut.result()
                frames += n
                nbytes += b
                if bar is not None:
                    bar.update(1)
        finally:
            # On an error or Ctrl-C: no new clips, and none still writing when tmp is removed.
            pool.shutdown(wait=True, cancel_futures=True)
        counts = np.bincount([p.label for p in plans], minlength=4)
        summary = {"subjects": len(subjects), "clips": len(plans), "frames": frames,
                   "jpeg_bytes": nbytes, "format": fmt, "sheet": sorted(sheets)[0],
                   "frames_dir": FRAMES_DIR if fmt == "casme2" else "CASME_A, CASME_B",
                   "class_counts": {CLASSES[k]: int(counts[k]) for k in range(4)}}
        with open(os.path.join(tmp, STAMP_NAME), "w") as f:
            json.dump({"params": params, "summary": summary}, f, indent=1)
            f.write("\n")
        if os.path.exists(out_dir):
            old = tmp + ".old"
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    return dict(summary, out_dir=out_dir, skipped=False, seconds=time.time() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Generate a synthetic micro-expression database in CASME II's on-disk format "
                    f"({SHEET_NAME} and {FRAMES_DIR}/subNN/EPxx_yy/imgN.jpg), or CASME's.")
    ap.add_argument("--out", default=os.path.join("data", "synthetic_casme2"),
                    help="output folder (default: %(default)s)")
    ap.add_argument("--subjects", type=int, default=12, help="number of subjects (default: %(default)s)")
    ap.add_argument("--clips-per-subject", type=int, default=10, help="clips per subject (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default: %(default)s)")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=None, help="threads (default: up to 4)")
    ap.add_argument("--force", action="store_true", help="regenerate even if an identical database exists")
    ap.add_argument("--format", choices=FORMATS, default="casme2",
                    help="on-disk format: casme2 (default) or casme (Section A/B sheets and folders)")
    args = ap.parse_args(argv)
    try:
        s = generate(args.out, args.subjects, args.clips_per_subject, args.seed, args.quality,
                     workers=args.workers, progress=True, force=args.force, fmt=args.format)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        return fail("error: ", e)
    what = "already there, skipped" if s["skipped"] else "written in %.1f s" % s["seconds"]
    cc = ", ".join(f"{k} {v}" for k, v in s["class_counts"].items())
    print(f"{s['out_dir']}: {s['subjects']} subjects, {s['clips']} clips, {s['frames']} frames, "
          f"{s['jpeg_bytes'] / 2 ** 20:.0f} MiB ({what}); classes: {cc}")
    return 0
