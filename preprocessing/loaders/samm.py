"""SAMM: `SAMM_Micro_FACS_Codes_v2.xlsx` (a preamble, then the header row starting `Subject`)
and frames `006/006_1_2/006_05562.jpg`, file number = absolute frame (first file = onset)."""
import os
import re

from preprocessing.clips import Rows, attach_frames, find_dirs
from preprocessing.errors import InputError, check_root
from preprocessing.sheets import find_sheet, to_int

DATABASE = "samm"
SHEETS = ("SAMM_Micro_FACS_Codes*.xlsx", "SAMM*Micro*FACS*.xls*", "SAMM*.xlsx")
COLUMNS = {
    "subject": ("Subject",),
    "clip": ("Filename",),
    "onset": ("Onset Frame", "OnsetFrame", "Onset"),
    "apex": ("Apex Frame", "ApexFrame", "Apex"),
    "offset": ("Offset Frame", "OffsetFrame", "Offset"),
    "aus": ("Action Units", "AU", "AUs"),
    "emotion": ("Estimated Emotion", "Emotion"),
}


def _subject_dir(path):
    return re.fullmatch(r"\d{3}", os.path.basename(path)) is not None


def sheet_path(root):
    return find_sheet(root, "SAMM", SHEETS, "SAMM_Micro_FACS_Codes_v2.xlsx")


def subject_folder(value):
    """Sheet subject 6 (or '006') -> folder '006'; None if unreadable."""
    number, _ = to_int(value)
    return None if number is None else f"{number:03d}"


def read_sheet(root, rules=None):
    return Rows(DATABASE, rules).add_table(sheet_path(root), COLUMNS, subject_folder)


def frame_tree(root):
    """The folder holding the 3-digit subject folders (SAMM/ in the shipped copy)."""
    found = find_dirs(root, lambda p: os.path.isdir(p) and any(
        _subject_dir(os.path.join(p, d)) and os.path.isdir(os.path.join(p, d)) for d in os.listdir(p)))
    if not found:
        raise InputError(f"{root}: no folder of SAMM subject folders (006/006_1_2/006_05562.jpg ...) "
                         f"in it or below. Fix: unpack the SAMM frames there.")
    return found[0]


def load(root, rules=None):
    entries, skipped = read_sheet(root, rules)
    base = frame_tree(check_root(root, "SAMM"))
    return attach_frames(entries, skipped,
                         lambda e: (os.path.join(base, e.subject.split("/", 1)[1], e.clip), None))
