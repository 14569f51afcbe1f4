"""Each frame of a clip registered on its onset frame before TIM and RPCA.

The face box is found once, on the onset frame; a head that drifts or rolls during the clip
then moves the whole face inside that box. Even a drift of a few pixels over a clip is as
large as an AU's movement (3-5 px at 112 x 112), and it moves every edge of the face (eyes,
brows, mouth, the outline), so RPCA's E, which keeps the clip's largest changes, fills with
the moving outline instead of the AU, and the temporal stream sees the drift as the clip's
largest motion. The paper's first preprocessing step is "face segmentation and alignment";
this is the alignment, done per frame.

How: a rigid (Euclidean: shift and roll) warp per frame found by OpenCV's ECC
(cv2.findTransformECC, Evangelidis & Psarakis 2008), maximising the enhanced correlation
coefficient between the frame's crop and the onset frame's crop. ECC is invariant to a change
of brightness and contrast, so a flicker of the lights does not pull it; a rigid warp cannot
follow an AU or a blink, which are local, so these stay in the frames. Each frame is then cut
again from the full frame with its warp folded into the crop (face.crop_frame's `warp`), so a
shift brings in the frame's real pixels, not a replicated border. The search starts from the
previous frame's warp (a drift is slow); a frame where ECC does not converge, or finds a warp
larger than MAX_SHIFT / MAX_ROLL (an occlusion, a cut in the video), keeps the previous
frame's warp and the clip gets a note.
"""
import math

import cv2
import numpy as np

__all__ = ["REGISTER_METHODS", "MAX_SHIFT", "MAX_ROLL", "OnsetRegistration", "ecc_warps", "warp_size"]

REGISTER_METHODS = ("ecc", "none")
# Beyond these a warp is taken for a failure, not a head movement within one clip: a fifth of
# the crop, and a roll larger than any head roll within a micro-expression clip.
MAX_SHIFT = 0.2      # of the crop's side
MAX_ROLL = 10.0      # degrees
_ITERATIONS = 100
_EPS = 1e-5
_BLUR = 5            # ECC's Gaussian pre-filter (pixels): sensor noise does not pull the warp


def warp_size(W):
    """(shift in pixels, roll in degrees) of a 2x3 Euclidean warp."""
    return float(math.hypot(W[0, 2], W[1, 2])), float(abs(math.degrees(math.atan2(W[1, 0], W[0, 0]))))


class OnsetRegistration:
    """Frames registered one after another on the onset frame's crop (template).

    step(gray) takes the next frame's crop cut by the onset box, in gray levels (S x S), and
    returns its 2x3 Euclidean warp W (crop pixels) with crop(W p) ~ template(p). A flat
    template (nothing to register on) gives identities and a note."""

    def __init__(self, template):
        self.template = np.asarray(template, np.float32)
        self.flat = float(self.template.std()) < 1.0
        self.previous = np.eye(2, 3, dtype=np.float32)
        self.count = 0
        self.kept = []

    def step(self, gray):
        self.count += 1
        if self.flat:
            return self.previous
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, _ITERATIONS, _EPS)
        try:
            _, W = cv2.findTransformECC(self.template, np.asarray(gray, np.float32),
                                        self.previous.copy(), cv2.MOTION_EUCLIDEAN,
                                        criteria, None, _BLUR)
            shift, roll = warp_size(W)
            ok = bool(np.isfinite(W).all()) and shift <= MAX_SHIFT * len(self.template) \
                and roll <= MAX_ROLL
        except cv2.error:
            ok = False
        if ok:
            self.previous = W
        else:
            self.kept.append(self.count)
        return self.previous

    def notes(self):
        if self.flat:
            return ["registration: the onset frame's crop is flat (std < 1 gray level), so the "
                    "frames were not registered"]
        if not self.kept:
            return []
        shown = ", ".join(str(i) for i in self.kept[:8]) + (" ..." if len(self.kept) > 8 else "")
        return [f"registration: ECC found no plausible warp for {len(self.kept)} of {self.count} "
                f"frames ({shown}, the onset counted as 0); each kept the previous frame's"]


def ecc_warps(gray):
    """(warps (F, 2, 3), notes) of a clip's crops (F, S, S) in gray levels, frame 0 the
    template: OnsetRegistration over the whole clip."""
    gray = np.asarray(gray, np.float32)
    reg = OnsetRegistration(gray[0])
    warps = [reg.previous] + [reg.step(g) for g in gray[1:]]
    return np.stack(warps), reg.notes()
