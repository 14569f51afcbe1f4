"""Table 4 of the paper (clips per class and database) counted from the coding sheets alone.

Only exclusions the sheet itself decides apply here (CAS(ME)^2 macro rows, onset after offset,
missing onset/offset, duplicates); clips later lost to missing frames, faces or RPCA are not
known without the frames, so these counts can exceed the paper's (e.g. CASME II 255 vs 248).
"""
from preprocessing.clips import DATABASES
from preprocessing.labels import CLASSES
from preprocessing.loaders import read_sheet

HEADER = ("database",) + CLASSES + ("total",)


def table4(roots, rules=None, options=None):
    """[{'database': name, 'positive': n, ..., 'total': n}, ..., {'database': 'total', ...}]
    for the databases in roots = {name: folder}, in the order casme, casme2, casme2sq, samm."""
    return table4_with_skips(roots, rules, options)[0]


def table4_with_skips(roots, rules=None, options=None):
    """(rows as table4 gives them, the Skipped rows the sheets themselves exclude)."""
    unknown = sorted(set(roots) - set(DATABASES))
    if unknown:
        raise ValueError(f"unknown database(s) {unknown}; expected some of {', '.join(DATABASES)}")
    rows, skipped = [], []
    total = dict.fromkeys(HEADER[1:], 0)
    for name in DATABASES:
        if name not in roots:
            continue
        entries, skips = read_sheet(name, roots[name], rules, **(options or {}).get(name, {}))
        skipped += skips
        row = {"database": name, **dict.fromkeys(HEADER[1:], 0)}
        for e in entries:
            row[CLASSES[e.label]] += 1
        row["total"] = len(entries)
        for key in total:
            total[key] += row[key]
        rows.append(row)
    rows.append({"database": "total", **total})
    return rows, skipped


def format_csv(rows):
    lines = [",".join(HEADER)] + [",".join(str(r[k]) for k in HEADER) for r in rows]
    return "\n".join(lines) + "\n"
