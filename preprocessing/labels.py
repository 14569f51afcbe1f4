"""AU cells -> FACS number sets -> the 4 classes of the paper (docs/design.md §1, exact-match rule).

The AU notations differ per database (CASME II `4+R10`, SAMM `(R6 or R12)+R15A`, `A/L12`,
`ref(7B)`, `soft focus`); only the FACS numbers matter for the rule, so everything else is
dropped and reported as a warning rather than guessed at.

A cell with alternatives (`R12 or R14`) can mean several AU sets. parse_aus keeps them all;
classify gives a class only when every one of them has it (ALTERNATIVES, docs/databases.md).
"""
import csv
import os
import re
from functools import lru_cache

from preprocessing.errors import InputError

CLASSES = ("positive", "negative", "surprise", "others")
N_CLASSES = len(CLASSES)
OTHERS = 3
DEFAULT_RULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "au_classes.csv")
# How classify reads a cell whose alternatives mean different AU sets: 'agree' gives a class
# only when all of them give it (else Others), 'first' takes the first alternative as written.
ALTERNATIVES = ("agree", "first")
DEFAULT_ALTERNATIVES = "agree"

# Optional "AU", side/position prefixes (Left Right Asymmetric Top Bottom Unilateral),
# the FACS number, an optional intensity letter A-E.
_SIDES, _INTENSITIES = "LRATBU", "ABCDE"
_ATOM = re.compile(r"^(?:AU)?[%s]*(\d+)[%s]?$" % (_SIDES, _INTENSITIES))
# A side and/or an intensity letter alone where a unit could stand: it qualifies the unit beside
# it ('A/L12' = 12 asymmetric or on the left; '10A/B' = 10 at intensity A or B), so the same AU.
# Longer words ('bad') are no qualifiers and are dropped with a warning like any word.
_QUALIFIER = re.compile(r"^(?=.)(?:AU)?[%s]?[%s]?$" % (_SIDES, _INTENSITIES))
_REF = re.compile(r"ref\s*\([^)]*\)", re.IGNORECASE)
_ALTERNATIVE = re.compile(r"\s+or\s+|\s*/\s*", re.IGNORECASE)
_PLUS = re.compile(r"\s*[+,;]\s*")


class AUSet(frozenset):
    """The AU set of a cell: the set its first alternative gives (all of the cell when it has
    no alternatives), and in `readings` every AU set its alternatives allow, first first."""

    def __new__(cls, aus=(), readings=None):
        return super().__new__(cls, aus)

    def __init__(self, aus=(), readings=None):
        super().__init__()
        self.readings = tuple(readings) if readings else (frozenset(self),)


def cell_text(cell):
    """The AU cell as text; Excel readers give a pure-number cell as int (openpyxl) or float (xlrd)."""
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def _split_top(text, separators):
    """Split on a regex only outside parentheses."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif depth == 0:
            m = separators.match(text, i)
            if m:                   # the separators never match the empty string
                parts.append(text[start:i])
                start = i = m.end()
                continue
        i += 1
    parts.append(text[start:])
    return parts


def _strip_parens(text):
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    return text


def _unique(sets):
    out = []
    for s in sets:
        if s not in out:
            out.append(s)
    return out


def _unit(text, warnings):
    """The AUs of one unit ('L12A', 'AU 4', and with a note 'L12 R14'), or None when it names
    no AU (a word, a lone '?', a token that is no AU: each warned about)."""
    if "?" in text:
        warnings.append(f"uncertain mark '?' ignored in {text!r}")
        text = text.replace("?", "").strip()
        if not text:
            return None
    if not re.search(r"\d", text):
        warnings.append(f"ignored word {text!r}")
        return None
    tokens = text.upper().split()
    numbered = [t for t in tokens if re.search(r"\d", t)]
    # '12 15' would otherwise run together into AU 1215; two units apart are two units.
    if len(numbered) > 1 and all(_ATOM.match(t) or _QUALIFIER.match(t) for t in tokens):
        warnings.append(f"space read as '+' in {text!r}")
        return frozenset(int(_ATOM.match(t).group(1)) for t in numbered)
    m = _ATOM.match("".join(tokens))
    if m:
        return frozenset({int(m.group(1))})
    warnings.append(f"unknown AU token {text!r} ignored")
    return None


def _options(part, warnings):
    """The AU sets one '+'-separated part can mean: one set, or one per alternative."""
    choices = [c for c in map(_strip_parens, _split_top(part, _ALTERNATIVE)) if c]
    if not choices:
        warnings.append(f"ignored {part!r} (no AU in it)")
    if len(choices) > 1:
        qualifiers = [c for c in choices if _QUALIFIER.match(re.sub(r"\s+", "", c).upper())]
        if qualifiers and len(qualifiers) < len(choices):
            choices = [c for c in choices if c not in qualifiers]
    options = []
    for choice in choices:
        if len(_split_top(choice, _PLUS)) > 1 or len(_split_top(choice, _ALTERNATIVE)) > 1:
            options += _readings(choice, warnings)
            continue
        aus = _unit(choice, warnings)
        if aus is not None:
            options.append(aus)
    return _unique(options) or [frozenset()]


def _readings(text, warnings):
    """Every AU set the text can mean (several where its alternatives differ), first first."""
    readings = [frozenset()]
    for part in _split_top(text, _PLUS):
        part = _strip_parens(part)
        if part:
            readings = _unique(r | o for r in readings for o in _options(part, warnings))
    return readings


def _joined(aus):
    return "+".join(map(str, sorted(aus))) or "(none)"


# Full-width forms (U+FF01..U+FF5E) and the ideographic space -> their ASCII characters.
_FULL_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}
_FULL_WIDTH[0x3000] = ord(" ")


def parse_aus(cell):
    """(AUSet, list of warnings) for one AU cell; never raises on odd text."""
    text = cell_text(cell)
    warnings = []
    if not text:
        return AUSet(), ["empty AU cell"]
    if text == "?":
        return AUSet(), ["AU cell '?' (not coded)"]
    narrow = text.translate(_FULL_WIDTH)
    if narrow != text:
        # CAS(ME)^3 part C types one cell with a full-width comma ('4，11'). Only the
        # full-width forms of ASCII: a superscript or circled digit stays an unknown token.
        warnings.append(f"full-width characters in {text!r} read as {narrow!r}")
        text = narrow
    for ref in _REF.findall(text):
        warnings.append(f"{ref!r} ignored")
    readings = _readings(_REF.sub("", text), warnings)
    if len(readings) > 1:
        warnings.append(f"alternatives in {text!r}: AU sets {' | '.join(map(_joined, readings))}")
    return AUSet(readings[0], readings), warnings


class Rules(dict):
    """{frozenset(AUs): class}, and two choices about cells the table cannot settle alone:
    keep_unknown_aus, for a cell holding a token that is no FACS action unit (`6+AU12x`):
    exclude the clip, naming the token (False, the default), or drop the token with a note and
    classify what is left; and alternatives, for a cell whose alternatives mean different AU
    sets (ALTERNATIVES). load_rules sets both; a plain dict gets the defaults."""


def load_rules(path=None, keep_unknown_aus=False, alternatives=DEFAULT_ALTERNATIVES):
    """Rules from a rule table like data/au_classes.csv ('#' lines are comments)."""
    if alternatives not in ALTERNATIVES:
        raise ValueError(f"alternatives must be one of {ALTERNATIVES}, not {alternatives!r}")
    path = path or DEFAULT_RULES
    if not os.path.isfile(path):
        raise InputError(f"{path}: AU rule table not found. Fix: give an existing CSV like {DEFAULT_RULES}.")
    rules, where = Rules(), {}
    rules.keep_unknown_aus = bool(keep_unknown_aus)
    rules.alternatives = alternatives
    with open(path, newline="", encoding="utf-8-sig") as f:   # Excel's CSV UTF-8 has a BOM
        lines = [(n, line) for n, line in enumerate(f, 1) if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader([line for _, line in lines])
    missing = {"aus", "class"} - set(reader.fieldnames or ())
    if missing:
        raise InputError(f"{path}: rule table needs columns aus,class (missing {sorted(missing)}; "
                         f"found {reader.fieldnames})")
    for (lineno, _), row in zip(lines[1:], reader):
        aus, warnings = parse_aus(row["aus"])
        aus = frozenset(aus)
        try:
            cls = int(row["class"])
        except (TypeError, ValueError):
            cls = None
        if not aus or warnings or cls not in range(len(CLASSES)):
            raise InputError(f"{path}:{lineno}: bad rule {row['aus']!r} -> {row['class']!r}; "
                             f"want '+'-joined FACS numbers and a class 0..{len(CLASSES) - 1}")
        if aus in rules and rules[aus] != cls:
            raise InputError(f"{path}:{lineno}: {row['aus']!r} -> {cls} contradicts line {where[aus]}")
        rules[aus], where[aus] = cls, lineno
    return rules


@lru_cache(maxsize=None)
def _default_rules():
    return load_rules(DEFAULT_RULES)


def classify(au_set, rules=None):
    """Class of an AU set: the class of the combination it equals, else Others (3). For a cell
    with alternatives (an AUSet from parse_aus with several readings), under the rules'
    alternatives choice: 'agree', the class all readings share, else Others; 'first', the
    first reading's class."""
    rules = _default_rules() if rules is None else rules
    readings = getattr(au_set, "readings", None) or (au_set,)
    if getattr(rules, "alternatives", DEFAULT_ALTERNATIVES) == "first":
        readings = readings[:1]
    classes = {rules.get(frozenset(r), OTHERS) for r in readings}
    return classes.pop() if len(classes) == 1 else OTHERS
