"""The databases' coding sheets (.xlsx via openpyxl, .xls via xlrd) as plain rows of values.

Cells come back as None (empty, or a lone missing-value mark `\\` or `/`), int (any integral
number: xlrd gives every number as float), float, or stripped str. Header rows are found by
their column names, so preambles (SAMM) and blank columns (CASME II, CASME) do not matter.

A sheet is read row by row, as far as it holds data: the used range a file declares is not
trusted (one stray cell at XFD1048576 declares a billion cells, and reading them all ran out
of memory). Cells right of column MAX_COLUMNS (IV, the last column an .xls sheet can have)
are not read; every row is kept to its last value, so a stray value far below comes back as
its own row (loaders skip it as an unreadable row, saying so) and blank rows take no memory.
"""
import fnmatch
import os
import re

from preprocessing.errors import InputError, check_root

MISSING_MARKS = {"", "\\", "/", "-"}
MAX_COLUMNS = 256       # column IV: the coding sheets use fewer than 30


class SheetError(InputError):
    """A sheet that cannot be read or lacks the expected columns; the message names the file."""


def _clean(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        value = value.strip()
        return None if value in MISSING_MARKS else value
    return value


def _open(path):
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".xls":
            import xlrd
            book = xlrd.open_workbook(path, on_demand=True, ragged_rows=True)
            return "xls", book
        if ext in (".xlsx", ".xlsm"):
            import openpyxl
            return "xlsx", openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # the readers raise many types for corrupt files
        raise SheetError(f"{path}: cannot read this spreadsheet ({exc}). Fix: use the sheet as "
                         f"shipped by the database's owners (re-download it if it is damaged).") from exc
    raise SheetError(f"{path}: not a .xls or .xlsx file")


def sheet_names(path):
    kind, book = _open(path)
    return book.sheet_names() if kind == "xls" else list(book.sheetnames)


def _trimmed(values):
    """Cleaned cells of one row up to its last value (the first MAX_COLUMNS only)."""
    row = [_clean(v) for v in values[:MAX_COLUMNS]]
    while row and row[-1] is None:
        row.pop()
    return row


def read_rows(path, sheet=0):
    """All rows of one sheet (index or name) down to its last value, each a list of cleaned
    values up to its own last value (an empty list for a blank row); list index = row - 1."""
    kind, book = _open(path)
    names = book.sheet_names() if kind == "xls" else list(book.sheetnames)
    if isinstance(sheet, int):
        if sheet >= len(names):
            raise SheetError(f"{path}: has {len(names)} sheet(s) {names}, expected at least {sheet + 1}")
        name = names[sheet]
    elif sheet in names:
        name = sheet
    else:
        raise SheetError(f"{path}: no sheet named {sheet!r} (sheets: {names})")
    rows = []
    if kind == "xls":
        import xlrd
        ok = (xlrd.XL_CELL_TEXT, xlrd.XL_CELL_NUMBER, xlrd.XL_CELL_DATE, xlrd.XL_CELL_BOOLEAN)
        ws = book.sheet_by_name(name)
        for r in range(ws.nrows):
            n = min(ws.row_len(r), MAX_COLUMNS)     # ragged rows: each as long as its cells
            types, values = ws.row_types(r, 0, n), ws.row_values(r, 0, n)
            rows.append(_trimmed([v if t in ok else None for t, v in zip(types, values)]))
        book.release_resources()
    else:
        ws = book[name]
        ws.reset_dimensions()       # the declared used range is not trusted
        blank = None
        for values in ws.iter_rows(max_col=MAX_COLUMNS, values_only=True):
            if values is blank:     # openpyxl's shared tuple for rows absent from the file
                rows.append([])
                continue
            row = _trimmed(values)
            if not row:
                blank = values
            rows.append(row)
        book.close()
    while rows and not rows[-1]:
        rows.pop()
    return rows


def norm(name):
    """Header name for matching: 'Onset Frame', 'OnsetFrame', 'onset_frame' -> 'onsetframe'."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower()) if name is not None else ""


def find_header(rows, columns, path, scan=40):
    """(header row index, {key: column index}) for `columns` = {key: (accepted names, ...)}."""
    best, best_hits = None, -1
    for i, row in enumerate(rows[:scan]):
        names = [norm(v) for v in row]
        found = {}
        for key, accepted in columns.items():
            for j, n in enumerate(names):
                if n and n in {norm(a) for a in accepted}:
                    found[key] = j
                    break
        if len(found) == len(columns):
            return i, found
        if len(found) > best_hits:
            best, best_hits = i, len(found)
    expected = [accepted[0] for accepted in columns.values()]
    seen = [v for v in rows[best] if v is not None] if best is not None and rows else []
    raise SheetError(
        f"{path}: no header row with the expected columns {expected} in its first {scan} rows; "
        f"closest is row {(best or 0) + 1} with columns {seen}. Fix: use the coding sheet as "
        f"shipped (header row intact) or rename its columns to the expected names.")


def read_table(path, columns, sheet=0):
    """[(excel row number, {key: value})] for the rows below the header, blank rows dropped."""
    rows = read_rows(path, sheet)
    header, where = find_header(rows, columns, path)
    out = []
    for i in range(header + 1, len(rows)):
        row = rows[i]
        if all(v is None for v in row):
            continue
        out.append((i + 1, {key: (row[j] if j < len(row) else None) for key, j in where.items()}))
    return out


def find_files(root, patterns, depth=2):
    """Files under root (at most `depth` levels down) whose name matches a pattern, case-insensitive,
    in the order of the patterns, then by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        level = os.path.relpath(dirpath, root).count(os.sep) + (dirpath != root)
        if level >= depth:
            dirnames[:] = []
        dirnames.sort()
        for name in filenames:
            if name.startswith("~$"):  # Excel's lock files
                continue
            for rank, pattern in enumerate(patterns):
                if fnmatch.fnmatch(name.lower(), pattern.lower()):
                    found.append((rank, os.path.join(dirpath, name)))
                    break
    return [p for _, p in sorted(found)]


def to_int(value):
    """(int or None, ok): None for a missing cell; ok False for text that is no integer."""
    if value is None:
        return None, True
    if isinstance(value, bool):
        return None, False
    if isinstance(value, int):
        return value, True
    if isinstance(value, float):
        return (int(value), True) if value.is_integer() else (None, False)
    text = str(value).strip()
    return (int(text), True) if re.fullmatch(r"[+-]?\d+", text) else (None, False)


def find_sheet(root, what, patterns, example):
    """The first coding sheet under a database folder matching `patterns` (in their order).

    Copies may hold several versions (CASME II's 20140508 and 20190701); the first by pattern,
    then by name, is taken."""
    root = check_root(root, what)
    found = find_files(root, patterns)
    if not found:
        raise InputError(f"{root}: no {what} coding sheet ({', '.join(patterns)}) in it or below. "
                         f"Fix: pass the {what} folder holding {example}.")
    return found[0]
