"""CAS(ME)^3 (30 fps): part A (labelled) and, where its sheet is present, part C (mock crime).

Part A, the v2 label sheet and the colour frames:

    annotation/partA/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx, sheet `label`:
        Subject (spNO.1 ...) | Filename (a ... m) | Onset | Apex | Offset | AU |
        Objective class (I-VII) | emotion
    spNO.1/a/color/1234.jpg          frame number = file name (depth/ beside color/ is unused)

One video (a Filename) can hold several micro-expressions, so a clip is named by its video
and onset: `a_1234`. Sheet quirks handled in plain sight: the frame cells are text (read as
integers; text that is no integer, e.g. with a space inside, is recorded as skipped); one
Filename is an upper-case `J` (video folders are matched without regard to case). The v2
sheet has four broken rows: two with offset 0 and one with its onset after its offset (all
three skipped, with the reason), and one with its apex before its onset (kept, the apex
clamped, with a note). The emotion column is the label source for protocols that use it;
under the paper's AU rule the AU column is classified as for the other databases.

Only v2 is part A's label sheet. The owners' download also holds v1 (`.xls`, with 65 rows
that v2 dropped as not micro-expressions) and `CAS(ME)3_part_A_wrongly_labeled_me_in_V1.xlsx`
(a list of v1's wrongly labelled micro-expressions, sheet `Sheet1`); neither is read, and
where v2 is missing but they are there, the error says so rather than reading one of them as
v2.

Part C, database 'casme3-c', read when its sheet is found under the same folder:

    CAS(ME)3_part_C_ME.xlsx, sheet `mockCrimeME`:
        sub (1, 2, ...) | count (the ME's number within the subject) | onset | offset | au |
        emotion (negative / surprise / others / positive)
    <sub>/color/*.jpg  or  <sub>/<video>/color/*.jpg      (<sub> = '1' or '01'; depth/ unused)

A clip is named as the database's users name it, `<sub>_<count>`; its subject is
'casme3/c01' (part C's participants are numbered on their own, so they are kept apart from
part A's spNO.N). Part C's frame numbers count the images in folder order rather than naming
files: frame n is the n-th image of the color folder, counting from 1, with the images ordered
by the number in their names (98.jpg before 100.jpg). No apex is annotated (PSN does not use
one). One AU cell holds a full-width comma (`4，11`), read as a comma. Part C without its
frames: each row is recorded as skipped, saying which folder was looked for; a subject folder
with several video folders in it, which the sheet cannot tell apart, likewise.
"""
import os
import re

from preprocessing.clips import (IMAGE_EXTENSIONS, Rows, Skipped, attach_frames, clip_from_entry,
                                 find_dirs, frame_number, numbered_frames)
from preprocessing.errors import InputError, check_root
from preprocessing.sheets import find_files, to_int

DATABASE = "casme3"
PART_C = "casme3-c"
V2_SHEET = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
SHEETS = (V2_SHEET, "cas(me)3_part_A_ME_label*.xlsx", "*part_A*label*.xlsx")
# Part A files that are no v2 label sheet although SHEETS' last pattern, or a user's eye,
# might take them for one (see the module docstring).
V1_SHEETS = ("*part_A*label*.xls",)
NOT_LABEL_SHEETS = ("*wrong*label*",)
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

PART_C_SHEETS = ("CAS(ME)3_part_C_ME.xlsx", "*part_C*ME*.xlsx", "*partC*ME*.xlsx")
PART_C_SHEET = "mockCrimeME"
PART_C_COLUMNS = {
    "subject": ("sub", "Subject"),
    "clip": ("count",),
    "onset": ("onset", "Onset"),
    "offset": ("offset", "Offset"),
    "aus": ("au", "AU", "AUs"),
    "emotion": ("emotion", "Emotion"),
}
# Part C's sheet may sit in annotation/partC/ beside part A's, or with the videos.
SHEET_DEPTH = 3


def subject_folder(value):
    """'spNO.1' (or 'spno.001') -> 'spNO.1'; None if unreadable."""
    m = _SUBJECT.fullmatch(str(value).strip()) if value is not None else None
    return "spNO.%d" % int(m.group(1)) if m else None


# A part C subject, in a sub cell or as a folder name: 1, 01, sub01, sub_01, sub-1 (1.0 from
# a spreadsheet that stored the number as text).
_PART_C_SUBJECT = re.compile(r"(?:sub)?[\s_-]*0*(\d+)(?:\.0+)?", re.IGNORECASE)


def part_c_number(value):
    """part C's sub cell (1, 1.0, '01', 'sub01') -> 1; None if unreadable."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    m = _PART_C_SUBJECT.fullmatch(str(value).strip()) if value is not None else None
    return int(m.group(1)) if m else None


def part_c_folder(value):
    n = part_c_number(value)
    return None if n is None else "c%02d" % n


def sheet_paths(root):
    """(part A sheet or None, part C sheet or None); InputError when neither is there."""
    root = check_root(root, "CAS(ME)^3")
    not_label = set(find_files(root, NOT_LABEL_SHEETS, depth=SHEET_DEPTH))
    a = [p for p in find_files(root, SHEETS, depth=SHEET_DEPTH) if p not in not_label]
    c = [p for p in find_files(root, PART_C_SHEETS, depth=SHEET_DEPTH) if p not in a]
    if not a:
        _refuse_other_versions(root, not_label)
    if not a and not c:
        raise InputError(f"{root}: no CAS(ME)^3 coding sheet in it or below (part A: "
                         f"{', '.join(SHEETS)}; part C: {', '.join(PART_C_SHEETS)}). Fix: pass "
                         f"the folder holding annotation/partA/{V2_SHEET} (or part C's sheet).")
    return (a[0] if a else None), (c[0] if c else None)


def _refuse_other_versions(root, not_label):
    """InputError when part A's v2 sheet is missing but v1 or v1's corrections are there: the
    user meant to give part A, and neither file holds v2's labels."""
    v1 = find_files(root, V1_SHEETS, depth=SHEET_DEPTH)
    if not v1 and not not_label:
        return
    found = "; ".join([f"{p} (v1, .xls: not read, since v1 holds 65 rows that v2 dropped as "
                       f"not micro-expressions; converting it to .xlsx would not give v2's labels)"
                       for p in v1] +
                      [f"{p} (v1's wrongly labelled rows, no label sheet)" for p in sorted(not_label)])
    raise InputError(f"{root}: part A's label sheet, v2's {V2_SHEET} (sheet {SHEET!r}), is missing; "
                     f"found only {found}. Fix: put {V2_SHEET} from the owners' download "
                     f"(annotation/partA/) under {root}.")


def read_sheet(root, rules=None):
    """(entries, skipped) from the sheets alone: part A (clip '<video>_<onset>') and part C
    (clip '<sub>_<count>'), whichever are present."""
    path_a, path_c = sheet_paths(root)
    entries, skipped = [], []
    if path_a:
        rows = Rows(DATABASE, rules)
        for folder, video, row, source in rows.table(path_a, COLUMNS, subject_folder, sheet=SHEET):
            onset, _ = to_int(row["onset"])
            clip = "%s_%s" % (video.lower(), onset if onset is not None else str(row["onset"]).strip())
            rows.add(f"{DATABASE}/{folder}", clip, row["onset"], row["apex"], row["offset"],
                     row["aus"], row["emotion"], source)
        entries += rows.entries
        skipped += rows.skipped
    if path_c:
        rows = Rows(PART_C, rules)
        for folder, count, row, source in rows.table(path_c, PART_C_COLUMNS, part_c_folder,
                                                     sheet=PART_C_SHEET):
            number, ok = to_int(count)
            clip = "%d_%s" % (part_c_number(row["subject"]), number if ok and number is not None else count)
            rows.add(f"{DATABASE}/{folder}", clip, row["onset"], None, row["offset"],
                     row["aus"], row["emotion"], source)
        entries += rows.entries
        skipped += rows.skipped
    return entries, skipped


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


def _is_part_c_tree(path):
    """A folder of part C subject folders: digit-named folders with color/ in or below them."""
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return any(part_c_number(d) is not None and _color_dirs(os.path.join(path, d)) for d in names)


def _color_dirs(sdir):
    """The color folders of one part C subject folder: sdir/color, else sdir/<video>/color."""
    if os.path.isdir(os.path.join(sdir, "color")):
        return [os.path.join(sdir, "color")]
    try:
        names = sorted(os.listdir(sdir))
    except OSError:
        return []
    return [os.path.join(sdir, d, "color") for d in names
            if os.path.isdir(os.path.join(sdir, d, "color"))]


def part_c_tree(root, depth=5):
    """The folder holding part C's subject folders (1/, 2/ ... or 01/ ...), or None. The
    search does not enter part A's spNO.N folders or any color/ or depth/ folder: they hold
    most of the database's files and none of part C's subject folders."""
    for dirpath, dirnames, _ in os.walk(root):
        if _is_part_c_tree(dirpath):
            return dirpath
        level = os.path.relpath(dirpath, root).count(os.sep) + (dirpath != root)
        dirnames[:] = [] if level >= depth else sorted(
            d for d in dirnames if d.lower() not in ("color", "depth") and not subject_folder(d))
    return None


def images_in_order(folder):
    """({1: first image, 2: second, ...}, problem or None): the images of folder ordered by the
    number in their names, as part C's frame numbers count them. An image without a number, or
    two images with one number (2.jpg and 2.png, 1.jpg and 001.jpg), would shift every later
    frame without a trace, so they are a problem naming the files, not a guess."""
    unnumbered = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)
                        and not n.startswith(".") and frame_number(n) is None)
    if unnumbered:
        return {}, (f"images without a frame number in {folder} ({', '.join(unnumbered[:3])}"
                    f"{', ...' if len(unnumbered) > 3 else ''}): part C counts images in order, "
                    f"so move them out")
    by_number, clashes = numbered_frames(folder)
    if clashes:
        doubled = clashes[min(clashes)]
        return {}, (f"several images for one frame in {folder} "
                    f"({', '.join(os.path.basename(p) for p in doubled)}): part C counts images "
                    f"in order, so keep one")
    return {i: by_number[k] for i, k in enumerate(sorted(by_number), 1)}, None


def _part_c_clips(root, entries):
    """[Clip or Skipped] of part C's entries, frames counted in folder order."""
    base = part_c_tree(root) if entries else None
    if base is None:
        return [Skipped(e.database, e.subject, e.clip, f"no part C frames under {root} (looked "
                        f"for <sub>/color/*.jpg or <sub>/<video>/color/*.jpg); unpack part C "
                        f"there to use its clips", e.source) for e in entries]
    subjects = {}
    for d in os.listdir(base):
        n = part_c_number(d)
        if n is not None and os.path.isdir(os.path.join(base, d)):
            subjects.setdefault(n, []).append(os.path.join(base, d))
    listings, out = {}, []
    for e in entries:
        def skip(reason):
            out.append(Skipped(e.database, e.subject, e.clip, reason, e.source))
        n = int(e.subject.rsplit("/c", 1)[1])       # part_c_folder's 'casme3/cNN'
        dirs = subjects.get(n, [])
        if len(dirs) != 1:
            skip(f"no folder {n} (or {n:02d}) in {base}" if not dirs else
                 f"several folders for subject {n} in {base}: {[os.path.basename(d) for d in dirs]}")
            continue
        colors = _color_dirs(dirs[0])
        if len(colors) != 1:
            skip(f"no color folder in {dirs[0]}" if not colors else
                 f"several video folders with color/ in {dirs[0]} "
                 f"({[os.path.basename(os.path.dirname(c)) for c in colors]}); the part C sheet "
                 f"names no video, so the frames are ambiguous: keep one there")
            continue
        folder = colors[0]
        if folder not in listings:
            listings[folder] = images_in_order(folder)
        frames, problem = listings[folder]
        if problem:
            skip(problem)
            continue
        if e.onset < 1 or e.offset > len(frames):
            skip(f"frames {e.onset}..{e.offset} outside the {len(frames)} images of {folder} "
                 f"(part C's frame numbers count its images in folder order, from 1)")
            continue
        out.append(clip_from_entry(e, folder, listed=(frames, {})))
    return out


def load(root, rules=None):
    entries, skipped = read_sheet(root, rules)
    part_a = [e for e in entries if e.database == DATABASE]
    part_c = [e for e in entries if e.database == PART_C]
    clips = []
    if part_a:
        base = frame_tree(check_root(root, "CAS(ME)^3"))
        clips, skipped = attach_frames(part_a, skipped, lambda e: video_folder(
            base, e.subject.split("/", 1)[1], e.clip.rsplit("_", 1)[0]))
    for result in _part_c_clips(root, part_c):
        (clips if not isinstance(result, Skipped) else skipped).append(result)
    return clips, skipped
