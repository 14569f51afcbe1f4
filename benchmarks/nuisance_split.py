"""Clip accuracy split by the synthetic database's nuisances (blink or not, head drift). Prints a table.

    python benchmarks/nuisance_split.py --db work/synthetic_casme2 RUN/predictions.csv [...]

Which clips hold a blink and how far each head drifts is recomputed from the database's stamp
(synthetic.database.nuisance_table: the generator's own random streams, no frame read). Each
predictions.csv (tools/run_folds.py's) is named by its run folder. Per run: clip accuracy over
all clips, over the clips with a blink and those without, and over the clips whose head drifts
by less than / at least --drift-split pixels (of the 640 x 480 frame); the majority class's
accuracy on the same clips beside it. docs/temporal_stream.md quotes its output.
"""
import argparse
import csv
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _init_paths  # noqa: F401,E402  (the checkout on sys.path)


def read_predictions(path):
    with open(path, newline="") as f:
        return [(int(re.search(r"sub(\d+)", r["subject"]).group(1)), r["clip"], int(r["label"]),
                 int(r["pred"])) for r in csv.DictReader(f)]


def main(argv=None):
    from synthetic.database import nuisance_table
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="the synthetic database the runs were made on")
    ap.add_argument("--drift-split", type=float, default=2.0, metavar="PX")
    ap.add_argument("predictions", nargs="+", help="predictions.csv of each run")
    args = ap.parse_args(argv)
    table = nuisance_table(args.db)
    runs = [(os.path.basename(os.path.dirname(os.path.abspath(p))), read_predictions(p))
            for p in args.predictions]
    groups = {
        "all": lambda n: True,
        "blink": lambda n: n["blink"] > 0,
        "no blink": lambda n: n["blink"] == 0,
        "drift < %g px" % args.drift_split: lambda n: n["drift_px"] < args.drift_split,
        "drift ≥ %g px" % args.drift_split: lambda n: n["drift_px"] >= args.drift_split,
    }
    first = runs[0][1]
    labels = [label for _, _, label, _ in first]
    majority = max(set(labels), key=labels.count)
    print("| run | " + " | ".join("%s (clips)" % g for g in groups) + " |")
    print("|---|" + "---|" * len(groups))
    rows = [("majority class", [(s, c, lab, majority) for s, c, lab, _ in first])] + runs
    for name, preds in rows:
        cells = []
        for keep in groups.values():
            sel = [(lab, pred) for s, c, lab, pred in preds if keep(table[s, c])]
            acc = sum(lab == pred for lab, pred in sel) / len(sel) if sel else float("nan")
            cells.append("%.1f %% (%d)" % (100 * acc, len(sel)))
        print("| %s | %s |" % (name, " | ".join(cells)))


if __name__ == "__main__":
    main()
