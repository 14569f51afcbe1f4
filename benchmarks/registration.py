"""How well does each frame's registration on the onset frame undo a head movement? Prints a table.

    python benchmarks/registration.py [--faces 8] [--drifts 0,1,2,4,8] [--rolls 0,1,2]

Faces: the scikit-image astronaut photograph (a real face) and synthetic faces of the
synthetic package. Each is moved as a head drifts (a shift of each size in pixels of the full
frame, in a random direction, and a roll about the face's centre), with sensor noise (2 gray
levels), a brightness flicker (up to 6 gray levels and 3 % gain) and, on the synthetic faces, in
every other trial both eyes shut (a blink, the largest local change a clip holds). The moved
frame is registered on the untouched one (preprocessing.register, as the pipeline does it) and
the warp found is compared with the true one on the crop's inner 80 % (error = how far a crop
pixel lands from where the movement took it, in pixels of the 112 x 112 crop). Also: the mean
absolute gray-level difference to the onset crop before and after (the flicker's offset taken
out; the blink and the noise stay), and the time per frame.
docs/preprocessing.md quotes its output.
"""
import argparse
import os
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _init_paths  # noqa: F401,E402  (the checkout on sys.path)
CROP = 112


def faces(n):
    import skimage.data
    from preprocessing.face import clip_face_box
    from synthetic import draw_face
    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    yield "astronaut", img, None, clip_face_box(img, method="haar")
    for seed in range(n):
        f = draw_face(np.random.default_rng(seed))
        yield f"synthetic {seed}", f.image, f, clip_face_box(f.image, method="haar")


def crop_matrix(fb):
    """3x3: full-frame pixels -> crop pixels (face.crop_frame's rotation, cut and resize)."""
    M = cv2.getRotationMatrix2D(tuple(map(float, fb.center)), float(fb.angle), 1.0) \
        if fb.angle else np.eye(2, 3)
    M = np.vstack([M, [0, 0, 1]])
    M[0, 2] -= fb.x
    M[1, 2] -= fb.y
    return np.diag([CROP / fb.w, CROP / fb.h, 1.0]) @ M


def main(argv=None):
    from preprocessing.face import crop_frame
    from preprocessing.clip_chain import GRAY_WEIGHTS
    from preprocessing.register import OnsetRegistration
    from synthetic.clips import close_eyes
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=8, help="synthetic faces (default 8)")
    ap.add_argument("--drifts", default="0,1,2,4,8", help="shifts, pixels of the full frame")
    ap.add_argument("--rolls", default="0,1,2", help="rolls, degrees")
    args = ap.parse_args(argv)
    drifts = [float(v) for v in args.drifts.split(",")]
    rolls = [float(v) for v in args.rolls.split(",")]
    rng = np.random.default_rng(0)
    g = np.linspace(0.1 * CROP, 0.9 * CROP, 9)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    grid_h = np.hstack([grid, np.ones((len(grid), 1))])
    rows = {}
    for name, image, face, fb in faces(args.faces):
        C = crop_matrix(fb)
        onset = crop_frame(image, fb, CROP)
        reg_template = onset @ GRAY_WEIGHTS
        for trial, (d, r) in enumerate((d, r) for d in drifts for r in rolls):
            angle = rng.uniform(0, 2 * np.pi)
            c = face.points["centre"] if face else (fb.x + fb.w / 2, fb.y + fb.h / 2)
            M = np.vstack([cv2.getRotationMatrix2D(tuple(map(float, c)), r, 1.0), [0, 0, 1]])
            M[:2, 2] += d * np.array([np.cos(angle), np.sin(angle)])
            src = close_eyes(image, face, 1.0) if face is not None and trial % 2 else image
            moved = cv2.warpAffine(src, M[:2], (image.shape[1], image.shape[0]),
                                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
            moved = cv2.convertScaleAbs(moved, alpha=1 + rng.uniform(-0.03, 0.03),
                                        beta=rng.uniform(-6, 6))
            noise = np.round(rng.standard_normal(moved.shape) * 2)
            moved = np.clip(moved + noise, 0, 255).astype(np.uint8)
            plain = crop_frame(moved, fb, CROP)
            t0 = time.perf_counter()
            W = OnsetRegistration(reg_template).step(plain @ GRAY_WEIGHTS)
            again = crop_frame(moved, fb, CROP, warp=W)
            dt = time.perf_counter() - t0
            truth = C @ M @ np.linalg.inv(C)       # onset crop pixel -> moved crop pixel
            err = np.hypot(*((grid_h @ truth[:2].T) - (grid_h @ W.T)).T)
            inner = slice(12, -12)

            def diff(a):
                # The flicker's offset taken out: what is left is movement, blink and noise.
                d = (a @ GRAY_WEIGHTS - reg_template)[inner, inner]
                return float(np.abs(d - np.median(d)).mean())
            rows.setdefault((d, r), []).append((err.mean(), err.max(), diff(plain), diff(again), dt))
    print("| drift (px of the frame) | roll (°) | trials | warp error mean / worst (crop px) | "
          "|Δ| to the onset crop before → after (gray levels) | ms per frame |")
    print("|---|---|---|---|---|---|")
    for (d, r), v in sorted(rows.items()):
        a = np.array(v)
        print("| %g | %g | %d | %.3f / %.3f | %.2f → %.2f | %.1f |" % (
            d, r, len(a), a[:, 0].mean(), a[:, 1].max(), a[:, 2].mean(), a[:, 3].mean(),
            1000 * a[:, 4].mean()))


if __name__ == "__main__":
    main()
