"""contact_sheet.png: a few clips' 16 face crops and 16 RPCA E frames, for eyeballing.

Per clip: a title bar (database, clip, class, which method found the face: landmarks, haar or
user, RPCA share of non-zeros), a row of the 16 raw
crops as the nets see them, and a row of |E| at the same frames, scaled by the 99.5th
percentile of the clip's |E| over its 16 frames (white = that value or more; one scale per clip,
so frames compare within a clip, and a few extreme pixels do not turn the rest black). A good crop is
centred on the face with the eyes level; a good E is dark with bright spots where the face
moves (mouth, brows, eyes), not a ghost of the whole face.
"""
from __future__ import annotations


import cv2
import numpy as np

from preprocessing.atomic import write_atomic
from preprocessing.errors import InputError
from preprocessing.labels import CLASSES

__all__ = ["choose_clips", "named_clips", "item_title", "render", "write_contact_sheet"]

TITLE_H = 22
GAP = 4


def named_clips(rows, names, manifest="manifest.csv"):
    """The included manifest rows of the clips the user names (a clip name, or SUBJECT/CLIP
    such as casme2/sub01/EP02_01f), in the order given. InputError naming a name that matches
    no included clip (with the reason when the clip was excluded) or several."""
    out = []
    for name in names:
        hits = [r for r in rows if name in (r["clip"], "%s/%s" % (r["subject"], r["clip"]))]
        if not hits:
            raise InputError(f"{manifest}: no clip named {name!r}; give a clip name or "
                             f"SUBJECT/CLIP as in its clip and subject columns (e.g. "
                             f"{rows[0]['subject']}/{rows[0]['clip']})" if rows else
                             f"{manifest} lists no clips")
        if len(hits) > 1:
            raise InputError(f"{manifest}: {name!r} names {len(hits)} clips "
                             f"({', '.join(r['subject'] + '/' + r['clip'] for r in hits)}); "
                             "give SUBJECT/CLIP")
        if str(hits[0]["included"]) != "1":
            raise InputError(f"{manifest}: clip {name!r} was excluded ({hits[0]['reason']}), "
                             "so it has no frames or E to show")
        out.append(hits[0])
    return out


def choose_clips(rows, n=4):
    """Manifest rows to show: the first included clip of each class, then the next included
    ones in manifest order, up to n (deterministic)."""
    included = [r for r in rows if str(r["included"]) == "1"]
    chosen, seen = [], set()
    for r in included:
        if r["label"] not in seen:
            seen.add(r["label"])
            chosen.append(r)
    for r in included:
        if len(chosen) >= n:
            break
        if r not in chosen:
            chosen.append(r)
    chosen = chosen[:n]
    return sorted(chosen, key=lambda r: int(r["index"]))


def _title(text, width):
    bar = np.full((TITLE_H, width, 3), 32, np.uint8)
    cv2.putText(bar, text, (6, TITLE_H - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)
    return bar


def render(items):
    """items: [(title, raw (16,H,W,3) uint8 RGB, sparse (16,H,W) float)] -> RGB image."""
    blocks = []
    for title, raw, sparse in items:
        raw = np.asarray(raw)
        mag = np.abs(np.asarray(sparse, np.float32))
        peak = float(np.percentile(mag, 99.5))
        if peak <= 0:
            peak = float(mag.max())
        e = (np.minimum(mag / peak, 1.0) * 255.0 if peak > 0 else mag).round().astype(np.uint8)
        row_raw = np.concatenate(list(raw), axis=1)
        row_e = np.concatenate([np.repeat(f[:, :, None], 3, axis=2) for f in e], axis=1)
        width = row_raw.shape[1]
        label = f"{title}   white: |E| >= {peak:.3g} (99.5th pct), max {float(mag.max()):.3g}"
        blocks += [_title(label, width), row_raw, row_e, np.zeros((GAP, width, 3), np.uint8)]
    return np.concatenate(blocks, axis=0)


def write_contact_sheet(path, items):
    """Render items and write a PNG atomically (tmp file + rename)."""
    img = render(items)
    ok, data = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("OpenCV could not encode the contact sheet as PNG")
    write_atomic(path, data.tobytes())
    return img.shape


def item_title(row, classes=CLASSES):
    label = int(row["label"])
    name = classes[label] if 0 <= label < len(classes) else str(label)
    share = row.get("rpca_nnz_share", "")
    share = f"  E non-zeros {float(share):.1%}" if share else ""
    face = f"  face: {row['face']}" if row.get("face") else ""
    return f"{row['database']} {row['subject']} {row['clip']}  class {label} {name}{face}{share}"
