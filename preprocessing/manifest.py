"""manifest.csv (every clip the loaders gave, included or excluded) and skipped.csv (what the
loaders left out), plus atomic text writes for every small file of a run.

manifest.csv: one row per clip; the row number (`index`, from 0) is the clip_index stored in
the HDF5 shards. Columns:
    index, database, subject, clip, onset, apex, offset, n_frames, aus, au_set, label,
    emotion, group, included, reason, face, rpca_iterations, rpca_rank, rpca_nnz_share,
    rpca_lambda, notes, source
au_set is '+'-joined FACS numbers; group is empty for an excluded clip; face is what found the
face box (landmarks, haar or user; empty when the clip failed before); the rpca_* columns
are empty for a clip excluded before RPCA; notes are '; '-joined; source is the clip's frame
folder.
"""
from __future__ import annotations

import csv
import io
import os

from preprocessing.atomic import write_atomic
from preprocessing.sampling import apex_sample

__all__ = ["MANIFEST_COLUMNS", "SKIPPED_COLUMNS", "manifest_row",
           "write_manifest", "read_manifest", "write_skipped", "apex_of", "apex_frame"]

MANIFEST_COLUMNS = ("index", "database", "subject", "clip", "onset", "apex", "offset", "n_frames",
                    "aus", "au_set", "label", "emotion", "group", "included", "reason",
                    "face", "rpca_iterations", "rpca_rank", "rpca_nnz_share", "rpca_lambda", "notes",
                    "source")
SKIPPED_COLUMNS = ("database", "subject", "clip", "reason", "source")


def _csv_text(columns, rows):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({c: row.get(c, "") for c in columns})
    return buf.getvalue()


def manifest_row(index, clip, result, group=None):
    """One manifest row from a Clip and its per-clip result (see preprocessing.clip_cache.process_clip)."""
    info = result.get("info", {})
    rp = info.get("rpca") or {}
    notes = list(clip.notes) + list(info.get("notes", ()))
    return {
        "index": index, "database": clip.database, "subject": clip.subject, "clip": clip.clip,
        "onset": clip.onset, "apex": "" if clip.apex is None else clip.apex,
        "offset": clip.offset, "n_frames": len(clip.frames), "aus": clip.aus,
        "au_set": "+".join(str(a) for a in sorted(clip.au_set)), "label": clip.label,
        "emotion": clip.emotion,
        "group": "" if not result["included"] or not group else int(group),
        "included": 1 if result["included"] else 0, "reason": result.get("reason", ""),
        "face": (info.get("face") or {}).get("source", ""),
        "rpca_iterations": rp.get("iterations", ""), "rpca_rank": rp.get("rank", ""),
        "rpca_nnz_share": f"{rp['nnz_share']:.6f}" if "nnz_share" in rp else "",
        "rpca_lambda": f"{rp['lam']:.6g}" if "lam" in rp else "",
        "notes": "; ".join(notes),
        "source": os.path.dirname(clip.frames[0]) if clip.frames else "",
    }


def write_manifest(path, rows):
    write_atomic(path, _csv_text(MANIFEST_COLUMNS, rows))


def read_manifest(path):
    """Rows of a manifest.csv as dicts of strings, in order (row i has index i)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and tuple(rows[0].keys()) != MANIFEST_COLUMNS:
        raise ValueError(f"{path}: columns {list(rows[0].keys())} are not the manifest's "
                         f"{list(MANIFEST_COLUMNS)}; rerun `preprocess.py run`")
    return rows


def apex_of(row):
    """A manifest row's apex frame number, None where the sheet gave none (the cell is empty)."""
    text = str(row.get("apex", "")).strip()
    return int(text) if text.lstrip("-").isdigit() else None


def apex_frame(row):
    """Which of the 16 sampled frames of a manifest row's clip is nearest its apex
    (preprocessing.sampling.apex_sample; the middle one without an apex)."""
    return apex_sample(int(row["n_frames"]), int(row["onset"]), apex_of(row), int(row["offset"]))


def write_skipped(path, skipped):
    rows = [{"database": s.database, "subject": s.subject, "clip": s.clip, "reason": s.reason,
             "source": s.source} for s in skipped]
    write_atomic(path, _csv_text(SKIPPED_COLUMNS, rows))
