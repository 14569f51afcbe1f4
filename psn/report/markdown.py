"""report.md: every table of the report in Markdown, with the figures linked."""
import datetime
import math

import numpy as np

from psn import metrics
from psn.metrics import CLASS_SHORT, N_CLASSES


def md_escape(text):
    return str(text).replace("|", "\\|")


def pct(v):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else "%.2f" % (100 * v)


def f4(v):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else "%.4f" % v


def f3(v):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else "%.3f" % v


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def markdown(runs, comp, run_files):
    L = ["# PSN report\n",
         "Generated %s by `tools/report.py`.\n" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
         "Runs:\n"]
    for name, m, p in runs:
        L.append("- **%s**: `%s` (%d clips, %d folds)" % (md_escape(name), p.path,
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
    L.append(md_table(
        ["name", "clips", "folds", "RR pooled %", "RR fold mean %", "RR std", "UF1 pooled",
         "UF1 fold mean", "UAR pooled", "UAR fold mean"],
        [[md_escape(r["name"]), r["n_clips"] or "n/a", r["n_folds"] or "n/a",
          pct(r["rr_pooled"]), pct(r["rr_fold_mean"]), f3(r["rr_fold_std"]),
          f4(r["uf1_pooled"]), f4(r["uf1_fold_mean"]), f4(r["uar_pooled"]),
          f4(r["uar_fold_mean"])] for r in comp]))
    for r in comp:
        if r["note"]:
            L.append("- %s: %s" % (md_escape(r["name"]), r["note"]))
    L.append("\n![comparison](comparison.png)\n")

    L.append("## Recognition rate over folds (Table 9)\n")
    rows = [[md_escape(name), m["n_folds"], pct(m["rr_fold_mean"]), f3(m["rr_fold_std"]),
             f3(m["rr_fold_std_sample"]), f4(m["uf1_fold_mean"]), f4(m["uf1_pooled"])]
            for name, m, _ in runs]
    rows += [["paper %s + %s" % bf, 10, pct(v["rr_mean"]), f3(v["rr_std"]), "n/a",
              f4(v["f1"]), "n/a"] for bf, v in metrics.PAPER_TABLE9.items()]
    L.append(md_table(["name", "folds", "RR_mean %", "RR_std (pop.)", "RR_std (sample)",
                        "F1 = UF1 fold mean", "UF1 pooled"], rows))
    L.append("Paper rows: Table 9 as printed (F1 there is the reported F1).\n")

    for name, m, p in runs:
        L.append("## Run: %s\n" % md_escape(name))
        L.append("RR %s %% pooled, %s %% ± %s over folds; UF1 %s pooled, %s fold mean; "
                 "UAR %s pooled, %s fold mean.\n" % (
                     pct(m["rr_pooled"]), pct(m["rr_fold_mean"]), f3(m["rr_fold_std"]), f4(m["uf1_pooled"]),
                     f4(m["uf1_fold_mean"]), f4(m["uar_pooled"]), f4(m["uar_fold_mean"])))
        L.append("### Per database (Table 6 layout; pooled within the database)\n")
        rows = [["Combined", m["n_clips"], pct(m["rr_pooled"]), f4(m["uar_pooled"]), f4(m["uf1_pooled"]),
                 f4(metrics.PAPER_PSN["uar"]), f4(metrics.PAPER_PSN["uf1"])]]
        for db, d in m["per_database"].items():
            ref = d["paper_psn"] or {}
            rows.append([md_escape(d["name"]), d["n"], pct(d["rr"]), f4(d["uar"]),
                         f4(d["uf1"]), f4(ref.get("uar")), f4(ref.get("uf1"))])
        L.append(md_table(["database", "clips", "RR %", "UAR", "UF1", "paper PSN UAR",
                            "paper PSN UF1"], rows))
        L.append("### Confusion matrix, all clips (Table 7 layout: counts)\n")
        cm = np.asarray(m["confusion"])
        L.append(md_table(["true \\ pred"] + list(CLASS_SHORT),
                           [["%s (%d)" % (CLASS_SHORT[c], cm[c].sum())] + list(cm[c])
                            for c in range(N_CLASSES)]))
        L.append("### Confusion matrices per database (Table 8 layout: row-normalised)\n")
        rows = []
        for db, d in m["per_database"].items():
            cmd = np.asarray(d["confusion"])
            nd = np.asarray(d["confusion_normalised"], dtype=float)
            for c in range(N_CLASSES):
                rows.append(["%s (%d)" % (md_escape(d["name"]), d["n"]) if c == 0 else "",
                             "%s (%d)" % (CLASS_SHORT[c], cmd[c].sum())]
                            + ["n/a" if math.isnan(v) else "%.2f" % v for v in nd[c]])
        L.append(md_table(["database", "true \\ pred"] + list(CLASS_SHORT), rows))
        L.append("### Per class, all clips (pooled)\n")
        L.append(md_table(["class", "clips", "TPR (recall)", "TNR", "precision", "F1_c"],
                           [[n, v["support"], f4(v["tpr"]), f4(v["tnr"]),
                             f4(v["precision"]), f4(v["f1"])]
                            for n, v in m["per_class"].items()]))
        L.append("Per database: `%s/per_class.csv`.\n" % name)
        L.append("### Folds\n")
        L.append(md_table(["fold", "clips", "RR %", "UF1", "UAR"],
                           [[md_escape(f["fold"]), f["n"], pct(f["rr"]), f4(f["uf1"]),
                             f4(f["uar"])] for f in m["folds"]]))
        b = m["majority_baseline"]
        L.append("Majority baseline (%s): RR %s %%, UF1 %s, UAR %s; class per fold: %s.\n" % (
            b["rule"], pct(b["rr_pooled"]), f4(b["uf1_pooled"]), f4(b["uar_pooled"]),
            ", ".join("%s→%s" % kv for kv in b["class_per_fold"].items())))
        L.append("### Figures\n")
        for png in run_files[name]["heatmaps"]:
            L.append("![%s](%s/%s)" % (png, name, png))
        L.append("\nRecognition rate, TPR and TNR per database (Fig. 6 layout; values in "
                 "`%s/rates_by_database.csv`):\n" % name)
        L.append("![rates](%s/%s)" % (name, run_files[name]["rates"]))
        L.append("")
        if m.get("logs"):
            L.append("### Training curves (Fig. 9)\n")
            L.append("![curves](%s/curves.png)\n" % name)
            L.append(md_table(["log", "last iteration", "last test accuracy", "last test loss"],
                               [[md_escape(e["label"]), e["last_iteration"], f4(e["last_test_accuracy"]),
                                 f4(e["last_test_loss"])] for e in m["logs"]]))
    return "\n".join(L) + "\n"
