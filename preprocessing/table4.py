"""Table 4 of the paper (clips per class and database) counted from the coding sheets alone,
under any protocol (preprocessing.protocols: the paper's by default, MEGC 2019's with its
emotion classes, exclusions and a subjects column).

Only exclusions the sheet itself decides apply here (CAS(ME)^2 macro rows, onset after offset,
missing onset/offset, duplicates, and the protocol's own), since clips later lost to missing
frames, faces or RPCA are not known without the frames; so these counts can exceed the paper's
(e.g. CASME II 255 vs 248).
"""
from preprocessing.clips import LOADERS
from preprocessing.labels import CLASSES
from preprocessing.loaders import read_sheet
from preprocessing import protocols

HEADER = ("database",) + CLASSES + ("total",)


def header(protocol=None):
    """The CSV columns: the paper's Table 4 as before; other protocols add subjects."""
    if protocol is None or protocol.name == protocols.DEFAULT:
        return HEADER
    return ("database",) + protocol.classes + ("total", "subjects")


def table4(roots, rules=None, options=None, protocol=None):
    """[{'database': name, <class>: n, ..., 'total': n}, ..., {'database': 'total', ...}]
    for the databases in roots = {loader name: folder}, in the order casme, casme2, casme2sq,
    samm, smic (SMIC's cameras as smic-hs, ...)."""
    return table4_with_skips(roots, rules, options, protocol)[0]


def table4_with_skips(roots, rules=None, options=None, protocol=None):
    """(rows as table4 gives them, the Skipped rows the sheets or the protocol exclude)."""
    unknown = sorted(set(roots) - set(LOADERS))
    if unknown:
        raise ValueError(f"unknown database(s) {unknown}; expected some of {', '.join(LOADERS)}")
    proto = protocol or protocols.load_protocol()
    protocols.check_roots(proto, roots)
    cols = header(protocol)
    classes = cols[1:cols.index("total")]
    entries, skipped = [], []
    for name in LOADERS:
        if name not in roots:
            continue
        opts = {**proto.loader_options().get(name, {}), **(options or {}).get(name, {})}
        e, s = read_sheet(name, roots[name], rules, **opts)
        entries += e
        skipped += s
    entries, skipped = protocols.apply(proto, entries, skipped)
    order = [d for d in proto.databases if any(e.database == d for e in entries)]
    rows = []
    total = {k: 0 for k in cols[1:]}
    all_subjects = set()
    for db in order:
        mine = [e for e in entries if e.database == db]
        row = {"database": db, **dict.fromkeys(cols[1:], 0)}
        for e in mine:
            row[classes[e.label]] += 1
        row["total"] = len(mine)
        if "subjects" in row:
            row["subjects"] = len({e.subject for e in mine})
            all_subjects |= {e.subject for e in mine}
        for key in total:
            total[key] += row[key]
        rows.append(row)
    if "subjects" in total:
        total["subjects"] = len(all_subjects)   # a subject of two cameras counts once
    rows.append({"database": "total", **total})
    return rows, skipped


def differences(rows, protocol):
    """Lines naming each count that differs from the protocol's published size (empty: all
    agree, or the protocol publishes none)."""
    out = []
    for row in rows:
        want = protocol.expected.get(row["database"])
        for key, value in (want or {}).items():
            if row.get(key) != value:
                out.append(f"{row['database']} {key}: {row.get(key)} here, {value} published")
    return out


def format_csv(rows, protocol=None):
    cols = header(protocol)
    lines = [",".join(cols)] + [",".join(str(r[k]) for k in cols) for r in rows]
    return "\n".join(lines) + "\n"
