"""Landmark vs Haar alignment on faces of known geometry, rotated and shifted. Prints a table.

    python benchmarks/face_alignment.py [--faces 8] [--angles -10,-6,-3,0,3,6,10]
                                        [--shifts 0:0,-40:25,30:-20,15:35]

Faces: the scikit-image astronaut photograph (a real face; its true roll is taken as the mean
of the two methods on the untouched photograph) and synthetic faces of
the synthetic package (true eye centres known). Each is rotated by each angle about the
image centre and shifted by each (dx, dy), with replicated borders. Per method: how many
faces were found, the roll error against the truth (degrees; mean |error|, worst), the spread of
the roll over the transforms of one face (how far apart clips of one person would be
levelled), and the box overlap (IoU) of the crop, mapped back into the untouched image, with
the crop of the untouched image (1 = the same part of the face whatever its position).
docs/preprocessing.md quotes its output.
"""
import argparse
import os

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _init_paths  # noqa: F401,E402  (the checkout on sys.path)


def crop_quad(fb):
    """The crop's four corners in the frame the box was found on."""
    x, y, w, h = fb.box
    corners = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64)
    if not fb.angle:
        return corners
    R = cv2.getRotationMatrix2D(fb.center, fb.angle, 1.0)
    return corners @ cv2.invertAffineTransform(R)[:, :2].T + cv2.invertAffineTransform(R)[:, 2]


def iou(q1, q2):
    a1, a2 = cv2.contourArea(q1.astype(np.float32)), cv2.contourArea(q2.astype(np.float32))
    inter, _ = cv2.intersectConvexConvex(q1.astype(np.float32), q2.astype(np.float32))
    return inter / (a1 + a2 - inter)


def faces(n):
    import skimage.data
    from synthetic import draw_face
    yield "astronaut", cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), None
    for seed in range(n):
        f = draw_face(np.random.default_rng(seed))
        (lx, ly), (rx, ry) = f.points["eye_R"], f.points["eye_L"]   # image-left eye first
        yield f"synthetic {seed}", f.image, float(np.degrees(np.arctan2(ry - ly, rx - lx)))


def main(argv=None):
    from preprocessing.face import FACE_METHODS, clip_face_box, NoFaceError
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=8, help="synthetic faces (default 8)")
    ap.add_argument("--angles", default="-10,-6,-3,0,3,6,10")
    ap.add_argument("--shifts", default="0:0,-40:25,30:-20,15:35")
    args = ap.parse_args(argv)
    angles = [float(a) for a in args.angles.split(",")]
    shifts = [tuple(float(v) for v in s.split(":")) for s in args.shifts.split(",")]
    stats = {m: {"found": 0, "tried": 0, "err": [], "spread": [], "iou": []} for m in FACE_METHODS}
    for name, img, truth in faces(args.faces):
        H, W = img.shape[:2]
        ref = {m: clip_face_box(img, method=m) for m in FACE_METHODS}
        if truth is None:
            truth = float(np.mean([ref[m].angle for m in FACE_METHODS]))
        for m in FACE_METHODS:
            rolls = []
            for a in angles:
                for dx, dy in shifts:
                    T = cv2.getRotationMatrix2D((W / 2, H / 2), a, 1.0)
                    T[:, 2] += (dx, dy)
                    moved = cv2.warpAffine(img, T, (W, H), borderMode=cv2.BORDER_REPLICATE)
                    stats[m]["tried"] += 1
                    try:
                        fb = clip_face_box(moved, method=m)
                    except NoFaceError:
                        continue
                    stats[m]["found"] += 1
                    # An OpenCV rotation by a (counter-clockwise) turns the eye line by -a.
                    roll = fb.angle + a
                    rolls.append(roll)
                    stats[m]["err"].append(roll - truth)
                    back = cv2.invertAffineTransform(T)
                    q = crop_quad(fb) @ back[:, :2].T + back[:, 2]
                    stats[m]["iou"].append(iou(q, crop_quad(ref[m])))
            stats[m]["spread"].append(float(np.std(rolls)) if rolls else float("nan"))
            print(f"{name:13} {m:9} roll at rest {ref[m].angle:6.2f} (truth {truth:5.2f}), over "
                  f"{len(rolls)} transforms: roll - truth {np.mean(rolls) - truth:+.2f} "
                  f"+- {np.std(rolls):.2f}", flush=True)
    print()
    print(f"{'method':9} {'found':>9} {'mean |roll err|':>16} {'worst':>7} {'roll spread':>12} "
          f"{'IoU mean':>9} {'IoU min':>8}")
    for m in FACE_METHODS:
        s = stats[m]
        err, io = np.abs(s["err"]), np.array(s["iou"])
        print(f"{m:9} {s['found']:4d}/{s['tried']:<4d} {err.mean():16.2f} {err.max():7.2f} "
              f"{np.nanmean(s['spread']):12.2f} {io.mean():9.3f} {io.min():8.3f}")


if __name__ == "__main__":
    main()
