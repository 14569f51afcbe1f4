"""CASME (Yan et al. 2013), as its owners ship it.

Sheets: `Section A.xls` and `Section B.xls` (also `CASME_SectionA.xls` ...), or one merged
sheet holding both sections one after the other (subjects 1-7 are Section A, 8-19 Section B;
197 rows in all). Header: Subject | Filename | (blank) | OnsetF | ApexF1 | ApexF2 | OffsetF |
(blank) | Onset | Total | AU | Emotion, where Onset and Total are milliseconds (some copies
write `Onset(ms)`, `Total(ms)`); only the frame columns, AU and Emotion are read. A missing
value is a single backslash; ApexF2 may also be blank or the word `remake`.

Frames: `subNN/EPxx_y/EPxx_y-N.jpg` (Section A, no padding), `subNN/EPxx_y/EPxx_y-NNN.jpg`
(Section B), `imgN.jpg` in some copies, `reg_EPxx_y-N.jpg` in the cropped release: a frame's
number is the trailing integer of its name.

What the sheet holds that the generic loader rules would get wrong, and what this loader does:

- **Several micro-expressions per video.** The same Subject + Filename appears on several rows
  with different OnsetF, AUs and emotions (sub01 EP01_12 at onsets 73 and 163; sub06 EP02_5 six
  times). Each row is its own clip. A video with one row keeps the Filename as its clip ID; the
  clips of a video with several rows are `<Filename>_on<OnsetF>` (stable under reordering of the
  sheet). Only a row that repeats a video *and* its onset is a duplicate.
- **OffsetF missing** (backslash in 21 rows of the owners' sheet). Dropping them would leave at
  most 176 clips, fewer than the paper's 189, so the paper kept them. END RULE: the end is
  apex + (apex - onset) (a micro-expression's decay mirrored on its rise) when ApexF1 is known
  and after the onset, else onset + the median duration (OffsetF - OnsetF) of the sheet's rows
  that have both; then never past the frame before the next micro-expression of the same video,
  and (when the frames are read) never past the video's last frame. Each such clip carries a
  note saying which rule set its end.
- **Filename typos**: subject 7 has `EP171`, `EP172`, `EP173`, `EP177` where the folders are
  `EP17_1`, ...: a Filename with no folder is matched to the one folder of its subject whose
  name agrees once underscores are removed (case ignored), with a note, and the clip takes the
  folder's name.

Copies of CASME's clip list shared without the AU column (a `CASME.xls` or `CASME.csv` with
Subject, Filename, OnsetF, ApexF, OffsetF, Emotion) cannot give the paper's AU classes: the
error names the file, says so, and names the owners' sheets.

Reported, not silently accepted: a micro-expression whose onset falls inside the previous one of
the same video (a note naming the other sheet row), an onset beyond the video's last frame (the
clip is excluded, naming the row), a subject listed in both section sheets (a note on the later
sheet's rows).
"""
import csv
import dataclasses
import os
import re
import statistics
from collections import defaultdict

from preprocessing.clips import (Rows, Skipped, clip_from_entry,
                                 find_dirs, numbered_frames)
from preprocessing.errors import InputError, check_root
from preprocessing.loaders.casme2 import subject_folder
from preprocessing.sheets import (SheetError, find_files, find_header, norm, read_rows, read_table,
                                  to_int)

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
# The owners' sheets, as named in their release (see the module docstring for the columns).
OWNERS_SHEETS = ("Section A.xls and Section B.xls (Subject | Filename | OnsetF | ApexF1 | ApexF2 | "
                 "OffsetF | Onset | Total | AU | Emotion)")
# Shared copies of the clip list keep these columns and drop AU; _refuse_clip_lists names them.
LIST_COLUMNS = {key: names for key, names in COLUMNS.items() if key != "aus"}
_SECTION = re.compile(r"(?:section|casme)[\s_-]*([ab])(?![a-z])", re.IGNORECASE)
MULTI_ID = "{clip}_on{onset}"


def section(path):
    """'A' or 'B' when a file or folder name says which section it is, else None."""
    m = _SECTION.search(os.path.basename(path))
    return m.group(1).upper() if m else None


def sheet_paths(root):
    """The section sheets if present, else the merged sheet (any other spreadsheet under root
    whose header has CASME's columns; a name starting with 'casme' is tried first)."""
    root = check_root(root, "CASME")
    sheets = [p for p in find_files(root, ("casme*.xls", "casme*.xlsx", "*.xls", "*.xlsx"))
              if not os.path.basename(p).lower().startswith("casme2")]
    sections = [p for p in sheets if section(p)]
    if sections:
        return sections
    for path in sheets:
        try:
            read_table(path, COLUMNS)
        except SheetError:
            continue
        return [path]
    _refuse_clip_lists(root, sheets)
    raise InputError(f"{root}: no CASME coding sheet (Section A.xls, Section B.xls, CASME_SectionA.xls, "
                     f"or one merged sheet with the columns Subject, Filename, OnsetF, ApexF1, OffsetF, "
                     f"AU, Emotion) in it or below. Fix: pass the CASME folder holding its .xls sheets.")


def _header(path):
    """The header row of a spreadsheet or CSV file with CASME's columns less AU, else None."""
    try:
        if path.lower().endswith(".csv"):
            with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
                rows = [row for _, row in zip(range(40), csv.reader(f))]
        else:
            rows = read_rows(path)
        i, _ = find_header(rows, LIST_COLUMNS, path)
    except (SheetError, OSError, csv.Error):
        return None
    return [v for v in rows[i] if v not in (None, "")]


def _refuse_clip_lists(root, sheets):
    """InputError naming a copy of CASME's clip list that cannot stand in for the owners'
    sheets: one without the AU column (CASME.xls or CASME.csv with Subject, Filename, OnsetF,
    ApexF, OffsetF, Emotion, as widely shared), or a CSV file, which is not read."""
    for path in sheets + find_files(root, ("casme*.csv", "*.csv")):
        header = _header(path)
        if header is None:
            continue
        if not any(norm(h) in {norm(a) for a in COLUMNS["aus"]} for h in header):
            raise InputError(
                f"{path}: a list of CASME's clips without the AU column (its columns: "
                f"{', '.join(map(str, header))}). The paper's classes come from each clip's AUs "
                f"(Table 2's rule), so this file cannot label them. Fix: use the owners' coding "
                f"sheets, {OWNERS_SHEETS}, which have the AU column.")
        raise InputError(f"{path}: a CSV copy of CASME's sheet, which is not read. Fix: use the "
                         f"owners' coding sheets, {OWNERS_SHEETS}.")


def _video_key(folder, clip):
    return folder, clip.lower()


def _end_rule(onset, apex, median_duration):
    """(offset, how) for a row without OffsetF (see the module docstring)."""
    if apex is not None and apex > onset:
        return apex + (apex - onset), f"apex + (apex - onset) = {apex} + {apex - onset}"
    return onset + median_duration, f"onset + the sheet's median duration {median_duration}"


def read_sheet(root, rules=None):
    """(entries, skipped) from the coding sheet(s) alone."""
    rows = Rows(DATABASE, rules)
    raw = []            # (source, sheet path, folder, clip, onset int or None, row dict)
    subjects_by_sheet = defaultdict(dict)   # sheet -> {folder: first source}
    for path in sheet_paths(root):
        for folder, clip, row, source in rows.table(path, COLUMNS, subject_folder):
            onset, ok = to_int(row["onset"])
            raw.append((source, path, folder, clip, onset if ok else None, row))
            subjects_by_sheet[path].setdefault(folder, source)

    durations = []
    for *_, row in raw:
        (on, ok1), (off, ok2) = to_int(row["onset"]), to_int(row["offset"])
        if ok1 and ok2 and on is not None and off is not None and off >= on:
            durations.append(off - on)
    median_duration = int(round(statistics.median(durations))) if durations else 30

    videos = defaultdict(list)
    for item in raw:
        videos[_video_key(item[2], item[3])].append(item)
    sheets = list(subjects_by_sheet)
    for key, items in videos.items():
        onsets = sorted({it[4] for it in items if it[4] is not None})
        multi = len(onsets) > 1
        # Known or estimated ends, in onset order, for the overlap check.
        previous = None
        for source, path, folder, clip, onset, row in sorted(
                items, key=lambda it: (it[4] is None, it[4] or 0, it[0])):
            notes = []
            offset = row["offset"]
            if onset is not None:
                off, ok = to_int(offset)
                if ok and off is None:
                    apex, apex_ok = to_int(row["apex"])
                    end, how = _end_rule(onset, apex if apex_ok else None, median_duration)
                    later = [o for o in onsets if o > onset]
                    if later and end >= later[0]:
                        end, how = later[0] - 1, (f"the frame before the next micro-expression of "
                                                  f"{clip} (onset {later[0]})")
                    offset = end
                    notes.append(f"OffsetF missing in sheet; end set to frame {end} by {how}")
                    off = end
                if previous is not None and off is not None and ok and onset <= previous[1]:
                    notes.append(f"onset {onset} inside the micro-expression of sheet row "
                                 f"{previous[2]} ({previous[0]}..{previous[1]}) of the same video")
                if ok and off is not None and (previous is None or off > previous[1]):
                    previous = (onset, off, source.rsplit(':', 1)[1])
            for other in sheets:
                first = subjects_by_sheet[other].get(folder)
                if other != path and first and sheets.index(other) < sheets.index(path):
                    notes.append(f"subject {folder} is also in {os.path.basename(other)} "
                                 f"(row {first.rsplit(':', 1)[1]}); check which section it belongs to")
            clip_id = MULTI_ID.format(clip=clip, onset=onset) if multi and onset is not None else clip
            rows.add(f"{DATABASE}/{folder}", clip_id, row["onset"], row["apex"], offset,
                     row["aus"], row["emotion"], source, notes)
    # Sheet order for everything downstream (manifest, folds), whatever the grouping above.
    order = {src: i for i, (src, *_rest) in enumerate(raw)}
    rows.entries.sort(key=lambda e: order.get(e.source, -1))
    rows.skipped.sort(key=lambda s: order.get(s.source, -1))
    return rows.entries, rows.skipped


def _holds_subjects(path):
    return any(re.fullmatch(r"sub\d+", d, re.IGNORECASE) and os.path.isdir(os.path.join(path, d))
               for d in os.listdir(path))


def _squash(name):
    return name.replace("_", "").lower()


def load(root, rules=None):
    root = check_root(root, "CASME")
    entries, skipped = read_sheet(root, rules)
    bases = find_dirs(root, _holds_subjects, depth=4)
    if not bases:
        raise InputError(f"{root}: no folder of CASME subject folders (sub01/EP01_5/...) in it or "
                         f"below. Fix: unpack the CASME frames there.")

    def video_of(entry):
        m = re.fullmatch(r"(.+)_on(\d+)", entry.clip)
        return m.group(1) if m and int(m.group(2)) == entry.onset else entry.clip

    def folder_for(entry):
        subject = entry.subject.split("/", 1)[1]
        video = video_of(entry)
        relative = os.path.join(subject, video)
        found = [os.path.join(b, relative) for b in bases if os.path.isdir(os.path.join(b, relative))]
        note = None
        if not found:
            # Sheet typos such as subject 7's EP171 for the folder EP17_1.
            alike = sorted({os.path.join(b, subject, d) for b in bases
                            if os.path.isdir(os.path.join(b, subject))
                            for d in os.listdir(os.path.join(b, subject))
                            if _squash(d) == _squash(video) and os.path.isdir(os.path.join(b, subject, d))})
            if len(alike) == 1:
                found = alike
                note = (f"sheet Filename {video!r} matched to folder {os.path.basename(alike[0])} "
                        f"(names agree without underscores)")
        if len(found) == 1:
            return found[0], None, note
        if not found:
            return None, f"missing folder {relative} under {', '.join(bases)}", None
        # The same sub/clip in both sections' trees: take the one of the sheet's section.
        sheet_section = section(entry.source.rsplit(":", 1)[0])
        chosen = [f for f in found if sheet_section and sheet_section in
                  {section(part) for part in os.path.relpath(f, root).split(os.sep)}]
        if len(chosen) == 1:
            return chosen[0], None, note
        return None, f"several folders for {relative}: {', '.join(found)}", None

    clips, skipped = [], list(skipped)
    for entry in entries:
        folder, reason, note = folder_for(entry)
        if reason:
            skipped.append(Skipped(entry.database, entry.subject, entry.clip, reason, entry.source))
            continue
        if note:
            video = video_of(entry)
            entry = dataclasses.replace(entry, clip=os.path.basename(folder) + entry.clip[len(video):],
                                        notes=entry.notes + (note,))
        listed = numbered_frames(folder)
        last = max(listed[0]) if listed[0] else None
        row = entry.source.rsplit(":", 1)[1]
        if last is not None and entry.onset > last:
            skipped.append(Skipped(entry.database, entry.subject, entry.clip,
                                   f"onset {entry.onset} beyond the video's last frame {last} in "
                                   f"{folder} (sheet row {row})", entry.source))
            continue
        if last is not None and entry.offset > last and any(n.startswith("OffsetF missing")
                                                             for n in entry.notes):
            entry = dataclasses.replace(entry, offset=last, notes=entry.notes + (
                f"estimated end capped at the video's last frame {last}",))
        result = clip_from_entry(entry, folder, listed)
        (clips if not isinstance(result, Skipped) else skipped).append(result)
    return clips, skipped
