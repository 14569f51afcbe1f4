"""The comparison of Table 5 and Fig. 7: each run, the majority-class baseline, the paper's
PSN as reported and as its own Table 7 pools."""
from psn import metrics


def paper_table7_pooled():
    """Pooled RR/UF1/UAR of the paper's own Table 7 PSN confusion matrix."""
    t7 = metrics.scores_from_confusion(metrics.PAPER_PSN_CONFUSION)
    return {"rr_pooled": t7.rr, "uf1_pooled": t7.uf1, "uar_pooled": t7.uar, "n_clips": t7.n}


def comparison_rows(runs):
    """Table 5 / Fig. 7 rows: each run, the majority baseline(s), the paper's PSN."""
    rows = []
    def row(name, kind, src, note=""):
        return dict({k: src.get(k) for k in COMPARISON_FIELDS[2:-1]}, name=name, kind=kind,
                    note=note)

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
        rows.append(row(label, "baseline", m["majority_baseline"], m["majority_baseline"]["rule"]))
    paper = metrics.PAPER_PSN
    rows.append(row("paper PSN (reported)", "paper",
                    {"rr_pooled": paper["rr"], "rr_fold_mean": paper["rr"],
                     "rr_fold_std": paper["rr_std"],
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
