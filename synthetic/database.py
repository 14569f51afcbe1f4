"""Writing a whole synthetic database (atomically, once per parameters) and its command."""
import argparse
import json
import os
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from preprocessing.errors import fail
from preprocessing.labels import CLASSES
from synthetic.clips import (clip_nuisances, detectable, encode_jpeg, jpeg_roundtrip, NoiseBank,
                             transform_face, plan_database, render_frames)
from synthetic.constants import (FPS, GENERATOR_VERSION, HEIGHT, NO_NUISANCES, NUISANCES,
                                 STAMP_NAME, WIDTH)
from synthetic.faces import draw_face
from synthetic.formats import (casme_sheets, clip_dir, FORMATS, frame_name, FRAMES_DIR,
                               samm_sheet, sheet_bytes, SHEET_NAME, SMIC_DIR, writes)

def _encode(frame, quality, fmt):
    """The frame as the format's owners store it: JPEG (CASME, CASME II), grayscale JPEG
    (SAMM), 8-bit grayscale BMP (SMIC, whose uncompressed frames would otherwise take 0.9 MB
    each)."""
    if fmt in ("samm", "smic"):
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if fmt == "smic":
        ok, buf = cv2.imencode(".bmp", frame)
        if not ok:
            raise RuntimeError("OpenCV could not encode a BMP")
        return buf
    return encode_jpeg(frame, quality)


def _write_clip(root, face, plan, noise, quality, fmt="casme2", n_subjects=None,
                nuisances=None):
    if not writes(plan, fmt):
        return 0, 0
    d = clip_dir(root, plan, fmt, n_subjects)
    os.makedirs(d, exist_ok=True)
    nbytes = frames = 0
    for number, frame in render_frames(face, plan, noise, quality, nuisances=nuisances):
        if fmt == "smic":
            if number % 2:          # SMIC-HS: 100 fps, every second frame of 200
                continue
            number //= 2
        buf = _encode(frame, quality, fmt)
        with open(os.path.join(d, frame_name(plan, number, fmt, n_subjects)), "wb") as f:
            f.write(buf.tobytes())
        nbytes += buf.size
        frames += 1
    return frames, nbytes




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
            img = np.clip(transform_face(face, M).image + noise, 0, 255).astype(np.uint8)
            if not detectable(jpeg_roundtrip(img, quality)):
                break
        else:
            return face
    raise RuntimeError(f"no detectable face drawn for subject {subject} (seed {seed}) in 50 tries")


def _params(n_subjects, clips_per_subject, seed, quality, fmt="casme2", nuisances=None):
    params = {"generator_version": GENERATOR_VERSION, "n_subjects": int(n_subjects),
              "clips_per_subject": int(clips_per_subject), "seed": int(seed),
              "quality": int(quality), "width": WIDTH, "height": HEIGHT, "fps": FPS}
    if fmt != "casme2":     # CASME II databases written before formats existed stay valid
        params["format"] = fmt
    if nuisances and any(nuisances.values()):     # and so do those written before nuisances existed
        params["nuisances"] = {k: float(v) for k, v in sorted(nuisances.items())}
    return params


def nuisance_table(out_dir):
    """{(subject number, sheet filename): clip_nuisances' dict} for every clip of the database
    in out_dir, recomputed from its stamp's parameters (the frames are not read): which clips
    hold a blink and how far each head drifts, to split results by them."""
    stamp_path = os.path.join(out_dir, STAMP_NAME)
    try:
        with open(stamp_path) as f:
            params = json.load(f)["params"]
    except (OSError, ValueError, KeyError):
        raise ValueError(f"{stamp_path}: no readable stamp; {out_dir} is not a synthetic database "
                         "made by tools/make_synthetic.py") from None
    if params.get("generator_version") != GENERATOR_VERSION:
        raise ValueError(f"{out_dir} was made by generator version {params.get('generator_version')}, "
                         f"this is {GENERATOR_VERSION}: make it again")
    seed, quality = params["seed"], params["quality"]
    plans = plan_database(params["n_subjects"], params["clips_per_subject"], seed)
    noise = NoiseBank(seed)
    faces = {s: subject_face(seed, s, quality) for s in sorted({p.subject for p in plans})}
    return {(p.subject, p.filename): clip_nuisances(faces[p.subject], p, noise, quality,
                                                    params.get("nuisances"))
            for p in plans if writes(p, params.get("format", "casme2"))}


def check_nuisances(nuisances):
    """The nuisance sizes, every key of NUISANCES given (missing ones 0), or ValueError."""
    nuisances = dict(nuisances or {})
    unknown = sorted(set(nuisances) - set(NO_NUISANCES))
    if unknown:
        raise ValueError("unknown nuisances %s (known: %s)" % (unknown, ", ".join(NO_NUISANCES)))
    out = dict(NO_NUISANCES, **{k: float(v) for k, v in nuisances.items()})
    if not 0 <= out["blink"] <= 1:
        raise ValueError("blink is the share of clips with a blink: 0..1, got %g" % out["blink"])
    for k in ("drift_px", "drift_deg", "flicker"):
        if not 0 <= out[k] <= 50:
            raise ValueError("%s must be in 0..50, got %g" % (k, out[k]))
    return out


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
             progress=False, force=False, fmt="casme2", nuisances=NUISANCES):
    """Write a synthetic CASME II-format (fmt 'casme': CASME-format) database to out_dir;
    returns a summary dict.

    The database is built in a temporary sibling folder and renamed into place at the end, so
    out_dir never holds half a database. If out_dir already holds a database generated with
    the same parameters (its stamp file says so), nothing is written (summary['skipped']).
    A folder that exists but is not one of ours is never overwritten. `nuisances` (sizes by
    constants.NUISANCES' keys; None or zeros: none) carry no class."""
    t0 = time.time()
    out_dir = os.path.abspath(out_dir)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    nuisances = check_nuisances(nuisances)
    params = _params(n_subjects, clips_per_subject, seed, quality, fmt, nuisances)
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
        sheets = {"casme": lambda: casme_sheets(plans, n_subjects),
                  "samm": lambda: samm_sheet(plans),
                  "smic": dict}.get(fmt, lambda: {SHEET_NAME: sheet_bytes(plans)})()
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
                                   n_subjects, nuisances) for p in plans]
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
        written = [p for p in plans if writes(p, fmt)]
        counts = np.bincount([p.label for p in written], minlength=4)
        summary = {"subjects": len(subjects), "clips": len(written), "frames": frames,
                   "jpeg_bytes": nbytes, "format": fmt,
                   "sheet": sorted(sheets)[0] if sheets else None,
                   "frames_dir": {"casme2": FRAMES_DIR, "casme": "CASME_A, CASME_B",
                                  "samm": "SAMM", "smic": SMIC_DIR}[fmt],
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
    ap.add_argument("--blink", type=float, default=NUISANCES["blink"],
                    help="share of clips with an eye blink, 0..1 (default: %(default)s)")
    ap.add_argument("--drift-px", type=float, default=NUISANCES["drift_px"],
                    help="largest slow head drift over a clip, pixels (default: %(default)s)")
    ap.add_argument("--drift-deg", type=float, default=NUISANCES["drift_deg"],
                    help="largest slow head roll over a clip, degrees (default: %(default)s)")
    ap.add_argument("--flicker", type=float, default=NUISANCES["flicker"],
                    help="brightness flicker, +- gray levels per frame (default: %(default)s)")
    ap.add_argument("--no-nuisances", action="store_true",
                    help="no blinks, drift or flicker (the databases made before they existed)")
    args = ap.parse_args(argv)
    nuisances = (NO_NUISANCES if args.no_nuisances else
                 {"blink": args.blink, "drift_px": args.drift_px, "drift_deg": args.drift_deg,
                  "flicker": args.flicker})
    try:
        s = generate(args.out, args.subjects, args.clips_per_subject, args.seed, args.quality,
                     workers=args.workers, progress=True, force=args.force, fmt=args.format,
                     nuisances=nuisances)
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
