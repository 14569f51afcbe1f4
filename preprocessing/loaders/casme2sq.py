"""CAS(ME)^2: `CAS(ME)^2code_final.xlsx` without a header row (sheet 0: participant | clip |
onset | apex | offset | AUs | emotion | type | self-report), sheets `naming rule1` (participant
-> folder s15) and `naming rule2` (stimulus disgust1 -> code 0101), and the long videos
`rawpic/s15/15_0101disgustingteeth/img001.jpg`. Only micro-expression rows are clips; a clip is
frames onset..offset of its long video. Video folders are matched by their 4-digit code alone,
since some names are misspelt (`0503unnyfarting`) or carry another subject's prefix."""
import os
import re

from preprocessing.clips import Rows, attach_frames, find_dirs
from preprocessing.errors import InputError, check_root
from preprocessing.sheets import find_sheet, SheetError, read_rows, sheet_names, to_int

DATABASE = "casme2sq"
SHEETS = ("CAS(ME)^2code_final*.xls*", "CAS(ME)*code_final*.xls*", "*code_final*.xls*")
LAYOUT = "participant | clip | onset | apex | offset | AUs | emotion | type | self-report"
_VIDEO = re.compile(r"^(?:\d+_)?(\d{4})")


def video_code(name):
    """'15_0101disgustingteeth' -> '0101'; '0503unnyfarting' -> '0503'; None if no code."""
    m = _VIDEO.match(name)
    return m.group(1) if m else None


def sheet_path(root):
    return find_sheet(root, "CAS(ME)^2", SHEETS, "CAS(ME)^2code_final.xlsx")


def _naming_sheet(path, names, number):
    wanted = {n.replace(" ", "").lower() for n in names}
    for name in sheet_names(path):
        if name.replace(" ", "").lower() in wanted:
            return read_rows(path, name)
    if len(sheet_names(path)) > number:
        return read_rows(path, number)
    raise SheetError(f"{path}: no sheet {names[0]!r} (sheets: {sheet_names(path)}). Fix: use the "
                     f"coding workbook as shipped, with its naming-rule sheets.")


def naming_rules(path):
    """({participant: folder 's15'}, {stimulus 'disgust1': code '0101'})."""
    folders = {}
    for row in _naming_sheet(path, ("naming rule1",), 1):
        folder = next((v for v in row if isinstance(v, str) and re.fullmatch(r"s\d+", v, re.I)), None)
        numbers = [n for n, ok in map(to_int, row) if ok and n is not None]
        if folder and numbers:
            folders[numbers[-1]] = folder
    codes = {}
    for row in _naming_sheet(path, ("naming rule2",), 2):
        if len(row) < 2 or row[0] is None or not isinstance(row[1], str):
            continue
        number, ok = to_int(row[0])
        if ok and number is not None and 0 <= number <= 9999:
            codes[row[1].strip().lower()] = f"{number:04d}"
    if not folders or not codes:
        raise SheetError(f"{path}: naming rule sheets give {len(folders)} participant folders and "
                         f"{len(codes)} stimulus codes; expected rows like 's15 | 15 | 1' and "
                         f"'0101 | disgust1'. Fix: use the coding workbook as shipped.")
    return folders, codes


def read_sheet(root, rules=None, offset_zero="skip"):
    """(entries, skipped) from the workbook alone. Macro-expression rows are not clips of this
    project and are left out without a record. offset_zero: 'skip' a row whose offset is 0
    (unknown), or 'apex' to end it at its apex as some public loaders do."""
    if offset_zero not in ("skip", "apex"):
        raise ValueError(f"offset_zero must be 'skip' or 'apex', not {offset_zero!r}")
    path = sheet_path(root)
    rows = read_rows(path, 0)
    data = [(i, r) for i, r in enumerate(rows, 1) if r and to_int(r[0])[0] is not None]
    typed = [r for _, r in data if len(r) >= 8 and isinstance(r[7], str) and "expression" in r[7].lower()]
    if not typed:
        first = data[0][1] if data else next((r for r in rows if any(v is not None for v in r)), [])
        raise SheetError(f"{path}: sheet 0 does not have the expected columns {LAYOUT} (no header "
                         f"row); its first row is {[v for v in first]}. Fix: use CAS(ME)^2code_final.xlsx "
                         f"as shipped.")
    folders, codes = naming_rules(path)
    out = Rows(DATABASE, rules)
    first_data = data[0][0]
    for row_number, row in enumerate(rows, 1):
        if not row or all(v is None for v in row) or row_number < first_data:
            continue  # blank rows, or a title/header line some copies add above the data
        row = list(row) + [None] * (9 - len(row))
        source = f"{path}:{row_number}"
        participant, _ = to_int(row[0])
        clip = "" if row[1] is None else str(row[1]).strip()
        kind = str(row[7] or "").lower()
        if participant is None or not clip:
            out.skip(f"{DATABASE}/{row[0]}", clip, f"unreadable sheet row {row[:9]}", source)
            continue
        if "macro" in kind:
            continue
        folder = folders.get(participant)
        subject = f"{DATABASE}/{folder or participant}"
        if "micro" not in kind:
            out.skip(subject, clip, f"unknown expression type {row[7]!r} (column 8)", source)
            continue
        if folder is None:
            out.skip(subject, clip, f"participant {participant} not in sheet 'naming rule1'", source)
            continue
        if clip.split("_")[0].lower() not in codes:
            out.skip(subject, clip, f"stimulus {clip.split('_')[0]!r} not in sheet 'naming rule2'", source)
            continue
        onset, apex, offset, notes = row[2], row[3], row[4], ()
        if offset_zero == "apex" and to_int(offset)[0] == 0 and (to_int(apex)[0] or 0) > 0:
            offset, notes = apex, (f"offset 0 (unknown) in sheet; ended at apex {apex}",)
        out.add(subject, clip, onset, apex, offset, row[5], row[6], source, notes)
    return out.entries, out.skipped


def load(root, rules=None, offset_zero="skip"):
    root = check_root(root, "CAS(ME)^2")
    entries, skipped = read_sheet(root, rules, offset_zero)
    found = find_dirs(root, lambda p: os.path.basename(p).lower() == "rawpic")
    if not found:
        raise InputError(f"{root}: no rawpic folder in it or below. Fix: unpack the CAS(ME)^2 long "
                         f"videos' frames there (rawpic/s15/15_0101disgustingteeth/img001.jpg ...).")
    rawpic = found[0]
    _, codes = naming_rules(sheet_path(root))

    def folder_for(entry):
        subject_dir = os.path.join(rawpic, entry.subject.split("/", 1)[1])
        if not os.path.isdir(subject_dir):
            return None, f"missing folder {subject_dir}"
        code = codes[entry.clip.split("_")[0].lower()]
        videos = sorted(d for d in os.listdir(subject_dir)
                        if os.path.isdir(os.path.join(subject_dir, d))
                        and video_code(d) == code)
        if len(videos) != 1:
            what = "no" if not videos else f"{len(videos)} ({', '.join(videos)})"
            return None, f"{what} video folder with code {code} in {subject_dir}"
        return os.path.join(subject_dir, videos[0]), None

    return attach_frames(entries, skipped, folder_for)
