"""SMIC: no coding sheet ships with the per-clip release; the folder tree is the annotation.

    SMIC_all_raw/HS/s3/micro/negative/s3_ne_01/image076532.bmp
    = {HS|VIS|NIR}/s{N}/micro/{negative|positive|surprise}/s{N}_{ne|po|sur}_{NN}/imageNNNNNN.bmp

(the cropped release, SMIC_all_cropped/, has the same tree). Each camera is its own part:
database 'smic-hs' (100 fps), 'smic-vis' and 'smic-nir' (25 fps), whichever are present. The
three cameras filmed the same people, so a subject is 'smic/s03' in every part (`s3` and `s03`
are one subject). Onset = first frame file, offset = last (the frame number is the index in the
long recording, zero-padded to at least 6 digits: sorted by the integer). SMIC annotates no
apex: the middle frame stands in, with a note. The label is the emotion folder's word; a clip
folder under any other word is recorded as skipped. SMIC has no AU coding, so the paper's
AU-rule classes do not apply to it (preprocessing.protocols refuses it under that protocol).
"""
import os
import re
from dataclasses import replace

from preprocessing.clips import Rows, attach_frames, find_dirs, numbered_frames
from preprocessing.errors import InputError, check_root

DATABASE = "smic"
PARTS = {"hs": 100, "vis": 25, "nir": 25}          # camera -> frames per second
EMOTIONS = ("negative", "positive", "surprise")
_SUBJECT = re.compile(r"s0*(\d+)", re.IGNORECASE)


def part_name(part):
    return f"{DATABASE}-{part}"


def subject_id(folder):
    """'s3', 's03' -> 's03'; None for anything else."""
    m = _SUBJECT.fullmatch(folder)
    return "s%02d" % int(m.group(1)) if m else None


def part_dirs(root):
    """{part: folder} of the camera folders (HS, VIS, NIR) under root, holding s{N} folders."""
    def is_part(p):
        return (os.path.basename(p).lower() in PARTS and os.path.isdir(p) and
                any(subject_id(d) and os.path.isdir(os.path.join(p, d)) for d in os.listdir(p)))
    found = {}
    for d in find_dirs(root, is_part, depth=4):
        found.setdefault(os.path.basename(d).lower(), d)
    if not found:
        raise InputError(f"{root}: no SMIC camera folder (HS, VIS or NIR holding s1, s2, ...) in "
                         f"it or below. Fix: point --smic at SMIC_all_raw (or SMIC_all_cropped), "
                         f"which holds HS/s3/micro/negative/s3_ne_01/image076532.bmp ...")
    return found


def read_part(part, base, rules=None):
    """(entries, skipped, {(subject, clip): folder}) of one camera folder."""
    rows = Rows(part_name(part), rules)
    folders = {}
    for subject_dir in sorted(os.listdir(base)):
        subject = subject_id(subject_dir)
        micro = os.path.join(base, subject_dir, "micro")
        if subject is None or not os.path.isdir(micro):
            continue
        sid = f"{DATABASE}/{subject}"
        for word in sorted(os.listdir(micro)):
            word_dir = os.path.join(micro, word)
            if not os.path.isdir(word_dir):
                continue
            for clip in sorted(os.listdir(word_dir)):
                folder = os.path.join(word_dir, clip)
                if not os.path.isdir(folder):
                    continue
                if word.lower() not in EMOTIONS:
                    rows.skip(sid, clip, f"emotion folder {word!r} is not one of "
                              f"{', '.join(EMOTIONS)}", folder)
                    continue
                numbers = sorted(numbered_frames(folder)[0])
                if not numbers:
                    rows.skip(sid, clip, f"no numbered image files in {folder}", folder)
                    continue
                onset, offset = numbers[0], numbers[-1]
                middle = (onset + offset) // 2
                rows.add(sid, clip, onset, middle, offset, "", word.lower(), folder,
                         notes=(f"SMIC annotates no apex: the middle frame {middle} stands in",))
                folders[sid, clip] = folder
    # AU-less by design: the "empty AU cell" note says nothing here.
    entries = [replace(e, notes=tuple(n for n in e.notes if n != "AUs: empty AU cell"))
               for e in rows.entries]
    return entries, rows.skipped, folders


def read_sheet(root, rules=None, parts=None):
    """(entries, skipped) from the folder tree (SMIC's annotation); parts: cameras to read
    (default all present; one asked for and missing is an error)."""
    return _read(root, rules, parts)[:2]


def _read(root, rules, parts):
    found = part_dirs(check_root(root, "SMIC"))
    wanted = list(parts) if parts else sorted(found, key=list(PARTS).index)
    missing = [p for p in wanted if p not in found]
    if missing:
        raise InputError(f"{root}: no SMIC {', '.join(p.upper() for p in missing)} folder (found "
                         f"{', '.join(p.upper() for p in found)}). Fix: unpack that camera's "
                         f"frames there, or leave it out")
    entries, skipped, folders = [], [], {}
    for part in wanted:
        e, s, f = read_part(part, found[part], rules)
        entries += e
        skipped += s
        folders.update({(part_name(part),) + k: v for k, v in f.items()})
    return entries, skipped, folders


def load(root, rules=None, parts=None):
    entries, skipped, folders = _read(root, rules, parts)
    return attach_frames(entries, skipped,
                         lambda e: (folders[e.database, e.subject, e.clip], None))
