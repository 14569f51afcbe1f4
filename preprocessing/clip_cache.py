"""The clip cache: each clip's result, or the reason it was excluded, in
DATA/cache/<database>/<subject>/<clip>.npz with a stamp of everything that decides it (the
options, the frame files' names and sizes, PIPELINE_VERSION) and of the frames' contents. A
rerun reuses a matching file and recomputes the rest, so an interrupted run loses at most the
clips in flight.

Frame contents: names and sizes alone missed frames replaced by others of the same size (a
BMP and its mirror image). Each frame's modification time (ns) and a BLAKE2b hash of its bytes
are kept beside the stamp; a frame whose time still matches is trusted, one whose time differs
is hashed again and the clip recomputed only if its bytes changed, so a database copied or
moved elsewhere (new times, same bytes) is still all cached. The cost is one read of each
frame when a clip is computed, and on a rerun only for frames whose time changed
(benchmarks/bench_frame_hash.py measures it)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import time

import numpy as np

from preprocessing.atomic import atomic_path
from preprocessing.clip_chain import (PIPELINE_VERSION, ClipExcluded, Options, clip_arrays,
                                      clip_crops)



def cache_path(cache_dir, clip):
    """cache_dir/<database>/<subject without the database prefix>/<clip>.npz"""
    subject = clip.subject.split("/", 1)[1] if clip.subject.startswith(clip.database + "/") else clip.subject
    safe = lambda s: re.sub(r"[^A-Za-z0-9._+-]", "_", str(s))  # noqa: E731
    return os.path.join(cache_dir, safe(clip.database), safe(subject), safe(clip.clip) + ".npz")


def clip_stamp(clip, opts):
    """Everything that decides a clip's cached result (compared as JSON)."""
    frames = []
    for p in clip.frames:
        try:
            size = os.path.getsize(p)
        except OSError:
            size = -1
        frames.append([os.path.basename(p), size])
    stamp = {"version": PIPELINE_VERSION, "options": opts.stamp(), "onset": clip.onset,
             "offset": clip.offset, "frames": frames}
    return json.loads(json.dumps(stamp))


def frame_hash(path):
    """BLAKE2b (128 bits) of a frame file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def frames_seen(paths):
    """[[mtime_ns, hash]] of each frame file, [-1, ""] for one that cannot be read."""
    seen = []
    for p in paths:
        try:
            mtime = os.stat(p).st_mtime_ns
            seen.append([mtime, frame_hash(p)])
        except OSError:
            seen.append([-1, ""])
    return seen


def frames_unchanged(paths, seen):
    """Whether every frame still holds the bytes `seen` recorded: trusted where its time is the
    recorded one, hashed again where not."""
    if not isinstance(seen, list) or len(seen) != len(paths):
        return False
    for p, (mtime, digest) in zip(paths, seen):
        try:
            if os.stat(p).st_mtime_ns == mtime:
                continue
            if frame_hash(p) != digest:
                return False
        except OSError:
            return False
    return True


def _save_cache(path, stamp, info, seen, raw=None, sparse=None):
    arrays = {"stamp": np.array(json.dumps(stamp, sort_keys=True)),
              "info": np.array(json.dumps(info, sort_keys=True)),
              "seen": np.array(json.dumps(seen))}
    if raw is not None:
        arrays.update(raw=raw, sparse=sparse)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def read_cache(path, stamp, frames):
    """The cached result {included, reason, info} if path holds one made with this stamp from
    frame files (paths) whose contents have not changed since."""
    try:
        with np.load(path) as z:
            files = set(z.files)
            if json.loads(str(z["stamp"])) != stamp or "seen" not in files:
                return None
            info = json.loads(str(z["info"]))
            seen = json.loads(str(z["seen"]))
    except Exception:  # missing, truncated, not ours: recompute
        return None
    if not frames_unchanged(list(frames), seen):
        return None
    if info.get("included") and not {"raw", "sparse"} <= files:
        return None
    return {"included": bool(info.get("included")), "reason": info.get("reason", ""),
            "info": info, "computed": False}


def process_clip(clip, cache_file, opts=Options()):
    """Compute one clip and cache the result (or its exclusion); returns {included, reason,
    info, computed: True}. Unexpected errors propagate, naming the clip."""
    return process_clip_rpca_settings(clip, [(cache_file, opts)])[0]


def process_clip_rpca_settings(clip, jobs):
    """process_clip for several RPCA settings of one clip, jobs = [(cache file, Options)]
    whose options differ only in lam / sparsity: the frames are read, the face found and the
    crops cut once (Fig. 10's sweep). Each result is what process_clip gives alone."""
    if len({(o.interp, o.face, o.face_box, o.register) for _, o in jobs}) != 1:
        raise ValueError("process_clip_rpca_settings: the options may differ in lam and sparsity only")

    def compute(step, *args):
        try:
            return step(*args)
        except ClipExcluded:
            raise
        except Exception as exc:
            raise RuntimeError(f"{clip.database} {clip.subject} {clip.clip} "
                               f"({clip.frames[0] if clip.frames else ''}): "
                               f"{type(exc).__name__}: {exc}") from exc

    t0 = time.perf_counter()
    # Before the frames are read: a frame changed while the clip is computed is then found
    # changed on the next run.
    seen = frames_seen(clip.frames)
    try:
        front, excluded = compute(clip_crops, clip, jobs[0][1]), None
    except ClipExcluded as exc:
        front, excluded = None, exc
    t_front = time.perf_counter() - t0
    out = []
    for cache_file, opts in jobs:
        stamp = clip_stamp(clip, opts)
        try:
            if excluded is not None:
                raise excluded
            crops, fb, register_notes = front
            raw, sparse, info = compute(clip_arrays, crops, fb, opts, register_notes)
        except ClipExcluded as exc:
            info = {"included": False, "reason": str(exc), "stage": exc.stage}
            _save_cache(cache_file, stamp, info, seen)
            out.append({"included": False, "reason": str(exc), "info": info, "computed": True})
            continue
        info["seconds"] = round(info["seconds"] + t_front, 3)
        _save_cache(cache_file, stamp, info, seen, raw, sparse)
        out.append({"included": True, "reason": "", "info": info, "computed": True})
    return out
