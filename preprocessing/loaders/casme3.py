"""CAS(ME)^3, part A (30 fps, labelled): the v2 label sheet and the colour frames.

    annotation/partA/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx, sheet `label`:
        Subject (spNO.1 ...) | Filename (a ... m) | Onset | Apex | Offset | AU |
        Objective class (I-VII) | emotion
    spNO.1/a/color/1234.jpg          frame number = file name (depth/ beside color/ is unused)

One video (a Filename) can hold several micro-expressions, so a clip is named by its video
and onset: `a_1234`. Sheet quirks handled in plain sight: the frame cells are text (read as
integers; text that is no integer, e.g. with a space inside, is recorded as skipped); one
Filename is an upper-case `J` (video folders are matched without regard to case); the rows
whose apex lies outside onset..offset are kept with the apex clamped and a note, and those
with offset 0 are skipped (four such rows in the v2 sheet). The emotion column is the label
source for protocols that use it; under the paper's AU rule the AU column is classified as
for the other databases. Part C (the mock-crime videos) is not read.
"""
import os
import re

from preprocessing.clips import Rows, attach_frames, find_dirs
from preprocessing.errors import InputError, check_root
from preprocessing.sheets import find_sheet, to_int

DATABASE = "casme3"
SHEETS = ("cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", "cas(me)3_part_A_ME_label*.xlsx",
          "*part_A*label*.xlsx")
SHEET = "label"
COLUMNS = {
    "subject": ("Subject",),
    "clip": ("Filename",),
    "onset": ("Onset",),
    "apex": ("Apex",),
    "offset": ("Offset",),
    "aus": ("AU", "AUs", "Action Units"),
    "emotion": ("emotion", "Emotion"),
}
_SUBJECT = re.compile(r"spNO\.\s*0*(\d+)", re.IGNORECASE)


def subject_folder(value):
    """'spNO.1' (or 'spno.001') -> 'spNO.1'; None if unreadable."""
    m = _SUBJECT.fullmatch(str(value).strip()) if value is not None else None
    return "spNO.%d" % int(m.group(1)) if m else None


def sheet_path(root):
    return find_sheet(root, "CAS(ME)^3 part A", SHEETS,
                      "annotation/partA/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx")


def read_sheet(root, rules=None):
    """(entries, skipped) from the part A label sheet alone; clip = '<video>_<onset>'."""
    path = sheet_path(root)
    rows = Rows(DATABASE, rules)
    for folder, video, row, source in rows.table(path, COLUMNS, subject_folder, sheet=SHEET):
        onset, _ = to_int(row["onset"])
        clip = "%s_%s" % (video.lower(), onset if onset is not None else str(row["onset"]).strip())
        rows.add(f"{DATABASE}/{folder}", clip, row["onset"], row["apex"], row["offset"],
                 row["aus"], row["emotion"], source)
    return rows.entries, rows.skipped


def frame_tree(root):
    """The folder holding the spNO.N subject folders."""
    found = find_dirs(root, lambda p: os.path.isdir(p) and any(
        subject_folder(d) and os.path.isdir(os.path.join(p, d)) for d in os.listdir(p)), depth=4)
    if not found:
        raise InputError(f"{root}: no folder of CAS(ME)^3 subject folders (spNO.1/a/color/1.jpg "
                         f"...) in it or below. Fix: unpack part A's frames there.")
    return found[0]


def video_folder(base, subject, video):
    """base/spNO.N/<video>/color, the video folder matched without regard to case."""
    sdir = os.path.join(base, subject)
    if not os.path.isdir(sdir):
        return None, f"missing folder {sdir}"
    for name in sorted(os.listdir(sdir)):
        if name.lower() == video.lower() and os.path.isdir(os.path.join(sdir, name, "color")):
            return os.path.join(sdir, name, "color"), None
    return None, f"missing folder {os.path.join(sdir, video, 'color')}"


def load(root, rules=None):
    entries, skipped = read_sheet(root, rules)
    base = frame_tree(check_root(root, "CAS(ME)^3"))
    return attach_frames(entries, skipped, lambda e: video_folder(
        base, e.subject.split("/", 1)[1], e.clip.rsplit("_", 1)[0]))
