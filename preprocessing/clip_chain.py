"""One clip, from its frame files to the arrays the nets read (`tools/preprocess.py run` runs it
on every clip; `tools/predict.py` on one folder):

  frames (a missing, unreadable or truncated frame excludes the clip, naming the file)
  -> face on the onset frame (preprocessing.face: dlib's 68 landmarks, or Haar cascades; no
     face excludes the clip unless the user gives a box) -> every frame cut by that one box to
     112x112 RGB, registered on the onset frame (preprocessing.register)
  -> 150 frames (TIM by default, or linear) at the centres of 150 equal parts of the clip's
     duration, plus a few frames of context beyond each end (preprocessing.tim.clip_time_matrix)
     -> gray in [0, 1] -> D (12544 x (150 + context))
  -> RPCA (default lambda, a given one, or lambda per clip for a target share of non-zeros)
     -> E of the 150 (a failed solve excludes the clip, as the paper dropped 7 + 3 clips)
  -> frames 1, 11, ..., 141, 150 of the raw RGB and of E.

Options is everything that decides a clip's result; PIPELINE_VERSION is bumped when the same
options would give another result."""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from preprocessing.errors import InputError
# Imported here, not in the functions: threadpoolctl can only hold to one thread the BLAS
# libraries already loaded (scipy.linalg brings its own OpenBLAS).
from preprocessing.face import FACE_METHODS, NoFaceError, clip_face_box, crop_frame
from preprocessing.register import REGISTER_METHODS, OnsetRegistration
from preprocessing.rpca import DEFAULT_SPARSITY, RPCAError, rpca, rpca_for_sparsity
from preprocessing.tim import clip_time_matrix, apply_time_matrix
from preprocessing.hdf5_shards import CROP
from preprocessing.sampling import N_FRAMES, sample



# Bump when what a clip's cache holds would change for the same options.
# 2: cell-centred times, RPCA context at the ends, landmark faces. 3: lambda per clip predicted
# from row subsamples and stepped along the share's slope (another lambda within the target's
# tolerance than version 2's bracketing found, so another E), the eigensolver's divide and conquer.
PIPELINE_VERSION = 3


GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as cv2's RGB2GRAY


# Options' sparsity when neither it nor lam is given: DEFAULT_SPARSITY (preprocessing.rpca).
_DEFAULT = "default"


@dataclass(frozen=True)
class Options:
    """What decides a clip's result (all of it goes into the cache stamp).

    RPCA's lambda: by default chosen per clip so that E keeps DEFAULT_SPARSITY of its pixels
    non-zero; `sparsity=S` another share; `lam=L` a fixed lambda; `sparsity=None` without
    lam the fixed 1/sqrt(12544) of the first releases (rpca_choice maps the flags)."""
    interp: str = "tim"                  # 'tim' | 'linear'
    lam: Optional[float] = None          # a fixed RPCA lambda (None: 1/sqrt(12544))
    sparsity: Optional[float] = _DEFAULT  # target share of non-zeros in E (lambda per clip)
    face: str = "landmarks"              # 'landmarks' | 'haar' (preprocessing.face)
    face_box: Optional[tuple] = None     # (x, y, w, h) used when no face is found
    register: str = "ecc"                # 'ecc' | 'none': each frame on the onset (register.py)
    tol: float = 1e-7
    max_iter: int = 1000

    def __post_init__(self):
        if self.sparsity == _DEFAULT:
            object.__setattr__(self, "sparsity", None if self.lam is not None else DEFAULT_SPARSITY)
        if self.face not in FACE_METHODS:
            raise InputError(f"--face must be one of {', '.join(FACE_METHODS)}, not {self.face!r}")
        if self.register not in REGISTER_METHODS:
            raise InputError(f"--register must be one of {', '.join(REGISTER_METHODS)}, "
                             f"not {self.register!r}")
        if self.interp not in ("tim", "linear"):
            raise InputError(f"--interp must be 'tim' or 'linear', not {self.interp!r}")
        if self.lam is not None and self.sparsity is not None:
            raise InputError("give --lam or --sparsity, not both")
        if self.lam is not None and not self.lam > 0:
            raise InputError(f"--lam must be positive, got {self.lam}")
        if self.sparsity is not None and not 0 < self.sparsity < 1:
            raise InputError(f"--sparsity is a share of non-zeros in (0, 1), got {self.sparsity}")
        if not self.tol > 0 or int(self.max_iter) < 1:
            raise InputError(f"RPCA needs tol > 0 and max_iter >= 1, got {self.tol}, {self.max_iter}")

    def stamp(self):
        s = {"interp": self.interp, "face": self.face, "lam": self.lam, "sparsity": self.sparsity,
             "face_box": list(self.face_box) if self.face_box else None,
             "tol": self.tol, "max_iter": self.max_iter}
        # Unregistered clips keep the stamp they had before registration existed, so their
        # caches stay valid.
        if self.register != "none":
            s["register"] = self.register
        return s


class ClipExcluded(Exception):
    """The clip cannot be used; str(self) is the manifest's reason, stage where it failed."""

    def __init__(self, reason, stage):
        super().__init__(reason)
        self.stage = stage


def read_frame(path):
    """A frame as BGR uint8 (gray images come back with 3 equal channels).

    Decoded strictly: OpenCV decodes a truncated JPEG or PNG into a picture whose missing part
    is gray, with only a warning on stderr, so the file's end marker is checked first."""
    if not os.path.isfile(path):
        raise ClipExcluded(f"missing frame {path}", "frames")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ClipExcluded(f"unreadable frame {path} ({exc.strerror})", "frames") from None
    # The end-of-image marker may be followed by padding or appended data, so the last
    # kilobytes are searched; inside a JPEG's compressed data FF is never followed by D9.
    truncated = ((data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-4096:])
                 or (data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-1024:]))
    if truncated:
        raise ClipExcluded(f"truncated frame {path} (the file ends before its image does; copy "
                           "the file again from the database)", "frames")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise ClipExcluded(f"unreadable frame {path} (OpenCV cannot decode it; copy the file "
                           "again from the database)", "frames")
    return img


def sparse_part(gray, opts=Options(), M=None, k=None):
    """E (pixels x 150) of a clip's gray frames (F, H, W) in [0, 1], RPCA's info, notes.

    The 150 frames plus k frames of context at each end go into RPCA (preprocessing.tim:
    without the context the end frames' sensor noise lands in E); E keeps the 150.
    Raises ClipExcluded when RPCA fails.
    """
    if M is None:
        M, k = clip_time_matrix(len(gray), N_FRAMES, opts.interp)
    D = apply_time_matrix(M, gray).reshape(len(M), -1).T     # pixels x frames
    try:
        if opts.sparsity is not None:
            _, E, rinfo = rpca_for_sparsity(D, target=opts.sparsity, tol=opts.tol,
                                            max_iter=opts.max_iter)
        else:
            _, E, rinfo = rpca(D, lam=opts.lam, tol=opts.tol, max_iter=opts.max_iter)
    except RPCAError as exc:
        raise ClipExcluded(f"RPCA failed: {exc}", "rpca") from None
    E = E[:, k:k + N_FRAMES]
    rp = {"iterations": int(rinfo["iterations"]), "rank": int(rinfo["rank"]),
          "nnz_share": float(np.count_nonzero(E)) / E.size, "lam": float(rinfo["lam"]),
          "context_frames": int(k),
          "converged": bool(rinfo["converged"]), "rel_residual": float(rinfo["rel_residual"])}
    notes = []
    if "target" in rinfo:
        rp.update(target=float(rinfo["target"]), target_met=bool(rinfo["target_met"]),
                  solves=int(rinfo["solves"]))
        if not rinfo["target_met"]:
            notes.append(f"E non-zero share {rp['nnz_share']:.3f} misses the target "
                         f"{rp['target']:g} after {rp['solves']} RPCA solves")
    return E, rp, notes


# Fewer frames than this carry no onset-apex-offset: TIM would stretch 1 to 3 frames over 150
# and the nets would be trained (or asked) on a still picture. The shortest clips of the four
# databases (CAS(ME)^2 at 30 fps) have more.
MIN_FRAMES = 4


def too_few_frames(clip):
    """Why the clip has too few frames to be a clip, or None."""
    n = len(clip.frames)
    if n >= MIN_FRAMES:
        return None
    return (f"{n} frame(s) from onset to offset: a clip needs at least {MIN_FRAMES} (check the "
            "sheet's onset and offset, and that the frames are all there)")


def clip_crops(clip, opts=Options()):
    """(crops (F,112,112,3) uint8 RGB, face box, notes): every frame of the clip cut by the one
    box found on its onset frame, registered on the onset frame's crop (opts.register;
    preprocessing.register). Raises ClipExcluded (too few or unreadable frames, no face)."""
    paths = clip.frames
    if not paths:
        raise ClipExcluded("the clip has no frames", "frames")
    if too_few_frames(clip):
        raise ClipExcluded(too_few_frames(clip), "frames")
    onset = read_frame(paths[0])
    try:
        fb = clip_face_box(onset, opts.face_box, method=opts.face, where=paths[0])
    except NoFaceError as exc:
        raise ClipExcluded(str(exc), "face") from None
    # Frames are cropped as they are read: a clip's full-size frames are never all in memory.
    crops = np.empty((len(paths), CROP, CROP, 3), np.uint8)
    reg = None
    for i, path in enumerate(paths):
        img = onset if i == 0 else read_frame(path)
        if img.shape != onset.shape:
            raise ClipExcluded(f"frame {path} is {img.shape[1]}x{img.shape[0]}, the onset frame "
                               f"{paths[0]} {onset.shape[1]}x{onset.shape[0]}", "frames")
        try:
            crops[i] = crop_frame(img, fb, CROP)
            if opts.register == "ecc":
                if reg is None:
                    reg = OnsetRegistration(crops[0] @ GRAY_WEIGHTS)
                else:
                    crops[i] = crop_frame(img, fb, CROP, warp=reg.step(crops[i] @ GRAY_WEIGHTS))
        except ValueError as exc:
            raise ClipExcluded(f"face box {fb.box} ({fb.source}) does not fit {path}: {exc}",
                               "face") from None
    return crops, fb, (reg.notes() if reg is not None else [])


def clip_arrays(crops, fb, opts=Options(), register_notes=()):
    """(raw (16,112,112,3) uint8 RGB, sparse (16,112,112) float32 E, info) of a clip's crops:
    TIM to 150 frames, RPCA, the 16 sampled frames. Raises ClipExcluded when RPCA fails."""
    t0 = time.perf_counter()
    gray = (crops.astype(np.float64) @ GRAY_WEIGHTS) / 255.0
    M, k = clip_time_matrix(len(crops), N_FRAMES, opts.interp)
    raw = sample(apply_time_matrix(M[k:k + N_FRAMES], crops))
    E, rp, rnotes = sparse_part(gray, opts, M, k)
    sparse = sample(E.T.reshape(N_FRAMES, CROP, CROP)).astype(np.float32)
    raw = np.ascontiguousarray(raw)
    notes = [f"face: {n}" for n in fb.notes] + list(register_notes) + rnotes
    if (raw == raw[:1]).all():
        notes.append("the 16 sampled frames are identical: the temporal stream's input (each "
                     "frame minus the clip's mean frame, over the clip's rms) is zero, so it "
                     "sees nothing")
    if not sparse.any():
        notes.append("E is zero in every sampled frame: RPCA found no motion in the face box "
                     "(a box on a blank region, or a still clip); the spatial stream sees nothing")
    digest = hashlib.sha256(raw.tobytes() + sparse.tobytes()).hexdigest()
    info = {"included": True, "reason": "", "n_frames": len(crops), "interp": opts.interp,
            "face": {"source": fb.source, "box": list(fb.box), "angle": round(float(fb.angle), 4),
                     "notes": list(fb.notes)},
            "rpca": rp, "notes": notes, "digest": digest,
            "seconds": round(time.perf_counter() - t0, 3)}
    return raw, sparse, info


def compute_clip(clip, opts=Options()):
    """(raw (16,112,112,3) uint8 RGB, sparse (16,112,112) float32 E, info dict).

    Raises ClipExcluded with the reason when the clip cannot be used.
    """
    t0 = time.perf_counter()
    crops, fb, rnotes = clip_crops(clip, opts)
    raw, sparse, info = clip_arrays(crops, fb, opts, rnotes)
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return raw, sparse, info
