"""From the databases' clips to Caffe's HDF5 inputs (`tools/preprocess.py run`).

Per clip (in parallel, one process per core, one BLAS/OpenCV thread each):
  frames (cv2.imread; a missing or unreadable frame excludes the clip, naming the file)
  -> face on the onset frame (preprocessing.face: dlib's 68 landmarks, or Haar cascades; no
     face excludes the clip unless the user gives a box) -> every frame cut by that one box to 112x112 RGB
  -> 150 frames (TIM by default, or linear) at the centres of 150 equal parts of the clip's
     duration, plus a few frames of context beyond each end (preprocessing.tim.clip_time_matrix)
     -> gray in [0, 1] -> D (12544 x (150 + context))
  -> RPCA (default lambda, a given one, or lambda per clip for a target share of non-zeros)
     -> E of the 150 (a failed solve excludes the clip, as the paper dropped 7 + 3 clips)
  -> frames 1, 11, ..., 141, 150 of the raw RGB and of E.
Each result, or the reason for excluding the clip, is cached in
OUT/cache/<database>/<subject>/<clip>.npz with a stamp of everything that decides it (the
options, the frame files' names and sizes, PIPELINE_VERSION): a rerun reuses a matching
cache file and recomputes the rest, so an interrupted run loses at most the clips in flight.

Then, over the included clips: fold groups (preprocessing.folds), one HDF5 shard per group
and one augmented shard per group (training only; preprocessing.hdf5_shards), the fold list
files, folds.json, manifest.csv, skipped.csv and contact_sheet.png. A shard whose content
fingerprint has not changed is not rewritten. Every file is written to a temporary name and
renamed, so nothing is ever half-written. Given the same inputs, options and seed, the run
produces the same shards and manifest, whatever the number of workers.

Layout of OUT (what psn's training tool reads):
    manifest.csv, skipped.csv, folds.json, contact_sheet.png
    cache/<database>/<subject>/<clip>.npz
    shards/group01.h5, shards/group01_aug.h5, ...
    folds/fold01/train.txt, folds/fold01/test.txt, ...   (shard paths relative to OUT, one a
                                                         line; so OUT can be moved or copied)
    .lock (preprocessing.folder_lock: one writer at a time)
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional

import cv2
import numpy as np

from preprocessing.atomic import atomic_path, remove_temporaries, write_atomic
from preprocessing.augment import DEFAULT_VARIANTS, parse_variant
from preprocessing.contact_sheet import choose_clips, item_title, named_clips, write_contact_sheet
from preprocessing.folder_lock import folder_lock
from preprocessing.folds import assign_groups, check_fold_count, fold_plan, list_lines, protocol_name
from preprocessing.labels import CLASSES
from preprocessing import protocols
from preprocessing.loaders import load_databases
from preprocessing.manifest import manifest_row, read_manifest, write_manifest, write_skipped
from preprocessing.errors import InputError
# Imported here, not in the functions: threadpoolctl can only hold to one thread the BLAS
# libraries already loaded (scipy.linalg brings its own OpenBLAS).
from preprocessing.face import FACE_METHODS, NoFaceError, clip_face_box, crop_frame
from preprocessing.register import REGISTER_METHODS, OnsetRegistration
from preprocessing.rpca import DEFAULT_SPARSITY, RPCAError, rpca, rpca_for_sparsity
from preprocessing.tim import clip_time_matrix, apply_time_matrix
from preprocessing.hdf5_shards import (COMPRESSIONS, CROP, DEFAULT_COMPRESSION,
                                      STORED_FRACTION, load_clip_arrays, shard_key,
                                      shard_problem, stored_key, write_shard)
from preprocessing.sampling import N_FRAMES, N_SAMPLED, sample

__all__ = ["PIPELINE_VERSION", "DEFAULT_SPARSITY", "Options", "rpca_choice", "ClipExcluded",
           "parse_augment", "parse_face_box", "read_frame", "sparse_part", "clip_crops", "clip_arrays", "compute_clip",
           "process_clip_variants", "run_variants", "cache_path", "clip_stamp", "read_cache",
           "process_clip", "run", "summary_lines", "write_fig3"]

# Bump when what a clip's cache holds would change for the same options.
PIPELINE_VERSION = 2   # 2: cell-centred times, RPCA context at the ends, landmark faces
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
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


def rpca_choice(lam=None, sparsity=None):
    """Options' RPCA keywords from the command line's --lam and --sparsity: --lam L a fixed
    lambda (--lam default: 1/sqrt(12544)); --sparsity S lambda per clip for that share of
    non-zeros; neither: the default share (DEFAULT_SPARSITY). InputError for a bad value."""
    if lam is not None and sparsity is not None:
        raise InputError("give --lam or --sparsity, not both")
    if lam is not None:
        if str(lam).strip().lower() == "default":
            return {"lam": None, "sparsity": None}
        try:
            return {"lam": float(lam), "sparsity": None}
        except ValueError:
            raise InputError(f"--lam takes a number or 'default' (1/sqrt(12544)), got {lam!r}") from None
    return {} if sparsity is None else {"sparsity": float(sparsity)}


def parse_augment(text):
    """'none' -> (); 'flip,rot5,rot-5' -> ('flip', 'rot+5', 'rot-5'); None -> the defaults."""
    if text is None:
        return tuple(DEFAULT_VARIANTS)
    if text.strip().lower() in ("", "none"):
        return ()
    out = []
    for name in (t.strip() for t in text.split(",")):
        # 'rot5' reads as 'rot+5'.
        name = re.sub(r"rot(\d)", r"rot+\1", name)
        try:
            parse_variant(name)
        except ValueError as exc:
            raise InputError(f"--augment: {exc}") from None
        if name in out:
            raise InputError(f"--augment: {name} given twice")
        out.append(name)
    return tuple(out)


def parse_face_box(text):
    """'x,y,w,h' (pixels of the original frame) -> (x, y, w, h) ints."""
    if text is None:
        return None
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        raise InputError(f"--face-box {text!r}: give x,y,w,h in pixels with w, h > 0, e.g. 160,80,320,320")
    return box


# ----------------------------------------------------------------------------------- one clip

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


def clip_crops(clip, opts=Options()):
    """(crops (F,112,112,3) uint8 RGB, face box, notes): every frame of the clip cut by the one
    box found on its onset frame, registered on the onset frame's crop (opts.register;
    preprocessing.register). Raises ClipExcluded (unreadable frames, no face)."""
    paths = clip.frames
    if not paths:
        raise ClipExcluded("the clip has no frames", "frames")
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


def _save_cache(path, stamp, info, raw=None, sparse=None):
    arrays = {"stamp": np.array(json.dumps(stamp, sort_keys=True)),
              "info": np.array(json.dumps(info, sort_keys=True))}
    if raw is not None:
        arrays.update(raw=raw, sparse=sparse)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def read_cache(path, stamp):
    """The cached result {included, reason, info} if path holds one made with this stamp."""
    try:
        with np.load(path) as z:
            files = set(z.files)
            if json.loads(str(z["stamp"])) != stamp:
                return None
            info = json.loads(str(z["info"]))
    except Exception:  # missing, truncated, not ours: recompute
        return None
    if info.get("included") and not {"raw", "sparse"} <= files:
        return None
    return {"included": bool(info.get("included")), "reason": info.get("reason", ""),
            "info": info, "computed": False}


def process_clip(clip, cache_file, opts=Options()):
    """Compute one clip and cache the result (or its exclusion); returns {included, reason,
    info, computed: True}. Unexpected errors propagate, naming the clip."""
    return process_clip_variants(clip, [(cache_file, opts)])[0]


def process_clip_variants(clip, jobs):
    """process_clip for several RPCA settings of one clip, jobs = [(cache file, Options)]
    whose options differ only in lam / sparsity: the frames are read, the face found and the
    crops cut once (Fig. 10's sweep). Each result is what process_clip gives alone."""
    if len({(o.interp, o.face, o.face_box, o.register) for _, o in jobs}) != 1:
        raise ValueError("process_clip_variants: the options may differ in lam and sparsity only")

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
            _save_cache(cache_file, stamp, info)
            out.append({"included": False, "reason": str(exc), "info": info, "computed": True})
            continue
        info["seconds"] = round(info["seconds"] + t_front, 3)
        _save_cache(cache_file, stamp, info, raw, sparse)
        out.append({"included": True, "reason": "", "info": info, "computed": True})
    return out


# ----------------------------------------------------------------------------------- workers

def _init_worker():
    # Ctrl-C is the parent's to handle (it terminates the pool); a worker's own traceback
    # would only clutter the terminal.
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:  # the env vars set before the spawn already hold BLAS to one thread
        pass


def _clip_task(task):
    index, clip, cache_file, opts = task
    return index, process_clip(clip, cache_file, opts)


# Bytes of one shard row (16 raw RGB frames, 16 float32 E frames) before compression.
SHARD_ROW_BYTES = N_SAMPLED * CROP * CROP * (3 + 4)


def _check_free_space(folder, shard_tasks):
    """Refuse (InputError) to start writing shards that cannot fit: a disk that fills up
    halfway costs the time of the shards already written."""
    need = sum(len(items) * (len(vs) or 1) * SHARD_ROW_BYTES * STORED_FRACTION[compression]
               for _, items, vs, _, _, compression in shard_tasks)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise InputError(f"{folder}: the {len(shard_tasks)} shard(s) to write need about "
                         f"{need / 2**20:,.0f} MiB, and {free / 2**20:,.0f} MiB are free. Free some "
                         "space (or choose another --out) and run again; the clips computed so "
                         "far are kept in the cache")


def _shard_task(task):
    path, items, variants, key, group, compression = task
    return path, write_shard(path, items, variants, key, group, compression)


class _Runner:
    """Runs tasks in a spawn pool of single-threaded workers, or inline for workers == 1
    (also single-threaded, so results do not depend on the number of workers)."""

    def __init__(self, workers):
        self.workers = max(1, int(workers))
        self.pool = None

    def map(self, fn, tasks):
        tasks = list(tasks)
        if not tasks:
            return
        if self.workers == 1 or len(tasks) == 1:
            from threadpoolctl import threadpool_limits
            n_cv = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                with threadpool_limits(1):
                    for t in tasks:
                        yield fn(t)
            finally:
                cv2.setNumThreads(n_cv)
            return
        if self.pool is None:
            saved = {k: os.environ.get(k) for k in THREAD_VARS}
            os.environ.update({k: "1" for k in THREAD_VARS})
            try:
                self.pool = mp.get_context("spawn").Pool(self.workers, initializer=_init_worker)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        yield from self.pool.imap_unordered(fn, tasks)

    def close(self):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None


# ----------------------------------------------------------------------------------- the run

def _progress(total, desc, enabled):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="clip" if desc == "clips" else "shard",
                disable=not enabled or total == 0, file=sys.stderr, dynamic_ncols=True)


def _remove_stale(folder, pattern, keep):
    """Remove our own files/folders under folder that match pattern and are not in keep."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if re.fullmatch(pattern, name) and name not in keep:
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)


def run(roots, out, *, log=print, **kw):
    """The whole pipeline; returns a summary dict (also printed through `log`).

    roots: {database: folder}. Keywords: n_folds=10, loso=False, seed=0, options=Options(),
    augment (tuple of variant names; () = none; None = the defaults), workers, limit, rules,
    loader_options, progress=True, protocol, shard_compression ("none" | "gzip"). Holds OUT's
    lock (preprocessing.folder_lock) throughout: a second run into the same OUT, or into one
    that run_folds is reading, is refused.
    Raises InputError for bad input (missing folder, malformed sheet, too few clips, OUT busy).
    """
    out = os.path.abspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} exists and is not a folder")
    with folder_lock(out, "writing", log=log):
        n = remove_temporaries(out)
        if n:
            log(f"removed {n} temporary file(s) left in {out} by an interrupted run")
        return _run(roots, out, log=log, **kw)


def run_variants(roots, variants, *, log=print, workers=None, progress=True, rules=None,
                 loader_options=None, limit=None, **kw):
    """Several preprocessing outputs that differ only in RPCA's setting (Fig. 10's sweep):
    variants = [(out, Options)]. Each clip's frames are read and its face found once for all
    of them (process_clip_variants), then each out is finished by `run` from its cache.
    Returns {out: run's summary, or the InputError that stopped that out}."""
    from contextlib import ExitStack
    outs = [os.path.abspath(o) for o, _ in variants]
    if len(set(outs)) != len(outs):
        raise InputError("run_variants: two variants share one output folder")
    workers = workers or os.cpu_count() or 1
    clips, _ = protocols.apply(protocols.load_protocol(), *load_databases(roots, rules, loader_options))
    if limit is not None:
        clips = clips[:int(limit)]
    tasks = []
    with ExitStack() as locks:
        for out in outs:
            locks.enter_context(folder_lock(out, "writing", log=log))
            remove_temporaries(out)
        for clip in clips:
            jobs = [(cache_path(os.path.join(out, "cache"), clip), opts)
                    for out, (_, opts) in zip(outs, variants)]
            jobs = [(cf, o) for cf, o in jobs if read_cache(cf, clip_stamp(clip, o)) is None]
            if jobs:
                tasks.append((clip, jobs))
        log(f"{len(clips)} clips x {len(variants)} RPCA settings: {sum(len(j) for _, j in tasks)} "
            f"results to compute for {len(tasks)} clips with {min(workers, max(len(tasks), 1))} "
            "worker(s)")
        runner = _Runner(workers)
        try:
            with _progress(len(tasks), "clips", progress) as bar:
                for _ in runner.map(_variants_task, tasks):
                    bar.update(1)
        finally:
            runner.close()
    results = {}
    for out, (_, opts) in zip(outs, variants):
        try:
            results[out] = run(roots, out, log=log, options=opts, workers=workers,
                               progress=progress, rules=rules, loader_options=loader_options,
                               limit=limit, **kw)
        except InputError as exc:
            results[out] = exc
    return results


def _variants_task(task):
    clip, jobs = task
    return process_clip_variants(clip, jobs)


def _run(roots, out, *, n_folds=10, loso=False, seed=0, options=Options(), augment=None,
         workers=None, limit=None, rules=None, loader_options=None, progress=True, log=print,
         protocol=None, shard_compression=DEFAULT_COMPRESSION):
    """The pipeline's stages, in order (each a function below): load the sheets and frame
    folders, compute (or reuse) every clip, assign fold groups and write the manifest, write
    the shards, write the fold lists and folds.json, draw the contact sheet, summarise."""
    t_start = time.time()      # out: absolute, and not a file (checked by run)
    if any(ch.isspace() for ch in out):
        raise InputError(f"--out {out!r} contains whitespace; Caffe's HDF5Data cannot read shard "
                         "paths with spaces from its list files. Choose another folder.")
    variants = parse_augment(None) if augment is None else tuple(augment)
    workers = workers or os.cpu_count() or 1
    if shard_compression not in COMPRESSIONS:
        raise InputError(f"--shard-compression: {shard_compression!r} is not one of "
                         f"{', '.join(COMPRESSIONS)}")

    evaluation = protocols.load_protocol(protocol)
    if evaluation.folds == "loso":
        loso = True
    loader_options = {**evaluation.loader_options(), **(loader_options or {})}
    clips, skipped = _load_stage(roots, out, rules, loader_options, limit, n_folds, loso, log,
                                 evaluation)
    protocols.write_protocol(out, evaluation)
    runner = _Runner(workers)
    try:
        cache_files, results, t_clips = _clips_stage(clips, skipped, out, options, runner,
                                                     workers, progress, log)
        included, group_of, rows = _groups_stage(out, clips, results, n_folds, loso, seed)
        protocol = protocol_name(n_folds, loso)
        plan = fold_plan([group_of[i] for i in included], [clips[i].label for i in included],
                         [clips[i].subject for i in included], protocol, seed, len(variants))
        shards = _shards_stage(out, plan, clips, included, group_of, results, cache_files,
                               variants, shard_compression, runner, progress, log)
    finally:
        runner.close()
    plan["shard_compression"] = shard_compression
    _folds_stage(out, plan, shards, variants, options, roots)
    _contact_sheet_stage(out, rows, cache_files, evaluation.classes)

    computed = [r for r in results if r["computed"]]
    secs = [r["info"]["seconds"] for r in computed if r["included"]]
    summary = {
        "out": out, "clips": len(clips), "loader_skipped": len(skipped),
        "included": len(included), "excluded": len(clips) - len(included),
        "computed": len(computed), "cached": len(clips) - len(computed),
        "shards_written": sorted(shards["written"]), "shards_total": len(shards["keep"]),
        "per_database": _per_database(clips, results),
        "per_class": [int(c) for c in np.bincount([clips[i].label for i in included],
                                                  minlength=len(evaluation.classes))],
        "classes": list(evaluation.classes), "evaluation": evaluation.name,
        "excluded_by_stage": dict(Counter(r["info"].get("stage", "?") for r in results
                                          if not r["included"])),
        "seconds": time.time() - t_start, "seconds_clips": t_clips,
        "seconds_shards": shards["seconds"],
        "mean_clip_seconds": float(np.mean(secs)) if secs else None,
        "protocol": protocol, "n_folds": plan["n_folds"], "workers": workers,
    }
    for line in summary_lines(summary):
        log(line)
    return summary


def _load_stage(roots, out, rules, loader_options, limit, n_folds, loso, log, evaluation):
    """(clips, skipped) from the databases' sheets and frame folders, labelled and filtered by
    the evaluation protocol (preprocessing.protocols); writes skipped.csv."""
    protocols.check_roots(evaluation, roots)
    clips, skipped = protocols.apply(evaluation, *load_databases(roots, rules, loader_options))
    if limit is not None:
        clips = clips[:int(limit)]
    os.makedirs(out, exist_ok=True)
    write_skipped(os.path.join(out, "skipped.csv"), skipped)
    if not clips:
        raise InputError(f"no usable clip in {', '.join(roots.values())}; the reasons are in "
                         f"{os.path.join(out, 'skipped.csv')}")
    if not loso:
        # Before hours of computing: a split the clips' classes cannot give is refused now.
        check_fold_count([c.label for c in clips], n_folds, log)
    return clips, skipped


def _clips_stage(clips, skipped, out, options, runner, workers, progress, log):
    """(cache files, results, seconds): every clip's face, TIM, RPCA and sampled frames, from
    its cache file when that was made with the same stamp, else computed (in parallel)."""
    cache_dir = os.path.join(out, "cache")
    cache_files = [cache_path(cache_dir, c) for c in clips]
    dup = [p for p, n in Counter(cache_files).items() if n > 1]
    if dup:
        raise InputError(f"two clips map to the same cache file {dup[0]}: clip names must be "
                         "unique per subject")
    results = [None] * len(clips)
    tasks = []
    for i, (clip, cf) in enumerate(zip(clips, cache_files)):
        results[i] = read_cache(cf, clip_stamp(clip, options))
        if results[i] is None:
            tasks.append((i, clip, cf, options))
    log(f"{len(clips)} clips ({len(skipped)} skipped by the loaders); {len(clips) - len(tasks)} "
        f"cached, {len(tasks)} to compute with {min(workers, max(len(tasks), 1))} worker(s)")
    t0 = time.time()
    with _progress(len(tasks), "clips", progress) as bar:
        for i, res in runner.map(_clip_task, tasks):
            results[i] = res
            bar.update(1)
    return cache_files, results, time.time() - t0


def _groups_stage(out, clips, results, n_folds, loso, seed):
    """(included clip indices, {index: fold group}, manifest rows); writes manifest.csv, also
    when no split can be made (so that the reasons are on disk)."""
    included = [i for i, r in enumerate(results) if r["included"]]
    group_of = {}
    if included:
        try:
            groups = assign_groups([clips[i].label for i in included],
                                   [clips[i].subject for i in included], n_folds, loso, seed)
            group_of = dict(zip(included, groups.tolist()))
        except InputError:
            _write_manifest_rows(out, clips, results, {})
            raise
    rows = _write_manifest_rows(out, clips, results, group_of)
    if not included:
        raise InputError(f"no clip could be used; the reasons are in {os.path.join(out, 'manifest.csv')}")
    return included, group_of, rows


def _shards_stage(out, plan, clips, included, group_of, results, cache_files, variants,
                  compression, runner, progress, log):
    """One HDF5 shard per fold group, and one augmented per group for training; a shard whose
    key (its clips' digests, variants, group) matches and that reads back sound is kept.
    Returns {plain: {group: path}, aug: {group: path}, written, keep, seconds}."""
    shard_dir = os.path.join(out, "shards")
    plain, aug, shard_tasks, keep = {}, {}, [], set()
    for g in (e["group"] for e in plan["groups"]):
        members = [i for i in included if group_of[i] == g]
        items = [(i, clips[i].label, cache_files[i]) for i in members]
        fp = [(i, clips[i].label, results[i]["info"]["digest"]) for i in members]
        for vs, name, table in (((), f"group{g:02d}.h5", plain),
                                (variants, f"group{g:02d}_aug.h5", aug)):
            if name.endswith("_aug.h5") and not variants:
                continue
            path = os.path.join(shard_dir, name)
            table[g] = path
            keep.add(name)
            key = shard_key(fp, vs, g, compression)
            if stored_key(path) != key:
                shard_tasks.append((path, items, vs, key, g, compression))
            else:
                damaged = shard_problem(path)
                if damaged:
                    log(f"{path}: {damaged}; writing it again")
                    shard_tasks.append((path, items, vs, key, g, compression))
    os.makedirs(shard_dir, exist_ok=True)
    _check_free_space(shard_dir, shard_tasks)
    _remove_stale(shard_dir, r"group\d+(_aug)?\.h5", keep)
    written = []
    t0 = time.time()
    with _progress(len(shard_tasks), "shards", progress) as bar:
        for path, n in runner.map(_shard_task, shard_tasks):
            written.append(os.path.basename(path))
            bar.update(1)
    return {"plain": plain, "aug": aug, "written": written, "keep": keep,
            "seconds": time.time() - t0}


def _folds_stage(out, plan, shards, variants, options, roots):
    """folds/foldKK/{train,test}.txt (paths relative to OUT) and folds.json."""
    plain, aug = shards["plain"], shards["aug"]
    fold_dir = os.path.join(out, "folds")
    fold_names = set()
    for fold in plan["folds"]:
        train, test = list_lines(fold, plain, aug)
        name = f"fold{fold['fold']:02d}"
        fold_names.add(name)
        # Paths relative to OUT, so the folder can be moved or copied (run_folds resolves them).
        rel = lambda p: os.path.relpath(p, out)      # noqa: E731
        train, test = [rel(p) for p in train], [rel(p) for p in test]
        fold["train_list"] = os.path.join("folds", name, "train.txt")
        fold["test_list"] = os.path.join("folds", name, "test.txt")
        fold["train_shards"], fold["test_shards"] = train, test
        write_atomic(os.path.join(out, fold["train_list"]), "".join(p + "\n" for p in train))
        write_atomic(os.path.join(out, fold["test_list"]), "".join(p + "\n" for p in test))
    _remove_stale(fold_dir, r"fold\d+", fold_names)
    for entry in plan["groups"]:
        entry["shard"] = os.path.relpath(plain[entry["group"]], out)
        entry["aug_shard"] = os.path.relpath(aug[entry["group"]], out) if entry["group"] in aug else None
    plan.update(augment=list(variants), options=options.stamp(), pipeline_version=PIPELINE_VERSION,
                databases=sorted(roots), manifest="manifest.csv")
    write_atomic(os.path.join(out, "folds.json"), json.dumps(plan, indent=1, sort_keys=True) + "\n")


def _contact_sheet_stage(out, rows, cache_files, classes):
    """contact_sheet.png: raw frames and E of a few included clips, for a look by eye."""
    items = []
    for r in choose_clips(rows, 4):
        raw, sparse = load_clip_arrays(cache_files[int(r["index"])])
        items.append((item_title(r, classes), raw, sparse))
    write_contact_sheet(os.path.join(out, "contact_sheet.png"), items)


def write_fig3(out, names, png=None):
    """The paper's Fig. 3 for the clips named (clip names or SUBJECT/CLIP): their 16 crops and
    E side by side, from the cache of a finished run into `out`; writes png (default
    out/fig3.png) and returns its path. InputError for an unknown, ambiguous or excluded clip
    or a missing cache file."""
    manifest = os.path.join(out, "manifest.csv")
    if not os.path.isfile(manifest):
        raise InputError(f"{manifest} not found: the folder must be the --out of "
                         "`preprocess.py run`")
    try:
        rows = read_manifest(manifest)
    except ValueError as e:
        raise InputError(str(e))
    if not names:
        raise InputError("name at least one clip for Fig. 3")
    items = []
    for r in named_clips(rows, names, manifest):
        cache = cache_path(os.path.join(out, "cache"), SimpleNamespace(
            database=r["database"], subject=r["subject"], clip=r["clip"]))
        if not os.path.isfile(cache):
            raise InputError(f"{cache} not found: run `preprocess.py run` on the same --out again")
        raw, sparse = load_clip_arrays(cache)
        items.append((item_title(r), raw, sparse))
    png = png or os.path.join(out, "fig3.png")
    write_contact_sheet(png, items)
    return png


def _write_manifest_rows(out, clips, results, group_of):
    rows = [manifest_row(i, c, r, group_of.get(i)) for i, (c, r) in enumerate(zip(clips, results))]
    write_manifest(os.path.join(out, "manifest.csv"), rows)
    return [{k: str(v) for k, v in row.items()} for row in rows]


def _per_database(clips, results):
    out = {}
    for c, r in zip(clips, results):
        d = out.setdefault(c.database, {"included": 0, "excluded": 0})
        d["included" if r["included"] else "excluded"] += 1
    return out


def summary_lines(s):
    lines = [f"{'database':10s} {'included':>8s} {'excluded':>8s}"]
    for db, d in s["per_database"].items():
        lines.append(f"{db:10s} {d['included']:8d} {d['excluded']:8d}")
    lines.append(f"{'total':10s} {s['included']:8d} {s['excluded']:8d}   (+{s['loader_skipped']} "
                 "skipped by the loaders, see skipped.csv)")
    classes = s.get("classes", CLASSES)
    lines.append("included per class: " + ", ".join(f"{classes[k]} {n}" for k, n in enumerate(s["per_class"])))
    if s["excluded_by_stage"]:
        lines.append("excluded at: " + ", ".join(f"{k} {v}" for k, v in sorted(s["excluded_by_stage"].items()))
                     + " (reasons in manifest.csv)")
    per = f", {s['mean_clip_seconds']:.2f} s per clip in one worker" if s["mean_clip_seconds"] else ""
    lines.append(f"clips: {s['computed']} computed, {s['cached']} from the cache{per}; shards: "
                 f"{len(s['shards_written'])} of {s['shards_total']} written; {s['protocol']}, "
                 f"{s['n_folds']} folds")
    lines.append(f"time: {s['seconds']:.1f} s (clips {s['seconds_clips']:.1f} s, shards "
                 f"{s['seconds_shards']:.1f} s, {s['workers']} worker(s)); output in {s['out']}")
    return lines
