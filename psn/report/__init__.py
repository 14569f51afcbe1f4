"""The paper's tables and figures from predictions.csv files (one per run) and Caffe logs.

    tools/report.py PREDICTIONS.csv [MORE.csv ...] [--names A B ...] [--logs DIR ...] --out DIR

predictions.csv columns: database,subject,clip,fold,label,pred,prob_0,prob_1,prob_2,prob_3
(one row per test clip; classes 0 Positive, 1 Negative, 2 Surprise, 3 Others).

Writes into --out:
  report.md            every table below, in markdown, with the figures linked
  metrics.json         all runs: {"runs": {name: <run metrics>}, "comparison": [...], ...};
                       with a single run its headline keys (rr_pooled, uf1_pooled, ...,
                       rr_fold_mean, rr_fold_std, ...) are also at the top level
  comparison.csv/.png  runs vs the majority-class baseline vs the paper's PSN (Table 5, Fig. 7)
  fold_rr.csv          RR mean/std over folds per run, next to the paper's Table 9
  <run>/metrics.json   one run: pooled and fold-averaged RR, F1 (= UF1), UF1, UAR, per-class
                       TPR/TNR, per database, per fold, its majority baseline
  <run>/summary.csv, per_class.csv, per_database.csv, folds.csv,
  <run>/confusion_counts.csv, confusion_normalised.csv  (Tables 7-8 layout: all clips, then
                       each database), confusion_<scope>.png heatmaps
  <run>/rates_by_database.csv/.png  RR, TPR and TNR per class for each database (Fig. 6)
  <run>/logs/*.train, *.test, <run>/curves.png  (Fig. 9) when --logs gives that run's logs

Metric definitions (pooled vs fold-averaged, absent classes, std) are in psn/metrics.py.
"""
import argparse
import contextlib
import os
import sys

from preprocessing.atomic import write_atomic
from psn import caffe_log, metrics
from psn.predictions import PredictionsError, read_predictions
from psn.report.comparison import COMPARISON_FIELDS, comparison_rows, paper_table7_pooled
from psn.report.errors import ReportError
from psn.report.files import safe_name, write_csv, write_json
from psn.report.logs import log_map, logs_of, run_curves
from psn.report.markdown import markdown
from psn.report.run import run_metrics, write_run

__all__ = ["make_report", "make_megc_report", "main", "ReportError", "PredictionsError", "read_predictions"]


def _default_names(paths):
    names = []
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        parent = os.path.basename(os.path.dirname(os.path.abspath(p)))
        names.append(parent if stem == "predictions" and parent else stem)
    return names


def _unique(names):
    out, seen = [], {}
    for n in names:
        base = safe_name(n)
        k = seen.get(base, 0)
        seen[base] = k + 1
        out.append(base if k == 0 else "%s_%d" % (base, k + 1))
    return out


def make_report(pred_paths, out_dir, names=None, logs=None):
    """Build the whole report; returns the combined metrics dict."""
    if names is not None and len(names) != len(pred_paths):
        raise ReportError("--names: %d name(s) for %d predictions file(s)"
                          % (len(names), len(pred_paths)))
    names = _unique(names if names is not None else _default_names(pred_paths))
    log_dirs = log_map(logs or [], names)
    # Every input is checked before anything is written.
    preds = [read_predictions(p) for p in pred_paths]
    # The paper's tables name its 4 classes: a run of another protocol's classes is refused
    # rather than reported under the wrong names.
    for path, p in zip(pred_paths, preds):
        if p.prob.shape[1] != metrics.N_CLASSES:
            raise ReportError("%s: prob_0..prob_%d give %d classes, the paper's report has %d: "
                              "a run under another protocol (tools/report.py --protocol megc2019 "
                              "reports MEGC 2019's 3 classes)"
                              % (path, p.prob.shape[1] - 1, p.prob.shape[1], metrics.N_CLASSES))
    log_files = {name: logs_of(d) for name, d in log_dirs.items()}
    with report_folder(out_dir) as stage:
        return _write_report(stage, names, preds, log_dirs, log_files)


REPORT_MARK = ".psn-report"


def _is_report(folder):
    return any(os.path.exists(os.path.join(folder, n)) for n in (REPORT_MARK, "report.md", "megc2019.md"))


@contextlib.contextmanager
def report_folder(out_dir):
    """The report is written whole into a staging folder that then replaces out_dir, so that a report
    killed while rewritten never leaves a folder mixing two runs' files. ReportError for an
    out_dir that holds other files than a report's."""
    from preprocessing.atomic import NotOurs, replaced_folder
    try:
        with replaced_folder(out_dir, _is_report) as stage:
            with open(os.path.join(stage, REPORT_MARK), "w") as f:
                f.write("written by tools/report.py; replaced whole on each report\n")
            try:
                yield stage
            except OSError as e:
                # Name the file where the user will look for it, not in the staging folder.
                if isinstance(e.filename, str) and e.filename.startswith(stage):
                    e.filename = os.path.abspath(out_dir) + e.filename[len(stage):]
                raise
    except NotOurs as e:
        raise ReportError("--out %s" % e) from None


def _write_report(out_dir, names, preds, log_dirs, log_files):
    runs, run_files = [], {}
    for name, p in zip(names, preds):
        run_dir = os.path.join(out_dir, name)
        m = run_metrics(name, p)
        run_files[name] = write_run(name, p, run_dir, m)
        if name in log_dirs:
            m["logs"], _ = run_curves(name, log_dirs[name], log_files[name], run_dir)
        write_json(os.path.join(run_dir, "metrics.json"), m)
        runs.append((name, m, p))

    from psn import plots
    comp = comparison_rows(runs)
    write_csv(os.path.join(out_dir, "comparison.csv"), COMPARISON_FIELDS,
               [[r[k] for k in COMPARISON_FIELDS] for r in comp])
    plots.comparison_bars(comp, os.path.join(out_dir, "comparison.png"))
    fold_rows = [[name, "run", m["n_folds"], m["rr_fold_mean"], m["rr_fold_std"], m["rr_fold_std_sample"],
                  m["uf1_fold_mean"], m["uf1_pooled"]] for name, m, _ in runs]
    fold_rows += [["paper %s + %s" % bf, "paper (Table 9)", 10, v["rr_mean"], v["rr_std"], None,
                   v["f1"], None] for bf, v in metrics.PAPER_TABLE9.items()]
    write_csv(os.path.join(out_dir, "fold_rr.csv"),
               ["name", "kind", "n_folds", "rr_fold_mean", "rr_fold_std", "rr_fold_std_sample",
                "uf1_fold_mean", "uf1_pooled"], fold_rows)

    combined = {"runs": {name: m for name, m, _ in runs}, "order": names,
                "comparison": comp, "paper_psn": metrics.PAPER_PSN,
                "paper_psn_table7_pooled": paper_table7_pooled()}
    if len(runs) == 1:
        m = runs[0][1]
        for k in ("rr_pooled", "uf1_pooled", "uar_pooled", "f1_pooled", "rr_fold_mean",
                  "rr_fold_std", "rr_fold_std_sample", "uf1_fold_mean", "uar_fold_mean",
                  "f1_fold_mean", "n_clips", "n_folds"):
            combined[k] = m[k]
    write_json(os.path.join(out_dir, "metrics.json"), combined)
    write_atomic(os.path.join(out_dir, "report.md"), markdown(runs, comp, run_files))
    return combined


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="RR, F1/UF1, UAR, TPR/TNR, confusion matrices (Tables 5-9, Fig. 7, 9) "
                    "from predictions.csv files and Caffe logs.")
    ap.add_argument("predictions", nargs="+", help="predictions.csv of each run")
    ap.add_argument("--names", nargs="+", help="a name per run, comma-separated (default: the folder holding "
                                               "predictions.csv, else the file's stem)")
    ap.add_argument("--logs", nargs="+", metavar="DIR",
                    help="Caffe logs per run: one folder (or log file) per run in order, or "
                         "NAME=DIR; searched recursively, logs recognised by their content")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--protocol", default="paper", choices=("paper", "megc2019"),
                    help="paper (default): the paper's tables and figures; megc2019: UF1 and "
                         "UAR of the composite and per database with the published baselines")
    args = ap.parse_args(argv)
    if args.names:   # a value list is comma-separated in every tool; spaces are kept working
        args.names = [n for token in args.names for n in token.split(",") if n]
    from preprocessing.errors import fail
    # One line naming the file and the fix, exit 2, under either protocol: a malformed or
    # binary predictions file, bad names or logs, a --out that cannot be written.
    try:
        if args.protocol == "megc2019":
            return megc_main(args)
        combined = make_report(args.predictions, args.out, args.names, args.logs)
    except (PredictionsError, ReportError, caffe_log.LogError, OSError) as exc:
        return fail("error: ", exc)
    except UnicodeDecodeError as exc:
        return fail("error: ", "a file given to report.py is not text (%s): give predictions.csv "
                               "files written by run_folds" % exc.reason)
    for name in combined["order"]:
        m = combined["runs"][name]
        print("%-24s RR %.2f %% (fold mean %.2f +/- %.3f)  UF1 %.4f (fold mean %.4f)  "
              "UAR %.4f (fold mean %.4f)" % (name, 100 * m["rr_pooled"], 100 * m["rr_fold_mean"],
                                              m["rr_fold_std"], m["uf1_pooled"], m["uf1_fold_mean"],
                                              m["uar_pooled"], m["uar_fold_mean"]))
    print("wrote %s" % os.path.join(args.out, "report.md"))
    return 0


def make_megc_report(pred_paths, out_dir, names=None, note=""):
    """MEGC 2019's table and chart per run (OUT/megc2019.* for one run; for several, OUT/<name>/
    each and OUT/megc2019.* with all of them beside the published rows); returns {name: scores}."""
    from preprocessing.protocols import load_protocol
    from psn.report.megc import write_megc
    n_classes = len(load_protocol("megc2019").classes)
    names = _unique(names if names is not None else _default_names(pred_paths))
    preds = [read_predictions(p, n_classes) for p in pred_paths]
    out = {}
    with report_folder(out_dir) as stage:
        for name, p in zip(names, preds):
            target = stage if len(preds) == 1 else os.path.join(stage, name)
            out[name] = write_megc(p.label, p.pred, p.database, target, name, n_classes, note)
        if len(preds) > 1:
            # Every run in one table too, beside the published rows: the first run is "ours",
            # the others (e.g. the flow baselines trained on the same folds) follow it.
            p = preds[0]
            write_megc(p.label, p.pred, p.database, stage, names[0], n_classes, note,
                       more=[(n, out[n]) for n in names[1:]])
    return out


def megc_main(args):
    """report.py --protocol megc2019; main turns its errors into one line."""
    results = make_megc_report(args.predictions, args.out, args.names)
    for name, parts in results.items():
        print("%-24s " % name + "  ".join("%s UF1 %.4f UAR %.4f" % (part, v["uf1"], v["uar"])
                                          for part, v in parts.items()))
    print("wrote %s" % os.path.join(args.out, "megc2019.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
