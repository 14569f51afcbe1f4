"""AU cells -> FACS number sets -> the 4 classes of the paper (docs/design.md §1, exact-match rule).

The AU notations differ per database (CASME II `4+R10`, SAMM `(R6 or R12)+R15A`, `ref(7B)`,
`soft focus`); only the FACS numbers matter for the rule, so everything else is dropped and
reported as a warning rather than guessed at.
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

# Optional "AU", side/position prefixes (Left Right Asymmetric Top Bottom Unilateral),
# the FACS number, an optional intensity letter A-E.
_ATOM = re.compile(r"^(?:AU)?[LRATBU]*(\d+)[A-E]?$")
_REF = re.compile(r"ref\s*\([^)]*\)", re.IGNORECASE)
_ALTERNATIVE = re.compile(r"\s+or\s+|/", re.IGNORECASE)


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


_PLUS = re.compile(r"\s*[+,;]\s*")


def _parse(text, aus, warnings):
    for part in _split_top(text, _PLUS):
        part = _strip_parens(part)
        if not part:
            continue
        choices = _split_top(part, _ALTERNATIVE)
        if len(choices) > 1:
            warnings.append(f"alternatives {part!r}: kept the first")
        first = _strip_parens(choices[0])
        if "+" in first or "," in first:
            _parse(first, aus, warnings)
            continue
        if "?" in first:
            first = first.replace("?", "").strip()
            warnings.append(f"uncertain mark '?' ignored in {part!r}")
            if not first:
                continue
        if not re.search(r"\d", first):
            warnings.append(f"ignored word {first!r}")
            continue
        m = _ATOM.match(re.sub(r"\s+", "", first).upper())
        if m:
            aus.add(int(m.group(1)))
        else:
            warnings.append(f"unknown AU token {first!r} ignored")


# Full-width forms (U+FF01..U+FF5E) and the ideographic space -> their ASCII characters.
_FULL_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}
_FULL_WIDTH[0x3000] = ord(" ")


def parse_aus(cell):
    """(frozenset of FACS numbers, list of warnings) for one AU cell; never raises on odd text."""
    text = cell_text(cell)
    warnings = []
    if not text:
        return frozenset(), ["empty AU cell"]
    if text == "?":
        return frozenset(), ["AU cell '?' (not coded)"]
    narrow = text.translate(_FULL_WIDTH)
    if narrow != text:
        # CAS(ME)^3 part C types one cell with a full-width comma ('4，11'). Only the
        # full-width forms of ASCII: a superscript or circled digit stays an unknown token.
        warnings.append(f"full-width characters in {text!r} read as {narrow!r}")
        text = narrow
    for ref in _REF.findall(text):
        warnings.append(f"{ref!r} ignored")
    aus = set()
    _parse(_REF.sub("", text), aus, warnings)
    return frozenset(aus), warnings


class Rules(dict):
    """{frozenset(AUs): class}, and what to do with a clip whose AU cell holds a token that is
    no FACS action unit (`6+AU12x`): exclude it, naming the token (the default), or, with
    keep_unknown_aus, drop the token with a note and classify what is left. load_rules sets
    keep_unknown_aus; a mapping without it (a plain dict) excludes."""


def load_rules(path=None, keep_unknown_aus=False):
    """Rules from a rule table like data/au_classes.csv ('#' lines are comments)."""
    path = path or DEFAULT_RULES
    if not os.path.isfile(path):
        raise InputError(f"{path}: AU rule table not found. Fix: give an existing CSV like {DEFAULT_RULES}.")
    rules, where = Rules(), {}
    rules.keep_unknown_aus = bool(keep_unknown_aus)
    with open(path, newline="") as f:
        lines = [(n, line) for n, line in enumerate(f, 1) if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader([line for _, line in lines])
    missing = {"aus", "class"} - set(reader.fieldnames or ())
    if missing:
        raise InputError(f"{path}: rule table needs columns aus,class (missing {sorted(missing)}; "
                         f"found {reader.fieldnames})")
    for (lineno, _), row in zip(lines[1:], reader):
        aus, warnings = parse_aus(row["aus"])
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
    """Class of an AU set: the class of the combination it equals, else Others (3)."""
    rules = _default_rules() if rules is None else rules
    return rules.get(frozenset(au_set), OTHERS)
