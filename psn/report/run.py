"""One run's metrics (pooled, per fold, per database, per class, its majority baseline) and
its files: summary.csv, per_class.csv, per_database.csv, folds.csv, confusion matrices."""
import os

import numpy as np

from psn import metrics
from psn.metrics import CLASS_NAMES, CLASS_SHORT, N_CLASSES
from psn.report.files import safe_name, write_csv

RATES_FIELDS = (("database", "name", "n", "rr") + tuple("tpr_" + c for c in CLASS_SHORT)
                + tuple("tnr_" + c for c in CLASS_SHORT))
DATABASE_NAMES = {"casme": "CASME", "casme2": "CASME II", "casme2sq": "CAS(ME)^2", "samm": "SAMM"}


def db_order(databases):
    known = [d for d in DATABASE_NAMES if d in set(databases)]
    return known + sorted(set(databases) - set(known))


def db_name(db):
    return DATABASE_NAMES.get(db, db)


def per_class(s):
    return {CLASS_NAMES[c]: {"support": s.support[c], "tp": s.tp[c], "fp": s.fp[c],
                             "fn": s.fn[c], "tn": s.tn[c], "tpr": s.tpr[c], "tnr": s.tnr[c],
                             "precision": s.precision[c], "f1": s.f1[c]}
            for c in range(N_CLASSES)}


def run_metrics(name, p):
    """Everything the report says about one run, as a JSON-ready dict (NaN kept as float)."""
    out = {"name": name, "predictions": os.path.abspath(p.path)}
    out.update(metrics.summary(p.label, p.pred, p.fold))
    # The paper's F1 is UF1 (Table 5 = Table 6); the same numbers under the paper's name.
    out["f1_pooled"] = out["uf1_pooled"]
    out["f1_fold_mean"] = out["uf1_fold_mean"]
    pooled = metrics.scores(p.label, p.pred)
    out["confusion"] = pooled.confusion
    out["confusion_normalised"] = pooled.normalised()
    out["per_class"] = per_class(pooled)
    out["per_database"] = {}
    for db in db_order(p.database):
        m = p.database == db
        s = metrics.scores(p.label[m], p.pred[m])
        out["per_database"][db] = {
            "name": db_name(db), "n": s.n, "rr": s.rr, "uf1": s.uf1, "uar": s.uar,
            "confusion": s.confusion, "confusion_normalised": s.normalised(),
            "per_class": per_class(s),
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
        "pooled": "*_pooled: one confusion matrix over all folds' test clips",
        "fold_mean": "*_fold_mean: computed per fold, then averaged over folds (rr_fold_mean "
                     "and rr_fold_std are Table 9's RR_mean and RR_std)",
        "std": "*_fold_std: population std over folds (ddof=0); *_fold_std_sample: ddof=1",
        "f1": "f1 = uf1 = mean over classes of 2TP/(2TP+FP+FN): the paper's F1 (Table 5 F1 "
              "equals Table 6 UF1)",
        "per_database, folds": "rr, uf1, uar of that one set of clips",
        "absent_classes": "a class with 2TP+FP+FN = 0 is left out of UF1's mean; a class "
                          "without true clips is left out of UAR's mean",
        "units": "fractions (RR 0.6492 = 64.92 %)",
    }
    return out


def scopes(p):
    yield "all", "all clips", np.ones(len(p), dtype=bool)
    for db in db_order(p.database):
        yield db, db_name(db), p.database == db


def write_run(name, p, run_dir, m):
    from psn import plots
    os.makedirs(run_dir, exist_ok=True)
    files = {}
    write_csv(os.path.join(run_dir, "summary.csv"), ["metric", "basis", "value"], [
        ["rr", "pooled", m["rr_pooled"]], ["rr", "fold_mean", m["rr_fold_mean"]],
        ["rr", "fold_std_population", m["rr_fold_std"]], ["rr", "fold_std_sample", m["rr_fold_std_sample"]],
        ["f1 (= uf1, the paper's F1)", "pooled", m["f1_pooled"]],
        ["f1 (= uf1, the paper's F1)", "fold_mean", m["f1_fold_mean"]],
        ["uf1", "pooled", m["uf1_pooled"]], ["uf1", "fold_mean", m["uf1_fold_mean"]],
        ["uf1", "fold_std_population", m["uf1_fold_std"]],
        ["uar", "pooled", m["uar_pooled"]], ["uar", "fold_mean", m["uar_fold_mean"]],
        ["uar", "fold_std_population", m["uar_fold_std"]],
        ["n_clips", "", m["n_clips"]], ["n_folds", "", m["n_folds"]],
    ])
    counts_rows, norm_rows, class_rows, heatmaps = [], [], [], []
    for key, title, mask in scopes(p):
        s = metrics.scores(p.label[mask], p.pred[mask])
        norm = s.normalised()
        for c in range(N_CLASSES):
            counts_rows.append([key, CLASS_SHORT[c], s.support[c]] + list(s.confusion[c]))
            norm_rows.append([key, CLASS_SHORT[c], s.support[c]] + [round(float(v), 6)
                                                                     for v in norm[c]])
            class_rows.append([key, c, CLASS_NAMES[c], s.support[c], s.tp[c], s.fp[c], s.fn[c],
                               s.tn[c], s.tpr[c], s.tnr[c], s.precision[c], s.f1[c]])
        png = os.path.join(run_dir, "confusion_%s.png" % safe_name(key))
        plots.confusion_heatmap(s.confusion, png, "%s: %s (%d clips)" % (name, title, s.n))
        heatmaps.append(os.path.basename(png))
    head = ["scope", "true", "n"] + list(CLASS_SHORT)
    write_csv(os.path.join(run_dir, "confusion_counts.csv"), head, counts_rows)
    write_csv(os.path.join(run_dir, "confusion_normalised.csv"), head, norm_rows)
    write_csv(os.path.join(run_dir, "per_class.csv"),
               ["scope", "class", "name", "support", "tp", "fp", "fn", "tn", "tpr", "tnr",
                "precision", "f1"], class_rows)
    write_csv(os.path.join(run_dir, "per_database.csv"),
               ["database", "name", "n", "rr", "uf1", "uar", "paper_psn_uar", "paper_psn_uf1"],
               [[db, d["name"], d["n"], d["rr"], d["uf1"], d["uar"],
                 (d["paper_psn"] or {}).get("uar"), (d["paper_psn"] or {}).get("uf1")]
                for db, d in m["per_database"].items()])
    write_csv(os.path.join(run_dir, "folds.csv"), ["fold", "n", "rr", "uf1", "uar"],
               [[f["fold"], f["n"], f["rr"], f["uf1"], f["uar"]] for f in m["folds"]])
    files["heatmaps"] = heatmaps
    # Fig. 6 layout: per database, RR and each class's TPR and TNR; the CSV holds the values
    # the picture draws.
    rates = [[db, d["name"], d["n"], d["rr"]]
             + [d["per_class"][CLASS_NAMES[c]]["tpr"] for c in range(N_CLASSES)]
             + [d["per_class"][CLASS_NAMES[c]]["tnr"] for c in range(N_CLASSES)]
             for db, d in m["per_database"].items()]
    write_csv(os.path.join(run_dir, "rates_by_database.csv"), RATES_FIELDS, rates)
    plots.rates_by_database([dict(zip(RATES_FIELDS, r)) for r in rates],
                            os.path.join(run_dir, "rates_by_database.png"),
                            "%s: recognition rate, TPR and TNR per database (cf. Fig. 6)" % name)
    files["rates"] = "rates_by_database.png"
    return files
