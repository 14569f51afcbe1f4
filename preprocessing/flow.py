"""Optical flow between a clip's onset and apex frames, and its optical strain: the input of
STSTNet and OFF-ApexNet (`tools/preprocess.py run --flow`; docs/flow.md says why each choice).

Per clip:

  onset frame -> face box (the same one the clip chain finds: preprocessing.face on the
  onset frame, with the run's --face and --face-box) -> onset crop 112 x 112
  apex frame  -> the same box, registered on the onset crop (one ECC step, --register)
  both to gray in [0, 1] -> TV-L1 flow (OpenCV contrib's DualTVL1, FlowParams) at 112 x 112
  -> u, v and the strain magnitude |eps| = sqrt(e_xx^2 + e_yy^2 + 2 e_xy^2), where
     e_xx = du/dx, e_yy = dv/dy, e_xy = (du/dy + dv/dx) / 2 (central differences)
  -> each area-averaged to 28 x 28 (u and v also multiplied by 28 / 112: displacements in the
     small grid's pixels; strain is a ratio of lengths and keeps its value)

The apex is the sheet's, placed by its share of onset..offset (frame numbers need not count
the clip's images one by one). A clip without one (SMIC, a blank cell), or whose apex is its
onset (no motion to measure), takes its middle frame, with a note; an apex outside
onset..offset is clamped, with a note. Each clip's result is cached beside its clip cache file
(<clip>.flow.npz) with a stamp of what decides it and of its two frames' bytes, so a rerun
reuses it and an interrupted run loses only the clips in flight.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from preprocessing.atomic import atomic_path
from preprocessing.errors import InputError

__all__ = ["FLOW_SIZE", "FLOW_CHANNELS", "FLOW_VERSION", "FlowParams", "FLOW_SETTINGS",
           "tvl1_available", "check_tvl1", "flow_frame_indices", "tvl1_flow", "optical_strain",
           "flow_maps", "clip_flow", "flow_cache_path", "flow_stamp", "read_flow_cache",
           "process_flow", "normalise_flow"]

FLOW_SIZE = 28                        # both nets' input (STSTNet, OFF-ApexNet)
FLOW_CHANNELS = ("u", "v", "strain")
# Bump when the same parameters would give another result, or the shards store it scaled
# otherwise (normalise_flow).
FLOW_VERSION = 1


@dataclass(frozen=True)
class FlowParams:
    """DualTVL1's parameters (OpenCV's names). The defaults are OpenCV's own, which are those of
    Zach, Pock and Bischof's TV-L1 as Sanchez et al. (IPOL 2013) set them; `fine` is the second
    setting docs/flow.md compares (more scales and warps, a smaller stopping threshold)."""
    tau: float = 0.25
    lambda_: float = 0.15            # data term weight: smaller = smoother flow
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    median_filtering: int = 5

    def stamp(self):
        return {"version": FLOW_VERSION, **asdict(self)}


FLOW_SETTINGS = {"default": FlowParams(),
                 "fine": FlowParams(nscales=8, warps=10, epsilon=0.005)}


_CONTRIB_FIX = ("TV-L1 optical flow needs OpenCV's contrib modules (cv2.optflow): replace "
                "opencv-python-headless by opencv-contrib-python-headless 4.x (pip uninstall "
                "opencv-python-headless; pip install 'opencv-contrib-python-headless>=4.8,<5'; "
                "tools/build_caffe.sh does this for the project's .venv)")


def tvl1_available():
    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def check_tvl1():
    """InputError with the fix when this OpenCV has no TV-L1 (the plain wheel, not contrib)."""
    if not tvl1_available():
        raise InputError(_CONTRIB_FIX)


def flow_frame_indices(n_frames, onset, apex, offset):
    """(onset index, apex index, notes): indices into the clip's n_frames images onset..offset.
    The apex sits at its share of onset..offset; a clip without an apex, or whose apex is its
    onset, takes its middle frame; an apex outside onset..offset is clamped."""
    n_frames = int(n_frames)
    if n_frames < 2:
        raise ValueError(f"optical flow needs two frames, the clip has {n_frames}")
    notes = []
    middle = (n_frames - 1) // 2 if n_frames > 2 else 1
    if apex is None:
        notes.append(f"flow: no apex in the sheet; the middle frame ({middle} of "
                     f"0..{n_frames - 1}) stands in, as the MEGC lists do for SMIC")
        return 0, middle, notes
    if offset <= onset:
        notes.append(f"flow: offset {offset} is not after onset {onset}; the middle frame "
                     "stands in for the apex")
        return 0, middle, notes
    share = (apex - onset) / float(offset - onset)
    if not 0.0 <= share <= 1.0:
        notes.append(f"flow: apex {apex} lies outside onset..offset ({onset}..{offset}); clamped "
                     "to the nearer end")
        share = min(max(share, 0.0), 1.0)
    index = int(round(share * (n_frames - 1)))
    if index == 0:
        notes.append(f"flow: the apex ({apex}) is the onset frame, where the flow is zero by "
                     f"definition; the middle frame ({middle}) stands in")
        index = middle
    return 0, index, notes


def tvl1_flow(onset_gray, apex_gray, params=FlowParams()):
    """(u, v) float32 (H, W): TV-L1 flow from onset to apex, gray frames in [0, 1], in pixels:
    apex(p + (u, v)) ~ onset(p)."""
    check_tvl1()
    tv = cv2.optflow.DualTVL1OpticalFlow_create(
        tau=params.tau, lambda_=params.lambda_, theta=params.theta, nscales=params.nscales,
        warps=params.warps, epsilon=params.epsilon, innnerIterations=params.inner_iterations,
        outerIterations=params.outer_iterations, scaleStep=params.scale_step,
        medianFiltering=params.median_filtering)
    flow = tv.calc(np.asarray(onset_gray, np.float32), np.asarray(apex_gray, np.float32), None)
    return flow[..., 0], flow[..., 1]


def optical_strain(u, v):
    """|eps| (H, W): the magnitude of the strain tensor of the displacement field (u, v), with
    e_xy = e_yx = (du/dy + dv/dx) / 2 counted twice (Shreve et al.'s optical strain)."""
    du_dy, du_dx = np.gradient(np.asarray(u, np.float64))
    dv_dy, dv_dx = np.gradient(np.asarray(v, np.float64))
    exy = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx ** 2 + dv_dy ** 2 + 2.0 * exy ** 2).astype(np.float32)


def flow_maps(onset_gray, apex_gray, params=FlowParams(), size=FLOW_SIZE):
    """(3, size, size) float32: u, v (in the small grid's pixels) and strain, from two gray
    crops in [0, 1]."""
    u, v = tvl1_flow(onset_gray, apex_gray, params)
    strain = optical_strain(u, v)
    shrink = size / float(u.shape[1])
    small = [cv2.resize(np.ascontiguousarray(c, np.float32), (size, size), interpolation=cv2.INTER_AREA)
             for c in (u, v, strain)]
    small[0] *= shrink
    small[1] *= shrink
    return np.stack(small).astype(np.float32)


def clip_flow(clip, opts, params=FlowParams()):
    """(maps (3, 28, 28) float32, info): the clip's onset-to-apex flow and strain. Raises
    ClipExcluded (preprocessing.clip_chain) for an unreadable frame or no face."""
    from preprocessing.clip_chain import GRAY_WEIGHTS, ClipExcluded, read_frame
    from preprocessing.face import NoFaceError, clip_face_box, crop_frame
    from preprocessing.register import OnsetRegistration
    from preprocessing.sampling import CROP
    t0 = time.perf_counter()
    paths = clip.frames
    if len(paths) < 2:
        raise ClipExcluded(f"optical flow needs two frames, the clip has {len(paths)}", "frames")
    i0, i1, notes = flow_frame_indices(len(paths), clip.onset, clip.apex, clip.offset)
    onset, apex = read_frame(paths[i0]), read_frame(paths[i1])
    if apex.shape != onset.shape:
        raise ClipExcluded(f"frame {paths[i1]} is {apex.shape[1]}x{apex.shape[0]}, the onset "
                           f"frame {paths[i0]} {onset.shape[1]}x{onset.shape[0]}", "frames")
    try:
        fb = clip_face_box(onset, opts.face_box, method=opts.face, where=paths[i0])
    except NoFaceError as exc:
        raise ClipExcluded(str(exc), "face") from None
    try:
        a = crop_frame(onset, fb, CROP)
        b = crop_frame(apex, fb, CROP)
        if opts.register == "ecc":
            reg = OnsetRegistration(a @ GRAY_WEIGHTS)
            b = crop_frame(apex, fb, CROP, warp=reg.step(b @ GRAY_WEIGHTS))
            notes += reg.notes()
    except ValueError as exc:
        raise ClipExcluded(f"face box {fb.box} ({fb.source}) does not fit {paths[i1]}: {exc}",
                           "face") from None
    maps = flow_maps((a @ GRAY_WEIGHTS) / 255.0, (b @ GRAY_WEIGHTS) / 255.0, params)
    if not np.isfinite(maps).all():
        raise ClipExcluded("TV-L1 gave non-finite flow", "flow")
    if not maps[:2].any():
        notes.append("flow: zero everywhere between onset and apex (no motion found)")
    info = {"included": True, "onset_frame": os.path.basename(paths[i0]),
            "apex_frame": os.path.basename(paths[i1]), "apex_index": int(i1),
            "notes": notes, "digest": hashlib.sha256(maps.tobytes()).hexdigest(),
            "max_abs": [float(np.abs(c).max()) for c in maps],
            "seconds": round(time.perf_counter() - t0, 3)}
    return maps, info


def flow_cache_path(clip_cache_file):
    """The flow cache file beside a clip's cache file (<clip>.npz -> <clip>.flow.npz)."""
    root, _ = os.path.splitext(clip_cache_file)
    return root + ".flow.npz"


def flow_stamp(clip, opts, params=FlowParams()):
    """Everything that decides a clip's flow (compared as JSON): the face and registration
    options, the flow parameters, the sheet's frames and the two frame files' names and sizes."""
    i0, i1, _ = flow_frame_indices(len(clip.frames), clip.onset, clip.apex, clip.offset) \
        if len(clip.frames) >= 2 else (0, 0, [])
    files = []
    for i in (i0, i1):
        p = clip.frames[i] if clip.frames else ""
        try:
            size = os.path.getsize(p)
        except OSError:
            size = -1
        files.append([os.path.basename(p), size])
    from preprocessing.clip_chain import PIPELINE_VERSION
    # PIPELINE_VERSION: the face box and registration the flow starts from are the clip chain's.
    stamp = {"flow": params.stamp(), "pipeline": PIPELINE_VERSION, "face": opts.face,
             "face_box": list(opts.face_box) if opts.face_box else None,
             "register": opts.register, "onset": clip.onset, "apex": clip.apex,
             "offset": clip.offset, "n_frames": len(clip.frames), "files": files}
    return json.loads(json.dumps(stamp))


def _two_frames(clip):
    if len(clip.frames) < 2:
        return list(clip.frames)
    i0, i1, _ = flow_frame_indices(len(clip.frames), clip.onset, clip.apex, clip.offset)
    return [clip.frames[i0], clip.frames[i1]]


def read_flow_cache(path, stamp, clip):
    """{included, reason, info, maps} from a flow cache file made with this stamp from frame
    files unchanged since; None otherwise (missing, damaged, other options)."""
    from preprocessing.clip_cache import frames_unchanged
    try:
        with np.load(path) as z:
            if json.loads(str(z["stamp"])) != stamp:
                return None
            info = json.loads(str(z["info"]))
            seen = json.loads(str(z["seen"]))
            maps = z["maps"] if "maps" in z.files else None
    except Exception:  # missing, truncated, not ours: recompute
        return None
    if not frames_unchanged(_two_frames(clip), seen):
        return None
    if info.get("included"):
        if maps is None or maps.shape != (len(FLOW_CHANNELS), FLOW_SIZE, FLOW_SIZE) \
                or hashlib.sha256(maps.astype(np.float32).tobytes()).hexdigest() != info.get("digest"):
            return None
    return {"included": bool(info.get("included")), "reason": info.get("reason", ""),
            "info": info, "maps": maps, "computed": False}


def process_flow(clip, cache_file, opts, params=FlowParams()):
    """Compute one clip's flow and cache it (or why it has none) in flow_cache_path(cache_file);
    returns read_flow_cache's dict with computed True."""
    from preprocessing.clip_cache import frames_seen
    from preprocessing.clip_chain import ClipExcluded
    path = flow_cache_path(cache_file)
    stamp = flow_stamp(clip, opts, params)
    seen = frames_seen(_two_frames(clip))
    arrays = {}
    try:
        maps, info = clip_flow(clip, opts, params)
        arrays["maps"] = maps
    except ClipExcluded as exc:
        maps, info = None, {"included": False, "reason": str(exc), "stage": exc.stage}
    except Exception as exc:
        raise RuntimeError(f"{clip.database} {clip.subject} {clip.clip} (flow): "
                           f"{type(exc).__name__}: {exc}") from exc
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, stamp=np.array(json.dumps(stamp, sort_keys=True)),
                            info=np.array(json.dumps(info, sort_keys=True)),
                            seen=np.array(json.dumps(seen)), **arrays)
    return {"included": bool(info["included"]), "reason": info.get("reason", ""), "info": info,
            "maps": maps, "computed": True}


def normalise_flow(maps):
    """What the nets read: each channel divided by its largest magnitude in the clip (so each
    lies in [-1, 1] with zero flow at 0, and the strain in [0, 1]); a channel that is zero
    everywhere stays zero."""
    maps = np.asarray(maps, np.float32)
    peak = np.abs(maps).reshape(len(maps), -1).max(axis=1)
    scale = np.where(peak > 0, 1.0 / np.where(peak > 0, peak, 1.0), 0.0).astype(np.float32)
    return maps * scale[:, None, None]
