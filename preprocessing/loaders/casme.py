"""CASME: `Section A.xls` / `Section B.xls` (or CASME_SectionA.xls ..., or one merged sheet),
missing values written `\\`, and frame folders `sub01/EP01_5/` whose files (`EP01_5-12.jpg`,
`img12.jpg`, padding varying by section) are numbered by their trailing integer."""
import os
import re

from preprocessing.clips import InputError, Rows, attach_frames, check_root, find_dirs
from preprocessing.loaders.casme2 import subject_folder
from preprocessing.sheets import find_files, read_table

DATABASE = "casme"
COLUMNS = {
    "subject": ("Subject",),
    "clip": ("Filename",),
    "onset": ("OnsetF", "Onset Frame", "OnsetFrame"),
    "apex": ("ApexF1", "ApexF", "Apex Frame", "ApexFrame"),
    "offset": ("OffsetF", "Offset Frame", "OffsetFrame"),
    "aus": ("AU", "AUs", "Action Units"),
    "emotion": ("Emotion", "Estimated Emotion"),
}
_SECTION = re.compile(r"(?:section|casme)[\s_-]*([ab])(?![a-z])", re.IGNORECASE)


def section(path):
    """'A' or 'B' when a file or folder name says which section it is, else None."""
    m = _SECTION.search(os.path.basename(path))
    return m.group(1).upper() if m else None


def sheet_paths(root):
    """The section sheets if present, else a merged CASME sheet."""
    root = check_root(root, "CASME")
    sheets = [p for p in find_files(root, ("*.xls", "*.xlsx")) if not os.path.basename(p).lower().startswith("casme2")]
    sections = [p for p in sheets if section(p)]
    merged = [p for p in sheets if os.path.basename(p).lower().startswith("casme")]
    if sections or merged:
        return sections or merged[:1]
    raise InputError(f"{root}: no CASME coding sheet (Section A.xls, Section B.xls, CASME_SectionA.xls ...) "
                     f"in it or below. Fix: pass the CASME folder holding its .xls sheets.")


def read_sheet(root, rules=None):
    rows = Rows(DATABASE, rules)
    for path in sheet_paths(root):
        for row_number, row in read_table(path, COLUMNS):
            source = f"{path}:{row_number}"
            folder = subject_folder(row["subject"])
            clip = "" if row["clip"] is None else str(row["clip"]).strip()
            if folder is None or not clip:
                rows.skip(f"{DATABASE}/{row['subject']}", clip, "unreadable sheet row "
                          f"(Subject {row['subject']!r}, Filename {row['clip']!r})", source)
                continue
            rows.add(f"{DATABASE}/{folder}", clip, row["onset"], row["apex"], row["offset"],
                     row["aus"], row["emotion"], source)
    return rows.entries, rows.skipped


def _holds_subjects(path):
    return any(re.fullmatch(r"sub\d+", d, re.IGNORECASE) and os.path.isdir(os.path.join(path, d))
               for d in os.listdir(path))


def load(root, rules=None):
    root = check_root(root, "CASME")
    entries, skipped = read_sheet(root, rules)
    bases = find_dirs(root, _holds_subjects, depth=4)
    if not bases:
        raise InputError(f"{root}: no folder of CASME subject folders (sub01/EP01_5/...) in it or "
                         f"below. Fix: unpack the CASME frames there.")

    def folder_for(entry):
        relative = os.path.join(entry.subject.split("/", 1)[1], entry.clip)
        found = [os.path.join(b, relative) for b in bases if os.path.isdir(os.path.join(b, relative))]
        if len(found) == 1:
            return found[0], None
        if not found:
            return None, f"missing folder {relative} under {', '.join(bases)}"
        # The same sub/clip in both sections' trees: take the one of the sheet's section.
        sheet_section = section(entry.source.rsplit(":", 1)[0])
        chosen = [f for f in found if sheet_section and sheet_section in
                  {section(part) for part in os.path.relpath(f, root).split(os.sep)}]
        if len(chosen) == 1:
            return chosen[0], None
        return None, f"several folders for {relative}: {', '.join(found)}"

    return attach_frames(entries, skipped, folder_for)
