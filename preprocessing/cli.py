"""Command line of the preprocessing pipeline (tools/preprocess.py).

Each subcommand is a function that adds its parser and sets `func`; adding one is adding a
function to SUBCOMMANDS.
"""
import argparse
import sys

from preprocessing.clips import DATABASES, InputError

DATABASE_HELP = {
    "casme": "CASME folder (Section A.xls, Section B.xls, sub01/EP01_5/...)",
    "casme2": "CASME II folder (CASME2-coding-20140508.xlsx, CASME2-RAW/ or CASME2_RAW_selected/)",
    "casme2sq": "CAS(ME)^2 folder (CAS(ME)^2code_final.xlsx, rawpic/)",
    "samm": "SAMM folder (SAMM_Micro_FACS_Codes_v2.xlsx, SAMM/006/...)",
}


def add_database_arguments(parser):
    """--casme DIR --casme2 DIR --casme2sq DIR --samm DIR (any subset, at least one)."""
    group = parser.add_argument_group("databases (give at least one)")
    for name in DATABASES:
        group.add_argument(f"--{name}", metavar="DIR", help=DATABASE_HELP[name])
    parser.add_argument("--rules", metavar="CSV",
                        help="AU rule table (default: preprocessing/data/au_classes.csv)")


def database_roots(args, parser):
    roots = {name: getattr(args, name) for name in DATABASES if getattr(args, name)}
    if not roots:
        parser.error("give at least one of " + ", ".join(f"--{n}" for n in DATABASES))
    return roots


def _table4(subparsers):
    p = subparsers.add_parser("table4", help="count clips per class from the sheets alone (Table 4 as CSV)")
    add_database_arguments(p)

    def run(args):
        from preprocessing.labels import load_rules
        from preprocessing.table4 import format_csv, table4_with_skips
        rules = load_rules(args.rules) if args.rules else None
        rows, skipped = table4_with_skips(database_roots(args, p), rules)
        for s in skipped:
            print(f"excluded {s.database} {s.subject} {s.clip}: {s.reason} ({s.source})", file=sys.stderr)
        sys.stdout.write(format_csv(rows))
        return 0

    p.set_defaults(func=run)


SUBCOMMANDS = [_table4]


def build_parser():
    parser = argparse.ArgumentParser(prog="preprocess.py", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
