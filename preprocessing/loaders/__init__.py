"""One loader per database, each reading the layout its owners ship (each loader's docstring
describes it, quirks included).

load_database(name, root) -> (clips, skipped); load_databases({name: root}) composes them in
the order casme, casme2, casme2sq, samm, smic, casme3 (SMIC's cameras come out as databases smic-hs,
smic-vis, smic-nir; CAS(ME)^3's part C as casme3-c). read_sheet(...) is the sheet-only half (no frames).
The user's copy is only read, never written.
"""
from preprocessing.clips import LOADERS
from preprocessing.loaders import casme, casme2, casme2sq, casme3, samm, smic

MODULES = {"casme": casme, "casme2": casme2, "casme2sq": casme2sq, "samm": samm, "smic": smic,
           "casme3": casme3}
FRAME_OPTIONS = {"tree"}  # options that only choose frames; the sheet-only half ignores them


def _module(name):
    if name not in MODULES:
        raise ValueError(f"unknown database {name!r}; expected one of {', '.join(LOADERS)}")
    return MODULES[name]


def read_sheet(name, root, rules=None, **options):
    """(entries, skipped) from the database's coding sheet(s) alone."""
    options = {k: v for k, v in options.items() if k not in FRAME_OPTIONS}
    return _module(name).read_sheet(root, rules, **options)


def load_database(name, root, rules=None, **options):
    """(clips, skipped). Options: casme2 tree='auto'|'raw'|'selected'|'cropped';
    casme2sq offset_zero='skip'|'apex'; smic parts=('hs', 'vis', 'nir') (default: those present)."""
    return _module(name).load(root, rules, **options)


def load_databases(roots, rules=None, options=None):
    """(clips, skipped) of several databases; roots = {name: folder}, options = {name: {...}}."""
    for name in roots:
        _module(name)
    clips, skipped = [], []
    for name in LOADERS:
        if name in roots:
            c, s = load_database(name, roots[name], rules, **(options or {}).get(name, {}))
            clips += c
            skipped += s
    return clips, skipped
