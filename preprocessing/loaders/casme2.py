"""CASME II: `CASME2-coding-*.xlsx` and the frame trees CASME2-RAW (whole clips from img1),
CASME2_RAW_selected (onset..offset only) or, when asked, Cropped (reg_img46.jpg). In all three
the file number is the absolute frame number, so onset..offset picks the same frames."""
import os
import re

from preprocessing.clips import Rows, attach_frames, find_dirs
from preprocessing.errors import InputError, check_root
from preprocessing.sheets import find_sheet, to_int

DATABASE = "casme2"
SHEETS = ("CASME2-coding-*.xlsx", "CASME2-coding-*.xls", "CASME2_label*.xls*", "CASME2*.xls*")
COLUMNS = {
    "subject": ("Subject",),
    "clip": ("Filename",),
    "onset": ("OnsetFrame", "Onset Frame", "Onset"),
    "apex": ("ApexFrame", "Apex Frame", "Apex"),
    "offset": ("OffsetFrame", "Offset Frame", "Offset"),
    "aus": ("Action Units", "AU", "AUs"),
    "emotion": ("Estimated Emotion", "Emotion"),
}
TREES = {"raw": "CASME2-RAW", "selected": "CASME2_RAW_selected", "cropped": "Cropped"}


def subject_folder(value, template="sub{:02d}"):
    """Sheet subject 1 (or '1', 'sub01') -> folder 'sub01'; None if unreadable."""
    number, ok = to_int(value)
    if number is None and isinstance(value, str):
        m = re.fullmatch(r"sub0*(\d+)", value.strip(), re.IGNORECASE)
        number = int(m.group(1)) if m else None
    return template.format(number) if number is not None else None


def sheet_path(root):
    return find_sheet(root, "CASME II", SHEETS, "CASME2-coding-20140508.xlsx")


def read_sheet(root, rules=None):
    """(entries, skipped) from the coding sheet alone."""
    return Rows(DATABASE, rules).add_table(sheet_path(root), COLUMNS, subject_folder)


def frame_tree(root, tree="auto"):
    """The frame tree folder: CASME2-RAW, else CASME2_RAW_selected ('auto'), or the one named."""
    names = [TREES["raw"], TREES["selected"]] if tree == "auto" else [TREES[tree]]
    for name in names:
        found = find_dirs(root, lambda p: os.path.basename(p).lower() == name.lower())
        if found:
            return found[0]
    raise InputError(f"{root}: no {' or '.join(names)} folder in it or below. Fix: unpack the CASME II "
                     f"frames there (CASME2-RAW/sub01/EP02_01f/img1.jpg ...).")


def load(root, rules=None, tree="auto"):
    """(clips, skipped); tree = 'auto' | 'raw' | 'selected' | 'cropped'."""
    if tree != "auto" and tree not in TREES:
        raise ValueError(f"tree must be 'auto' or one of {sorted(TREES)}, not {tree!r}")
    entries, skipped = read_sheet(root, rules)
    base = frame_tree(check_root(root, "CASME II"), tree)
    return attach_frames(entries, skipped,
                         lambda e: (os.path.join(base, e.subject.split("/", 1)[1], e.clip), None))
