"""How much of a score is selection: each run's scores with its final weights and with the
oracle's (per fold, the snapshot best on that fold's own test clips; psn.weight_selection).

    .venv/bin/python benchmarks/selection_gap.py RUN [RUN ...]

Each RUN must hold predictions.csv and predictions_oracle.csv (`tools/run_folds.py ...
--select final,oracle`, which predicts the snapshots once; with `--predict-only` on a trained
run). Prints RR, UF1 and UAR pooled over the folds, and the oracle's gain over final.
"""
import argparse
import os
import sys

import _init_paths  # noqa: F401,E402  (the checkout on sys.path)
from preprocessing.layout import RunFolder  # noqa: E402
from psn import metrics  # noqa: E402
from psn.predictions import read_predictions  # noqa: E402


def scores(path):
    p = read_predictions(path)
    s = metrics.scores(p.label, p.pred, p.prob.shape[1])
    return {"rr": float((p.label == p.pred).mean()), "uf1": s.uf1, "uar": s.uar, "n": len(p.label)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args(argv)
    print("%-28s %5s | %8s %8s %8s | %8s %8s %8s | %8s %8s" % (
        "run", "clips", "final RR", "UF1", "UAR", "oracle RR", "UF1", "UAR", "gain RR", "gain UF1"))
    for run in args.runs:
        folder = RunFolder(run)
        final, oracle = (scores(folder.selected_predictions(m)) for m in ("final", "oracle"))
        print("%-28s %5d | %7.2f%% %8.4f %8.4f | %8.2f%% %8.4f %8.4f | %+7.2f%% %+8.4f" % (
            os.path.basename(os.path.normpath(run)), final["n"], 100 * final["rr"], final["uf1"],
            final["uar"], 100 * oracle["rr"], oracle["uf1"], oracle["uar"],
            100 * (oracle["rr"] - final["rr"]), oracle["uf1"] - final["uf1"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
