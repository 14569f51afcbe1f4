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

from preprocessing.clips import Skipped
from preprocessing.errors import InputError
from preprocessing.labels import CLASSES as AU_RULE_CLASSES
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


# What a protocol file may hold, checked by jsonschema when it is read; each "description" is
# the fix named when a value does not fit. What a schema cannot say (a mapped class that is
# not in `classes`, a database without an emotion mapping) is checked in load_protocol.
_NAME = {"type": "string", "minLength": 1, "description": "a non-empty name (a JSON string)"}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "description": "an object of protocol fields: name, classes, label_by, databases, folds "
                   "(and title, source, emotions, exclude, expected)",
    "required": ["name", "classes", "label_by", "databases", "folds"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                 "description": "a short name of letters, digits, '_', '.' and '-' (it names "
                                "the data, run and report folders)"},
        "title": {"type": "string", "description": "a one-line title (a JSON string)"},
        "source": {"type": "string", "description": "where the protocol comes from (a JSON string)"},
        "classes": {"type": "array", "items": _NAME, "minItems": 2, "uniqueItems": True,
                    "description": "a list of two or more distinct class names, e.g. "
                                   "[\"negative\", \"positive\", \"surprise\"]"},
        "label_by": {"enum": list(LABEL_BY),
                     "description": "one of " + ", ".join(map(repr, LABEL_BY))},
        "databases": {"type": "array", "items": _NAME, "minItems": 1, "uniqueItems": True,
                      "description": "a list of distinct database names, e.g. [\"casme2\", "
                                     "\"samm\", \"smic-hs\"]"},
        "folds": {"enum": list(FOLDS), "description": "one of " + ", ".join(map(repr, FOLDS))},
        "emotions": {
            "type": "object",
            "description": "an object {database: {emotion: class or null}}",
            "additionalProperties": {
                "type": "object",
                "description": "an object {emotion: class or null} (null leaves the clip out)",
                "additionalProperties": {
                    "type": ["string", "null"],
                    "description": "a class name (a JSON string), or null to leave the clip out"},
            },
        },
        "exclude": {
            "type": "array",
            "description": "a list of {\"subject\": ..., \"clip\": ..., \"why\": ...} objects",
            "items": {
                "type": "object",
                "description": "an object {\"subject\": ..., \"clip\": ..., \"why\": ...}",
                "required": ["subject", "clip"],
                "additionalProperties": False,
                "properties": {"subject": _NAME, "clip": _NAME,
                               "why": {"type": "string", "description": "the reason (a JSON string)"}},
            },
        },
        "expected": {
            "type": "object",
            "description": "an object {database or \"total\": {class or \"subjects\": count}}",
            "additionalProperties": {
                "type": "object",
                "description": "an object {class or \"subjects\": count}",
                "additionalProperties": {"type": "integer", "minimum": 0,
                                         "description": "a count (a whole number, 0 or more)"},
            },
        },
    },
}


def _schema_error(path, d):
    """InputError for the first value of `d` that SCHEMA refuses (None: it fits): the file, the
    JSON path of the value, what was expected there, and the fix."""
    import jsonschema
    from jsonschema.exceptions import best_match
    error = best_match(jsonschema.Draft202012Validator(SCHEMA).iter_errors(d))
    if error is None:
        return None
    if error.validator in ("required", "additionalProperties") and isinstance(error.instance, dict):
        what = f"{error.json_path}: {error.message}"
    else:
        value = json.dumps(error.instance)
        value = value if len(value) <= 60 else value[:57] + "..."
        expected = error.schema.get("description", error.message) if isinstance(error.schema, dict) \
            else error.message
        what = f"{error.json_path} is {value}, expected {expected}"
    return InputError(f"{path}: {what}. Fix the file (its format: preprocessing/protocols.py "
                      f"SCHEMA; preprocessing/data/protocols/megc2019.json is an example)")


def load_protocol(name_or_path=None):
    """A Protocol from a name in preprocessing/data/protocols or a JSON file; checked against
    SCHEMA (jsonschema), then for what a schema cannot say."""
    path = name_or_path or DEFAULT
    if not os.path.isfile(path):
        path = os.path.join(PROTOCOL_DIR, f"{name_or_path or DEFAULT}.json")
    if not os.path.isfile(path):
        raise InputError(f"unknown protocol {name_or_path!r}: give a JSON file or one of "
                         f"{', '.join(names())}")
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except ValueError as e:   # UnicodeDecodeError included: a file that is no text
        raise InputError(f"{path}: not valid JSON ({e}). Fix the file") from None
    error = _schema_error(path, d)
    if error is not None:
        raise error

    def bad(what):
        raise InputError(f"{path}: {what}. Fix the file (preprocessing/protocols.py says what "
                         f"each field means)")

    classes = tuple(d["classes"])
    emotions = {db: {k.strip().lower(): v for k, v in m.items()}
                for db, m in d.get("emotions", {}).items()}
    if d["label_by"] == "au_rule" and classes != AU_RULE_CLASSES:
        # The AU rule gives label k to its k-th class: other names, another order or another
        # count would name its clips wrongly (positive clips called "Negative") or give labels
        # the net has no output for.
        bad(f"label_by 'au_rule' labels clips with the AU rule's {len(AU_RULE_CLASSES)} classes "
            f"{list(AU_RULE_CLASSES)} in that order, but classes is {list(classes)}: give those "
            f"classes, or label_by 'emotion' with an emotion mapping for your own")
    if d["label_by"] == "emotion":
        for db in d["databases"]:
            if db not in emotions:
                bad(f"label_by 'emotion' but no emotion mapping for {db!r}")
        for db, m in emotions.items():
            wrong = sorted({v for v in m.values() if v is not None and v not in classes})
            if wrong:
                bad(f"the {db} mapping names classes {wrong} that are not in {list(classes)}")
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
