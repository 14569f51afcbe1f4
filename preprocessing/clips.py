"""The shared data model (Clip, Skipped) and the steps every loader shares: a sheet row becomes
an Entry (what the sheet alone says), and an Entry plus its frame folder becomes a Clip.
"""
import os
import re
from dataclasses import dataclass, fields
from typing import Optional

from preprocessing.labels import cell_text, classify, parse_aus
from preprocessing.sheets import read_table, to_int

LOADERS = ("casme", "casme2", "casme2sq", "samm", "smic", "casme3")   # loaders, in this order
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Entry:
    """One usable sheet row, before its frames are looked for (all Table 4 needs)."""
    database: str       # 'casme' | 'casme2' | 'casme2sq' (CAS(ME)^2) | 'samm' | 'smic-hs' ... |
                        # 'casme3' | 'casme3-c' (its part C)
    subject: str        # unique across databases, e.g. 'casme2/sub01', 'samm/006'
    clip: str           # e.g. 'EP02_01f', '006_1_2', 'disgust1_3' (as in the sheet)
    onset: int
    apex: Optional[int]
    offset: int
    aus: str            # the raw AU cell text
    au_set: frozenset   # parsed FACS numbers (ints)
    label: int          # index into the protocol's classes (the paper's: 0 Positive, 1 Negative,
                        # 2 Surprise, 3 Others; preprocessing.protocols relabels)
    emotion: str        # estimated emotion from the sheet
    source: str         # 'file:row' of the sheet
    notes: tuple = ()   # warnings (apex clamped, etc.)


@dataclass(frozen=True)
class Clip(Entry):
    """An Entry whose frames were found: the absolute paths of frames onset..offset."""
    frames: tuple = ()


@dataclass(frozen=True)
class Skipped:
    database: str
    subject: str
    clip: str
    reason: str
    source: str         # 'file:row'


def is_path(name):
    """True for a sheet cell that is no plain folder name: it holds a path separator ('/' or
    '\\'), or is '.' or '..'."""
    name = str(name).strip()
    return "/" in name or "\\" in name or name in (".", "..")


def entry_from_row(database, subject, clip, onset, apex, offset, aus, emotion, source, rules=None,
                   notes=()):
    """Entry, or Skipped when the sheet row itself rules the clip out. Frame cells are the
    cleaned values of preprocessing.sheets (None = missing); 0 means unknown, as in CAS(ME)^2."""
    def skip(reason):
        return Skipped(database, subject, clip, reason, source)

    if is_path(clip):
        # Loaders join the clip name to a frame folder: '../../x' or '/x' would read frames
        # from outside the database folder (and '..' from the wrong level inside it).
        return skip(f"Filename {clip!r} is a path, not a clip name: its frames would be read "
                    "from outside the clip folders; correct the sheet cell to the clip's folder "
                    "name")
    values = {}
    for name, value in (("onset", onset), ("offset", offset)):
        number, ok = to_int(value)
        if not ok:
            return skip(f"unreadable {name} {value!r} in sheet")
        if number is None:
            return skip(f"{name} missing in sheet")
        if name == "offset" and number == 0:
            return skip("offset 0 (unknown) in sheet")
        values[name] = number
    onset, offset = values["onset"], values["offset"]
    if onset > offset:
        return skip(f"onset {onset} after offset {offset} in sheet")
    notes = list(notes)
    number, ok = to_int(apex)
    if not ok:
        notes.append(f"unreadable apex {apex!r} in sheet; PSN does not use it")
    elif not number:
        notes.append(f"apex {'0 (unknown)' if number == 0 else 'missing'} in sheet; PSN does not use it")
    elif not onset <= number <= offset:
        clamped = min(max(number, onset), offset)
        notes.append(f"apex {number} outside onset..offset {onset}..{offset} (sheet error); clamped to {clamped}")
        number = clamped
    if not ok or not number:
        number = None
    au_set, warnings = parse_aus(aus)
    unknown = [w for w in warnings if w.startswith("unknown AU token")]
    if unknown and not getattr(rules, "keep_unknown_aus", False):
        token = unknown[0][len("unknown AU token "):].rsplit(" ignored", 1)[0]
        return skip(f"AU cell {cell_text(aus)!r}: {token} is no FACS action unit, so the class "
                    "would be guessed from the rest; correct the sheet, or pass --unknown-aus keep")
    notes += [f"AUs: {w}" for w in warnings]
    return Entry(database, subject, clip, onset, number, offset, cell_text(aus), au_set,
                 classify(au_set, rules), "" if emotion is None else str(emotion).strip(),
                 source, tuple(notes))


class Rows:
    """One database's sheet rows gathered into entries and skipped; a repeated clip is skipped."""

    def __init__(self, database, rules=None):
        self.database, self.rules = database, rules
        self.entries, self.skipped, self._seen = [], [], {}

    def skip(self, subject, clip, reason, source):
        self.skipped.append(Skipped(self.database, subject, clip, reason, source))

    def table(self, path, columns, folder_of, sheet=0):
        """The loop every loader with a header row shares: (subject folder, clip, row, source)
        for each row of the sheet (preprocessing.sheets.read_table with `columns`) that names a
        subject (folder_of(cell) -> its folder name, None if unreadable) and a clip; other
        rows are recorded as skipped. The clip's subject is "<database>/<folder>"."""
        for row_number, row in read_table(path, columns, sheet):
            source = f"{path}:{row_number}"
            folder = folder_of(row["subject"])
            clip = "" if row["clip"] is None else str(row["clip"]).strip()
            if folder is None or not clip:
                self.skip(f"{self.database}/{row['subject']}", clip, "unreadable sheet row "
                          f"(Subject {row['subject']!r}, Filename {row['clip']!r})", source)
                continue
            yield folder, clip, row, source

    def add_table(self, path, columns, folder_of):
        """Every row of a sheet whose columns are the Entry's own, as table() reads it."""
        for folder, clip, row, source in self.table(path, columns, folder_of):
            self.add(f"{self.database}/{folder}", clip, row["onset"], row["apex"], row["offset"],
                     row["aus"], row["emotion"], source)
        return self.entries, self.skipped

    def add(self, subject, clip, onset, apex, offset, aus, emotion, source, notes=()):
        if (subject, clip) in self._seen:
            return self.skip(subject, clip, f"duplicate of sheet row {self._seen[subject, clip]}", source)
        self._seen[subject, clip] = source
        result = entry_from_row(self.database, subject, clip, onset, apex, offset, aus, emotion,
                                source, self.rules, notes)
        (self.skipped if isinstance(result, Skipped) else self.entries).append(result)


def attach_frames(entries, skipped, folder_for):
    """(clips, skipped): folder_for(entry) gives (folder, None) or (None, reason to skip)."""
    clips, skipped = [], list(skipped)
    for entry in entries:
        folder, reason = folder_for(entry)
        if reason:
            result = Skipped(entry.database, entry.subject, entry.clip, reason, entry.source)
        else:
            result = clip_from_entry(entry, folder)
        (clips if isinstance(result, Clip) else skipped).append(result)
    return clips, skipped


def frame_number(name):
    """Trailing integer of a file name's stem ('img46.jpg', 'EP01_5-12.jpg', '006_05562.jpg');
    None for names without one."""
    m = re.search(r"(\d+)$", os.path.splitext(name)[0])
    return int(m.group(1)) if m else None


def numbered_frames(folder):
    """({frame number: path}, {frame number: [paths]} for numbers held by several images)."""
    frames, clashes = {}, {}
    for name in sorted(os.listdir(folder)):
        if not name.lower().endswith(IMAGE_EXTENSIONS) or name.startswith("."):
            continue
        n = frame_number(name)
        if n is None:
            continue
        path = os.path.join(folder, name)
        if n in frames:
            clashes.setdefault(n, [frames[n]]).append(path)
        frames[n] = path
    return frames, clashes


def _ranges(numbers):
    """[3,4,5,9] -> '3..5, 9'"""
    out, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}..{n}")
            start = None
    return ", ".join(out)


def clip_from_entry(entry, folder, listed=None):
    """Clip with frames onset..offset (file number = frame number), or Skipped saying what is
    missing. Frame files are not decoded here; only listed and checked to be non-empty.
    listed: numbered_frames(folder), when the caller has it already."""
    def skip(reason):
        return Skipped(entry.database, entry.subject, entry.clip, reason, entry.source)

    if folder is None or not os.path.isdir(folder):
        return skip(f"missing folder {folder}")
    frames, clashes = listed if listed is not None else numbered_frames(folder)
    wanted = range(entry.onset, entry.offset + 1)
    missing = [n for n in wanted if n not in frames]
    if missing:
        return skip(f"missing frames {_ranges(missing)} of {entry.onset}..{entry.offset} in {folder}")
    clash = [n for n in wanted if n in clashes]
    if clash:
        return skip(f"several images for frame {clash[0]} in {folder}: "
                    f"{[os.path.basename(p) for p in clashes[clash[0]]]}")
    paths = tuple(os.path.abspath(frames[n]) for n in wanted)
    empty = [p for p in paths if os.path.getsize(p) == 0]
    if empty:
        return skip(f"empty frame file {empty[0]}")
    return Clip(**{f.name: getattr(entry, f.name) for f in fields(Entry)}, frames=paths)


def find_dirs(root, accept, depth=3):
    """Folders under root (root included, at most `depth` levels down) for which accept(path) is
    true, sorted; the search does not descend into an accepted folder."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        if accept(dirpath):
            found.append(dirpath)
            dirnames[:] = []
            continue
        level = os.path.relpath(dirpath, root).count(os.sep) + (dirpath != root)
        if level >= depth:
            dirnames[:] = []
        dirnames.sort()
    return sorted(found)


