"""Evaluation protocols as data: which databases, which classes and how a clip gets its class,
which clips are left out, and how folds are made. The files are
preprocessing/data/protocols/<name>.json:

    paper      the PSN paper's: CASME, CASME II, CAS(ME)^2, SAMM; 4 classes by Table 2's AU rule
               (data/au_classes.csv); 10 stratified folds. The default.
    megc2019   MEGC 2019's composite: SMIC-HS, CASME II, SAMM; 3 classes from each sheet's
               emotion column (the mapping is in the file; an emotion mapped to null leaves the
               clip out); two named CASME II clips excluded; leave one subject out.
    casme3     CAS(ME)^3 part A; the paper's 4 classes from its emotion column; leave one
               subject out.
    casme3_ac  CAS(ME)^3 parts A and C (databases casme3, casme3-c), the same classes and
               folds; part C's own words are its classes.

A protocol relabels the loaders' entries (their `label` becomes an index into the protocol's
classes) and records every clip it leaves out, with the reason, as skipped.
"""
import json
import os
from dataclasses import dataclass, field, replace

from preprocessing.atomic import write_atomic
from preprocessing.clips import Skipped
from preprocessing.errors import InputError
from preprocessing.layout import DataFolder
from preprocessing.loaders import smic

PROTOCOL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "protocols")
DEFAULT = "paper"
LABEL_BY = ("au_rule", "emotion")
FOLDS = ("stratified", "loso")
# Databases without AU coding (SMIC's cameras): the AU rule cannot label them.
NO_AUS = tuple(smic.part_name(p) for p in smic.PARTS)


@dataclass(frozen=True)
class Protocol:
    name: str
    title: str
    classes: tuple
    label_by: str
    databases: tuple
    folds: str
    emotions: dict = field(default_factory=dict)   # database -> {emotion: class or None}
    exclude: tuple = ()                            # ({subject, clip, why}, ...)
    expected: dict = field(default_factory=dict)   # database -> {class: n, "subjects": n}
    source: str = ""
    path: str = ""

    def loader_names(self):
        """The loaders this protocol reads ('smic' for smic-hs), in protocol order."""
        out = []
        for d in self.databases:
            name = d.split("-", 1)[0]
            if name not in out:
                out.append(name)
        return out

    def loader_options(self):
        """Per-loader options the protocol implies: SMIC's cameras."""
        parts = [d.split("-", 1)[1] for d in self.databases if d.startswith("smic-")]
        return {"smic": {"parts": tuple(parts)}} if parts else {}


def names():
    return sorted(os.path.splitext(f)[0] for f in os.listdir(PROTOCOL_DIR) if f.endswith(".json"))


def load_protocol(name_or_path=None):
    """A Protocol from a name in preprocessing/data/protocols or a JSON file; checked."""
    path = name_or_path or DEFAULT
    if not os.path.isfile(path):
        path = os.path.join(PROTOCOL_DIR, f"{name_or_path or DEFAULT}.json")
    if not os.path.isfile(path):
        raise InputError(f"unknown protocol {name_or_path!r}: give a JSON file or one of "
                         f"{', '.join(names())}")
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except ValueError as e:
        raise InputError(f"{path}: not valid JSON ({e}). Fix the file") from None

    def bad(what):
        raise InputError(f"{path}: {what}. Fix the file (preprocessing/protocols.py says what "
                         f"each field means)")

    for key in ("name", "classes", "label_by", "databases", "folds"):
        if key not in d:
            bad(f"no {key!r} field")
    classes = tuple(d["classes"])
    if len(classes) < 2 or len(set(classes)) != len(classes):
        bad(f"classes must be two or more distinct names, got {list(classes)}")
    if d["label_by"] not in LABEL_BY:
        bad(f"label_by must be one of {', '.join(LABEL_BY)}, got {d['label_by']!r}")
    if d["folds"] not in FOLDS:
        bad(f"folds must be one of {', '.join(FOLDS)}, got {d['folds']!r}")
    emotions = {db: {str(k).strip().lower(): v for k, v in m.items()}
                for db, m in d.get("emotions", {}).items()}
    if d["label_by"] == "emotion":
        for db in d["databases"]:
            if db not in emotions:
                bad(f"label_by 'emotion' but no emotion mapping for {db!r}")
        for db, m in emotions.items():
            wrong = sorted({v for v in m.values() if v is not None and v not in classes})
            if wrong:
                bad(f"the {db} mapping names classes {wrong} that are not in {list(classes)}")
    for x in d.get("exclude", []):
        if not {"subject", "clip"} <= set(x):
            bad(f"an exclude entry needs 'subject' and 'clip': {x}")
    return Protocol(name=d["name"], title=d.get("title", d["name"]), classes=classes,
                    label_by=d["label_by"], databases=tuple(d["databases"]), folds=d["folds"],
                    emotions=emotions, exclude=tuple(d.get("exclude", [])),
                    expected=d.get("expected", {}), source=d.get("source", ""), path=path)


def check_roots(protocol, roots):
    """Refuse databases a protocol does not use (one line naming them and the protocol's)."""
    allowed = protocol.loader_names()
    extra = [n for n in roots if n not in allowed]
    if extra:
        raise InputError(f"protocol {protocol.name} uses {', '.join(protocol.databases)}; "
                         f"{', '.join('--' + n for n in extra)} is not part of it. Leave it out, "
                         f"or choose another --protocol ({', '.join(names())})")


def apply(protocol, entries, skipped=()):
    """(entries relabelled to the protocol's classes, skipped + the clips it leaves out).

    Entries and Clips alike (the label is the only field changed). Under the AU rule the
    loaders' labels are already the paper's classes."""
    skipped = list(skipped)
    excluded = {(x["subject"], x["clip"]): x.get("why", "excluded by the protocol")
                for x in protocol.exclude}
    out = []
    owner = {}
    for e in entries:
        if e.database not in protocol.databases:
            if e.database in NO_AUS and protocol.label_by == "au_rule":
                raise InputError(f"{e.database} has no AU coding, so protocol {protocol.name} "
                                 f"(classes by the AU rule) cannot label it; it belongs to protocol megc2019")
            skipped.append(Skipped(e.database, e.subject, e.clip,
                                   f"not part of protocol {protocol.name}", e.source))
            continue
        base = e.database.split("-", 1)[0]
        if owner.setdefault(e.subject, base) != base:
            raise InputError(f"subject {e.subject} appears in {owner[e.subject]} and in {base} "
                             f"({e.source}): subject IDs must be unique across databases, or the "
                             f"folds would mix one person's clips")
        why = excluded.get((e.subject, e.clip))
        if why:
            skipped.append(Skipped(e.database, e.subject, e.clip, f"{protocol.name}: {why}", e.source))
            continue
        if protocol.label_by == "emotion":
            word = e.emotion.strip().lower()
            mapping = protocol.emotions[e.database]
            if word not in mapping:
                skipped.append(Skipped(e.database, e.subject, e.clip,
                                       f"emotion {e.emotion!r} is not in protocol {protocol.name}'s "
                                       f"mapping for {e.database} ({protocol.path}): add it there "
                                       f"if it is a spelling of a known one", e.source))
                continue
            if mapping[word] is None:
                skipped.append(Skipped(e.database, e.subject, e.clip,
                                       f"emotion {e.emotion!r} is not one of {protocol.name}'s "
                                       f"classes ({', '.join(protocol.classes)})", e.source))
                continue
            e = replace(e, label=protocol.classes.index(mapping[word]))
        out.append(e)
    return out, skipped


# ---------------------------------------------------------------- a preprocessing folder's record


def write_protocol(out, protocol):
    """OUT/protocol.json: the protocol a preprocessing folder's labels follow (run_folds gives
    the nets one output per class of it)."""
    write_atomic(DataFolder(out).protocol_file, json.dumps(
        {"name": protocol.name, "classes": list(protocol.classes),
         "folds": protocol.folds, "file": protocol.path}, indent=1) + "\n")


def read_protocol(data_dir):
    """The protocol a preprocessing folder was labelled under: {'name', 'classes', ...}; the
    paper's for a folder written before protocols existed."""
    try:
        with open(DataFolder(data_dir).protocol_file) as f:
            return json.load(f)
    except FileNotFoundError:
        paper = load_protocol()
        return {"name": paper.name, "classes": list(paper.classes), "folds": paper.folds}
