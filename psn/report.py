"""The paper's tables and figures from predictions.csv files (one per run) and Caffe logs.

    tools/report.py PREDICTIONS.csv [MORE.csv ...] [--names A B ...] [--logs DIR ...] --out DIR

predictions.csv columns: database,subject,clip,fold,label,pred,prob_0,prob_1,prob_2,prob_3
(one row per test clip; classes 0 Positive, 1 Negative, 2 Surprise, 3 Others).

Writes into --out:
  report.md            every table below, in markdown, with the figures linked
  metrics.json         all runs: {"runs": {name: <run metrics>}, "comparison": [...], ...};
                       with a single run its headline keys (rr, uf1, uar, rr_mean, rr_std, ...)
                       are also at the top level
  comparison.csv/.png  runs vs the majority-class baseline vs the paper's PSN (Table 5, Fig. 7)
  fold_rr.csv          RR mean/std over folds per run, next to the paper's Table 9
  <run>/metrics.json   one run: pooled and fold-averaged RR, F1 (= UF1), UF1, UAR, per-class
                       TPR/TNR, per database, per fold, its majority baseline
  <run>/summary.csv, per_class.csv, per_database.csv, folds.csv,
  <run>/confusion_counts.csv, confusion_normalised.csv  (Tables 7-8 layout: all clips, then
                       each database), confusion_<scope>.png heatmaps
  <run>/logs/*.train, *.test, <run>/curves.png  (Fig. 9) when --logs gives that run's logs

Metric definitions (pooled vs fold-averaged, absent classes, std) are in psn/metrics.py.
"""
import argparse
import csv
import datetime
import io
import json
import math
import os
import re
import sys

import numpy as np

from preprocessing.atomic import write_atomic
from psn import caffe_log, metrics
from psn.metrics import CLASS_NAMES, CLASS_SHORT, N_CLASSES
from psn.predictions import PredictionsError, read_predictions

DATABASE_NAMES = {"casme": "CASME", "casme2": "CASME II", "casme2sq": "CAS(ME)^2", "samm": "SAMM"}


class ReportError(ValueError):
    """Bad report arguments (names, log folders)."""


# ---------------------------------------------------------------- writing


def _write_csv(path, header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else _csv_num(v) for v in r])
    return write_atomic(path, buf.getvalue())


def _csv_num(v):
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else repr(float(v))
    if isinstance(v, np.integer):
        return str(int(v))
    return v


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)  # JSON has no NaN
    return obj


def _write_json(path, obj):
    return write_atomic(path, json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


# ---------------------------------------------------------------- metrics of a run


def _db_order(databases):
    known = [d for d in DATABASE_NAMES if d in set(databases)]
    return known + sorted(set(databases) - set(known))


def _db_name(db):
    return DATABASE_NAMES.get(db, db)


def _per_class(s):
    return {CLASS_NAMES[c]: {"support": s.support[c], "tp": s.tp[c], "fp": s.fp[c],
                             "fn": s.fn[c], "tn": s.tn[c], "tpr": s.tpr[c], "tnr": s.tnr[c],
                             "precision": s.precision[c], "f1": s.f1[c]}
            for c in range(N_CLASSES)}


def run_metrics(name, p):
    """Everything the report says about one run, as a JSON-ready dict (NaN kept as float)."""
    out = {"name": name, "predictions": os.path.abspath(p.path)}
    out.update(metrics.summary(p.label, p.pred, p.fold))
    # The paper's F1 is UF1 (Table 5 = Table 6); the same numbers under the paper's name.
    out["f1"] = out["uf1"]
    out["f1_fold_mean"] = out["uf1_fold_mean"]
    pooled = metrics.scores(p.label, p.pred)
    out["confusion"] = pooled.confusion
    out["confusion_normalised"] = pooled.normalised()
    out["per_class"] = _per_class(pooled)
    out["per_database"] = {}
    for db in _db_order(p.database):
        m = p.database == db
        s = metrics.scores(p.label[m], p.pred[m])
        out["per_database"][db] = {
            "name": _db_name(db), "n": s.n, "rr": s.rr, "uf1": s.uf1, "uar": s.uar,
            "confusion": s.confusion, "confusion_normalised": s.normalised(),
            "per_class": _per_class(s),
            "paper_psn": metrics.PAPER_PSN_BY_DATABASE.get(db)}
    out["folds"] = [{"fold": f, "n": s.n, "rr": s.rr, "uf1": s.uf1, "uar": s.uar}
                    for f, s in metrics.per_fold(p.label, p.pred, p.fold)]
    base_pred = metrics.majority_baseline(p.label, p.fold)
    base = metrics.summary(p.label, base_pred, p.fold)
    base["rule"] = ("most frequent class of the other folds (the fold's training set)"
                    if base["n_folds"] > 1 else
                    "most frequent class over all clips (one fold: no training set to use)")
    base["class_per_fold"] = {f: CLASS_NAMES[int(base_pred[p.fold == f][0])]
                              for f in metrics.fold_order(p.fold)}
    out["majority_baseline"] = base
    out["definitions"] = {
        "pooled": "rr, uf1, uar, f1: one confusion matrix over all folds' test clips",
        "fold_mean": "*_fold_mean, rr_mean: computed per fold, then averaged over folds",
        "std": "rr_std, *_fold_std: population std over folds (ddof=0); *_std_sample: ddof=1",
        "f1": "f1 = uf1 = mean over classes of 2TP/(2TP+FP+FN): the paper's F1 (Table 5 F1 "
              "equals Table 6 UF1)",
        "absent_classes": "a class with 2TP+FP+FN = 0 is left out of UF1's mean; a class "
                          "without true clips is left out of UAR's mean",
        "units": "fractions (RR 0.6492 = 64.92 %)",
    }
    return out


# ---------------------------------------------------------------- logs


_SKIP_EXT = (".caffemodel", ".solverstate", ".h5", ".hdf5", ".png", ".jpg", ".jpeg", ".npy",
             ".npz", ".csv", ".train", ".test", ".prototxt", ".json", ".md", ".py", ".txt~")
_LOG_SNIFF = re.compile(r"^[IWEF]\d{4}(?:\d{4})? \d\d:\d\d:\d\d.*\] (?:Solving |Iteration \d+)",
                        re.MULTILINE)


def find_logs(directory):
    """Caffe training logs under ``directory`` (or the file itself), by content, sorted."""
    if os.path.isfile(directory):
        candidates = [directory]
    elif os.path.isdir(directory):
        candidates = []
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            candidates.extend(os.path.join(root, f) for f in sorted(files))
    else:
        raise ReportError("--logs %s: no such file or folder" % directory)
    logs = []
    for path in candidates:
        if path.lower().endswith(_SKIP_EXT) or os.path.getsize(path) == 0:
            continue
        try:
            with open(path, "rb") as f:
                head = f.read(1 << 20).decode("utf-8", errors="replace")
        except OSError:
            continue
        if _LOG_SNIFF.search(head):
            logs.append(path)
    return logs


def _pick(row_keys, exact, contains):
    if exact in row_keys:
        return exact
    for k in row_keys:
        if contains in k.lower() and not re.search(r"_net\d+$", k):
            return k
    return None


def logs_of(log_dir):
    """find_logs, but an empty result is an error: the user asked for these curves."""
    logs = find_logs(log_dir)
    if not logs:
        raise ReportError(
            "--logs %s: no Caffe training logs found (looked for glog lines with "
            "'Solving' or 'Iteration N'); point --logs at the folder run_folds wrote" % log_dir)
    return logs


def run_curves(name, log_dir, logs, run_dir):
    """Parse the logs of one run into <run_dir>/logs/*.train|.test and curves.png."""
    base_dir = log_dir if os.path.isdir(log_dir) else os.path.dirname(log_dir)
    curves, entries = [], []
    for path in logs:
        rel = os.path.relpath(path, base_dir)
        train, test = caffe_log.parse_log(path)
        stem = rel.replace(os.sep, "__")
        tr_csv, te_csv = caffe_log.save_csv_files(path, os.path.join(run_dir, "logs"), train,
                                                  test, basename=stem)
        keys = caffe_log.columns(test)
        acc_key = _pick(keys, "accuracy", "acc")
        loss_key = _pick(keys, "loss", "loss")
        tr_loss_key = _pick(caffe_log.columns(train), "loss", "loss")
        curves.append({
            "label": rel,
            "test_iters": [r["NumIters"] for r in test if acc_key in r or loss_key in r],
            "test_acc": [r.get(acc_key, math.nan) for r in test
                         if acc_key in r or loss_key in r] if acc_key else [],
            "test_loss": [r.get(loss_key, math.nan) for r in test
                          if acc_key in r or loss_key in r] if loss_key else [],
            "train_iters": [r["NumIters"] for r in train],
            "train_loss": [r.get(tr_loss_key, math.nan) for r in train] if tr_loss_key else [],
        })
        last = test[-1] if test else {}
        entries.append({"log": os.path.abspath(path), "label": rel, "train_csv": tr_csv, "test_csv": te_csv,
                        "train_rows": len(train), "test_rows": len(test),
                        "last_iteration": max([r["NumIters"] for r in train + test], default=None),
                        "last_test_accuracy": last.get(acc_key) if acc_key else None,
                        "last_test_loss": last.get(loss_key) if loss_key else None})
    from psn import plots
    png = plots.training_curves(curves, os.path.join(run_dir, "curves.png"),
                                "%s: training curves (cf. Fig. 9)" % name)
    return entries, png


# ---------------------------------------------------------------- per-run files


def _scopes(p):
    yield "all", "all clips", np.ones(len(p), dtype=bool)
    for db in _db_order(p.database):
        yield db, _db_name(db), p.database == db


def write_run(name, p, run_dir, m):
    from psn import plots
    os.makedirs(run_dir, exist_ok=True)
    files = {}
    _write_csv(os.path.join(run_dir, "summary.csv"), ["metric", "basis", "value"], [
        ["rr", "pooled", m["rr"]], ["rr", "fold_mean", m["rr_mean"]],
        ["rr", "fold_std_population", m["rr_std"]], ["rr", "fold_std_sample", m["rr_std_sample"]],
        ["f1 (= uf1, the paper's F1)", "pooled", m["f1"]],
        ["f1 (= uf1, the paper's F1)", "fold_mean", m["f1_fold_mean"]],
        ["uf1", "pooled", m["uf1"]], ["uf1", "fold_mean", m["uf1_fold_mean"]],
        ["uf1", "fold_std_population", m["uf1_fold_std"]],
        ["uar", "pooled", m["uar"]], ["uar", "fold_mean", m["uar_fold_mean"]],
        ["uar", "fold_std_population", m["uar_fold_std"]],
        ["n_clips", "", m["n_clips"]], ["n_folds", "", m["n_folds"]],
    ])
    counts_rows, norm_rows, class_rows, heatmaps = [], [], [], []
    for key, title, mask in _scopes(p):
        s = metrics.scores(p.label[mask], p.pred[mask])
        norm = s.normalised()
        for c in range(N_CLASSES):
            counts_rows.append([key, CLASS_SHORT[c], s.support[c]] + list(s.confusion[c]))
            norm_rows.append([key, CLASS_SHORT[c], s.support[c]] + [round(float(v), 6)
                                                                     for v in norm[c]])
            class_rows.append([key, c, CLASS_NAMES[c], s.support[c], s.tp[c], s.fp[c], s.fn[c],
                               s.tn[c], s.tpr[c], s.tnr[c], s.precision[c], s.f1[c]])
        png = os.path.join(run_dir, "confusion_%s.png" % _safe(key))
        plots.confusion_heatmap(s.confusion, png, "%s: %s (%d clips)" % (name, title, s.n))
        heatmaps.append(os.path.basename(png))
    head = ["scope", "true", "n"] + list(CLASS_SHORT)
    _write_csv(os.path.join(run_dir, "confusion_counts.csv"), head, counts_rows)
    _write_csv(os.path.join(run_dir, "confusion_normalised.csv"), head, norm_rows)
    _write_csv(os.path.join(run_dir, "per_class.csv"),
               ["scope", "class", "name", "support", "tp", "fp", "fn", "tn", "tpr", "tnr",
                "precision", "f1"], class_rows)
    _write_csv(os.path.join(run_dir, "per_database.csv"),
               ["database", "name", "n", "rr", "uf1", "uar", "paper_psn_uar", "paper_psn_uf1"],
               [[db, d["name"], d["n"], d["rr"], d["uf1"], d["uar"],
                 (d["paper_psn"] or {}).get("uar"), (d["paper_psn"] or {}).get("uf1")]
                for db, d in m["per_database"].items()])
    _write_csv(os.path.join(run_dir, "folds.csv"), ["fold", "n", "rr", "uf1", "uar"],
               [[f["fold"], f["n"], f["rr"], f["uf1"], f["uar"]] for f in m["folds"]])
    files["heatmaps"] = heatmaps
    return files


# ---------------------------------------------------------------- comparison


def paper_table7_pooled():
    """Pooled RR/UF1/UAR of the paper's own Table 7 PSN confusion matrix."""
    t7 = metrics.scores_from_confusion(metrics.PAPER_PSN_CONFUSION)
    return {"rr": t7.rr, "uf1": t7.uf1, "uar": t7.uar, "n_clips": t7.n}


def comparison_rows(runs):
    """Table 5 / Fig. 7 rows: each run, the majority baseline(s), the paper's PSN."""
    rows = []
    keys = ("rr", "rr_mean", "rr_std", "uf1", "uf1_fold_mean", "uar", "uar_fold_mean",
            "n_clips", "n_folds")

    def row(name, kind, src, note=""):
        return {"name": name, "kind": kind,
                "rr_pooled": src.get("rr"), "rr_fold_mean": src.get("rr_mean"),
                "rr_fold_std": src.get("rr_std"), "uf1_pooled": src.get("uf1"),
                "uf1_fold_mean": src.get("uf1_fold_mean"), "uar_pooled": src.get("uar"),
                "uar_fold_mean": src.get("uar_fold_mean"), "n_clips": src.get("n_clips"),
                "n_folds": src.get("n_folds"), "note": note}

    for name, m, _ in runs:
        rows.append(row(name, "run", m))
    # One baseline row per distinct clip set (runs on the same folds share it).
    baselines = {}
    for name, m, p in runs:
        sig = tuple(zip(p.database, p.subject, p.clip, p.fold, p.label.tolist()))
        baselines.setdefault(sig, []).append((name, m))
    for members in baselines.values():
        name, m = members[0]
        label = "majority class" + ("" if len(baselines) == 1 else " (%s)" % name)
        rows.append(row(label, "baseline", {k: m["majority_baseline"].get(k) for k in keys},
                        m["majority_baseline"]["rule"]))
    paper = metrics.PAPER_PSN
    rows.append(row("paper PSN (reported)", "paper",
                    {"rr": paper["rr"], "rr_mean": paper["rr"], "rr_std": paper["rr_std"],
                     "uf1_fold_mean": paper["uf1"], "uar_fold_mean": paper["uar"],
                     "n_clips": 650, "n_folds": 10},
                    "Tables 5, 6, 9. RR pools exactly from Table 7; F1 (=UF1) and UAR do not, "
                    "so they are shown as fold means (docs/design.md §4: likely averaged per fold)"))
    rows.append(row("paper PSN (Table 7, pooled)", "paper",
                    paper_table7_pooled(),
                    "computed here from the paper's Table 7 confusion matrix"))
    return rows


COMPARISON_FIELDS = ("name", "kind", "rr_pooled", "rr_fold_mean", "rr_fold_std", "uf1_pooled",
                     "uf1_fold_mean", "uar_pooled", "uar_fold_mean", "n_clips", "n_folds", "note")


# ---------------------------------------------------------------- markdown


def _pct(v):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else "%.2f" % (100 * v)


def _f4(v):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else "%.4f" % v


def _f3(v):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else "%.3f" % v


def _md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _md_escape(text):
    return str(text).replace("|", "\\|")


def markdown(runs, comp, run_files):
    L = ["# PSN report\n",
         "Generated %s by `tools/report.py`.\n" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
         "Runs:\n"]
    for name, m, p in runs:
        L.append("- **%s**: `%s` (%d clips, %d folds)" % (_md_escape(name), p.path,
                                                         m["n_clips"], m["n_folds"]))
    L.append("")
    L.append("## Conventions\n")
    L.append("- **Pooled**: one confusion matrix over all folds' test clips (MEGC convention). "
             "**Fold mean**: the metric per fold, averaged over folds.")
    L.append("- F1_c = 2TP/(2TP+FP+FN); **UF1** = mean F1_c; **UAR** = mean per-class recall. "
             "The paper's \"F1\" is UF1 (Table 5's F1 equals Table 6's UF1).")
    L.append("- A class with 2TP+FP+FN = 0 is left out of UF1's mean; a class without true "
             "clips is left out of UAR's mean (only matters per fold / per database).")
    L.append("- RR std: population std over folds (ddof = 0), as a fraction like Table 9 "
             "(0.084 = 8.4 points); the sample std (ddof = 1) is in metrics.json.")
    L.append("- Majority baseline: each fold predicts the most frequent class of the other "
             "folds (its training set); with one fold, the most frequent class overall.")
    L.append("- Pooling the paper's own Table 7 gives RR 64.92 % but UF1 0.4653 and UAR "
             "0.4471, not the reported 0.5211 / 0.4871: the paper likely averaged per fold.\n")

    L.append("## Comparison (Table 5, Fig. 7)\n")
    L.append(_md_table(
        ["name", "clips", "folds", "RR pooled %", "RR fold mean %", "RR std", "UF1 pooled",
         "UF1 fold mean", "UAR pooled", "UAR fold mean"],
        [[_md_escape(r["name"]), r["n_clips"] or "n/a", r["n_folds"] or "n/a",
          _pct(r["rr_pooled"]), _pct(r["rr_fold_mean"]), _f3(r["rr_fold_std"]),
          _f4(r["uf1_pooled"]), _f4(r["uf1_fold_mean"]), _f4(r["uar_pooled"]),
          _f4(r["uar_fold_mean"])] for r in comp]))
    for r in comp:
        if r["note"]:
            L.append("- %s: %s" % (_md_escape(r["name"]), r["note"]))
    L.append("\n![comparison](comparison.png)\n")

    L.append("## Recognition rate over folds (Table 9)\n")
    rows = [[_md_escape(name), m["n_folds"], _pct(m["rr_mean"]), _f3(m["rr_std"]),
             _f3(m["rr_std_sample"]), _f4(m["uf1_fold_mean"]), _f4(m["uf1"])]
            for name, m, _ in runs]
    rows += [["paper %s + %s" % bf, 10, _pct(v["rr_mean"]), _f3(v["rr_std"]), "n/a",
              _f4(v["f1"]), "n/a"] for bf, v in metrics.PAPER_TABLE9.items()]
    L.append(_md_table(["name", "folds", "RR_mean %", "RR_std (pop.)", "RR_std (sample)",
                        "F1 = UF1 fold mean", "UF1 pooled"], rows))
    L.append("Paper rows: Table 9 as printed (F1 there is the reported F1).\n")

    for name, m, p in runs:
        L.append("## Run: %s\n" % _md_escape(name))
        L.append("RR %s %% pooled, %s %% ± %s over folds; UF1 %s pooled, %s fold mean; "
                 "UAR %s pooled, %s fold mean.\n" % (
                     _pct(m["rr"]), _pct(m["rr_mean"]), _f3(m["rr_std"]), _f4(m["uf1"]),
                     _f4(m["uf1_fold_mean"]), _f4(m["uar"]), _f4(m["uar_fold_mean"])))
        L.append("### Per database (Table 6 layout; pooled within the database)\n")
        rows = [["Combined", m["n_clips"], _pct(m["rr"]), _f4(m["uar"]), _f4(m["uf1"]),
                 _f4(metrics.PAPER_PSN["uar"]), _f4(metrics.PAPER_PSN["uf1"])]]
        for db, d in m["per_database"].items():
            ref = d["paper_psn"] or {}
            rows.append([_md_escape(d["name"]), d["n"], _pct(d["rr"]), _f4(d["uar"]),
                         _f4(d["uf1"]), _f4(ref.get("uar")), _f4(ref.get("uf1"))])
        L.append(_md_table(["database", "clips", "RR %", "UAR", "UF1", "paper PSN UAR",
                            "paper PSN UF1"], rows))
        L.append("### Confusion matrix, all clips (Table 7 layout: counts)\n")
        cm = np.asarray(m["confusion"])
        L.append(_md_table(["true \\ pred"] + list(CLASS_SHORT),
                           [["%s (%d)" % (CLASS_SHORT[c], cm[c].sum())] + list(cm[c])
                            for c in range(N_CLASSES)]))
        L.append("### Confusion matrices per database (Table 8 layout: row-normalised)\n")
        rows = []
        for db, d in m["per_database"].items():
            cmd = np.asarray(d["confusion"])
            nd = np.asarray(d["confusion_normalised"], dtype=float)
            for c in range(N_CLASSES):
                rows.append(["%s (%d)" % (_md_escape(d["name"]), d["n"]) if c == 0 else "",
                             "%s (%d)" % (CLASS_SHORT[c], cmd[c].sum())]
                            + ["n/a" if math.isnan(v) else "%.2f" % v for v in nd[c]])
        L.append(_md_table(["database", "true \\ pred"] + list(CLASS_SHORT), rows))
        L.append("### Per class, all clips (pooled)\n")
        L.append(_md_table(["class", "clips", "TPR (recall)", "TNR", "precision", "F1_c"],
                           [[n, v["support"], _f4(v["tpr"]), _f4(v["tnr"]),
                             _f4(v["precision"]), _f4(v["f1"])]
                            for n, v in m["per_class"].items()]))
        L.append("Per database: `%s/per_class.csv`.\n" % name)
        L.append("### Folds\n")
        L.append(_md_table(["fold", "clips", "RR %", "UF1", "UAR"],
                           [[_md_escape(f["fold"]), f["n"], _pct(f["rr"]), _f4(f["uf1"]),
                             _f4(f["uar"])] for f in m["folds"]]))
        b = m["majority_baseline"]
        L.append("Majority baseline (%s): RR %s %%, UF1 %s, UAR %s; class per fold: %s.\n" % (
            b["rule"], _pct(b["rr"]), _f4(b["uf1"]), _f4(b["uar"]),
            ", ".join("%s→%s" % kv for kv in b["class_per_fold"].items())))
        L.append("### Figures\n")
        for png in run_files[name]["heatmaps"]:
            L.append("![%s](%s/%s)" % (png, name, png))
        L.append("")
        if m.get("logs"):
            L.append("### Training curves (Fig. 9)\n")
            L.append("![curves](%s/curves.png)\n" % name)
            L.append(_md_table(["log", "last iteration", "last test accuracy", "last test loss"],
                               [[_md_escape(e["label"]), e["last_iteration"], _f4(e["last_test_accuracy"]),
                                 _f4(e["last_test_loss"])] for e in m["logs"]]))
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------- driver


def _default_names(paths):
    names = []
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        parent = os.path.basename(os.path.dirname(os.path.abspath(p)))
        names.append(parent if stem == "predictions" and parent else stem)
    return names


def _safe(name):
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "run"


def _unique(names):
    out, seen = [], {}
    for n in names:
        base = _safe(n)
        k = seen.get(base, 0)
        seen[base] = k + 1
        out.append(base if k == 0 else "%s_%d" % (base, k + 1))
    return out


def _log_map(log_args, names):
    """--logs entries -> {run name: dir}; 'NAME=DIR', or plain DIRs one per run in order."""
    if not log_args:
        return {}
    explicit = [a for a in log_args if "=" in a and a.split("=", 1)[0] in names]
    plain = [a for a in log_args if a not in explicit]
    mapping = {}
    for a in explicit:
        n, d = a.split("=", 1)
        mapping[n] = d
    if plain:
        free = [n for n in names if n not in mapping]
        if len(plain) != len(free):
            raise ReportError(
                "--logs: %d folder(s) for %d run(s); give one folder per run in the order of "
                "the predictions files, or NAME=DIR with NAME one of %s"
                % (len(plain), len(free), ", ".join(names)))
        mapping.update(zip(free, plain))
    return mapping


def make_report(pred_paths, out_dir, names=None, logs=None):
    """Build the whole report; returns the combined metrics dict."""
    if names is not None and len(names) != len(pred_paths):
        raise ReportError("--names: %d name(s) for %d predictions file(s)"
                          % (len(names), len(pred_paths)))
    names = _unique(names if names is not None else _default_names(pred_paths))
    log_dirs = _log_map(logs or [], names)
    # Every input is checked before anything is written.
    preds = [read_predictions(p) for p in pred_paths]
    log_files = {name: logs_of(d) for name, d in log_dirs.items()}
    os.makedirs(out_dir, exist_ok=True)

    runs, run_files = [], {}
    for name, p in zip(names, preds):
        run_dir = os.path.join(out_dir, name)
        m = run_metrics(name, p)
        run_files[name] = write_run(name, p, run_dir, m)
        if name in log_dirs:
            m["logs"], _ = run_curves(name, log_dirs[name], log_files[name], run_dir)
        _write_json(os.path.join(run_dir, "metrics.json"), m)
        runs.append((name, m, p))

    from psn import plots
    comp = comparison_rows(runs)
    _write_csv(os.path.join(out_dir, "comparison.csv"), COMPARISON_FIELDS,
               [[r[k] for k in COMPARISON_FIELDS] for r in comp])
    plots.comparison_bars(comp, os.path.join(out_dir, "comparison.png"))
    fold_rows = [[name, "run", m["n_folds"], m["rr_mean"], m["rr_std"], m["rr_std_sample"],
                  m["uf1_fold_mean"], m["uf1"]] for name, m, _ in runs]
    fold_rows += [["paper %s + %s" % bf, "paper (Table 9)", 10, v["rr_mean"], v["rr_std"], None,
                   v["f1"], None] for bf, v in metrics.PAPER_TABLE9.items()]
    _write_csv(os.path.join(out_dir, "fold_rr.csv"),
               ["name", "kind", "n_folds", "rr_mean", "rr_std_population", "rr_std_sample",
                "uf1_fold_mean", "uf1_pooled"], fold_rows)

    combined = {"runs": {name: m for name, m, _ in runs}, "order": names,
                "comparison": comp, "paper_psn": metrics.PAPER_PSN,
                "paper_psn_table7_pooled": paper_table7_pooled()}
    if len(runs) == 1:
        m = runs[0][1]
        for k in ("rr", "uf1", "uar", "f1", "rr_mean", "rr_std", "rr_std_sample",
                  "uf1_fold_mean", "uar_fold_mean", "f1_fold_mean", "n_clips", "n_folds"):
            combined[k] = m[k]
    _write_json(os.path.join(out_dir, "metrics.json"), combined)
    write_atomic(os.path.join(out_dir, "report.md"), markdown(runs, comp, run_files))
    return combined


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="RR, F1/UF1, UAR, TPR/TNR, confusion matrices (Tables 5-9, Fig. 7, 9) "
                    "from predictions.csv files and Caffe logs.")
    ap.add_argument("predictions", nargs="+", help="predictions.csv of each run")
    ap.add_argument("--names", nargs="+", help="a name per run (default: the folder holding "
                                               "predictions.csv, else the file's stem)")
    ap.add_argument("--logs", nargs="+", metavar="DIR",
                    help="Caffe logs per run: one folder (or log file) per run in order, or "
                         "NAME=DIR; searched recursively, logs recognised by their content")
    ap.add_argument("--out", required=True, help="output folder")
    args = ap.parse_args(argv)
    try:
        combined = make_report(args.predictions, args.out, args.names, args.logs)
    except (PredictionsError, ReportError, caffe_log.LogError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print("error: a file given to report.py is not text (%s): give predictions.csv files "
              "written by run_folds" % exc.reason, file=sys.stderr)
        return 2
    except OSError as exc:
        from preprocessing.errors import fail
        return fail("error: ", exc)
    for name in combined["order"]:
        m = combined["runs"][name]
        print("%-24s RR %.2f %% (fold mean %.2f +/- %.3f)  UF1 %.4f (fold mean %.4f)  "
              "UAR %.4f (fold mean %.4f)" % (name, 100 * m["rr"], 100 * m["rr_mean"],
                                              m["rr_std"], m["uf1"], m["uf1_fold_mean"],
                                              m["uar"], m["uar_fold_mean"]))
    print("wrote %s" % os.path.join(args.out, "report.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
