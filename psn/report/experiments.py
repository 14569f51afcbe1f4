"""The writers of psn.experiments: each lays out one table or figure of the paper from the
runs its plan trained, with the paper's values beside ours where the paper gives them.

Every writer takes (setting, runs {Need: run folder}, out_dir, failed {level: error}),
writes out_dir/<name>.md (and .csv, .png) plus out_dir/report/ (psn.report.make_report of
its runs: every table, heatmap and curve of those runs), and returns the .md's path.
"""
import os
import shutil

import numpy as np

from preprocessing.atomic import write_atomic
from preprocessing.layout import DataFolder, RunFolder
from psn import metrics
from psn.config import DEFAULT_SPARSITY, FIXED_LAMBDA, rpca_setting, rpca_setting_suffix
from psn.metrics import CLASS_SHORT, N_CLASSES
from psn.report.files import write_csv
from psn.report.markdown import f3, f4, md_escape, md_table, pct

__all__ = ["WRITERS", "table9_rows", "fig10_rows"]


def _report(runs, out_dir):
    """make_report over the runs (named by model, and level for Fig. 10); returns
    {Need: that run's metrics} and the report's folder."""
    from psn.report import make_report
    from psn.report.logs import find_logs
    names = {need: _run_name(need) for need in runs}
    report_dir = os.path.join(out_dir, "report")
    combined = make_report([RunFolder(d).predictions for d in runs.values()],
                           report_dir, names=list(names.values()),
                           logs=["%s=%s" % (names[n], d) for n, d in runs.items()
                                 if find_logs(d)])
    return {need: combined["runs"][names[need]] for need in runs}, combined, report_dir


def _run_name(need):
    return need.model + rpca_setting_suffix(rpca_setting(need.sparsity))


def _header(title, setting, metrics_by_need):
    folds = sorted({m["n_folds"] for m in metrics_by_need.values()})
    lines = ["# %s\n" % title,
             "Schedule `%s`, width %g, %s%s%s.%s\n" % (
                 os.path.basename(setting.schedule), setting.width,
                 "the synthetic database" if setting.synthetic else
                 "databases " + ", ".join(sorted(setting.roots)),
                 ", leave one subject out" if setting.loso else "",
                 "; folds per run: " + "/".join(map(str, folds)) if folds else "",
                 " **Quick look (`--quick`): fold 1 only, not a result.**" if setting.quick else "")]
    return lines


def _provenance(setting, name):
    """How and when the runs were made: what a table quoted elsewhere (the README) must say
    beside it, so that rows of other pipeline versions or settings are never mixed."""
    import datetime
    import json
    from dataclasses import replace

    from preprocessing.clip_chain import PIPELINE_VERSION, Options
    from psn.nets import MODELS
    cfg = replace(MODELS["psn"], **setting.net_overrides)
    stamp = None
    for root in setting.roots.values():
        path = os.path.join(root, "synthetic_stamp.json")
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    stamp = json.load(f).get("params", {}).get("nuisances", "none")
            except (OSError, ValueError):
                stamp = "unknown (unreadable %s)" % path
    net = "temporal input: %s%s" % (
        "centred, " if cfg.temporal_centre else "",
        "rms %g per clip (%g gray levels in quadrature)" % (cfg.temporal_norm_rms,
                                                            cfg.temporal_norm_eps)
        if cfg.temporal_norm == "rms" else "x %g" % cfg.temporal_scale) + (
        ", W_m gain from the training clips' median tp" if cfg.tp_ref_from_data else "")
    # The main job preprocesses with the default Options; the table must say which frames
    # those were (pipeline version 2 ran without registration before registration existed).
    register = Options().register
    return ("Made by `tools/run_psn.sh --experiment %s` on %s: preprocessing pipeline version "
            "%d, %s, RPCA lambda per clip for %g %% non-zeros in E%s; %s%s.\n" % (
                name, datetime.date.today().isoformat(), PIPELINE_VERSION,
                "frames registered on the onset frame (%s)" % register.upper()
                if register != "none" else "frames not registered",
                100 * DEFAULT_SPARSITY, "" if not setting.net_overrides else
                ", net overrides %s" % setting.net_overrides, net,
                "" if stamp is None else "; synthetic nuisances %s" % (
                    ", ".join("%s %g" % kv for kv in stamp.items())
                    if isinstance(stamp, dict) else stamp)))


def _write(out_dir, name, lines):
    path = os.path.join(out_dir, name + ".md")
    write_atomic(path, "\n".join(lines) + "\n")
    return path


def _only(runs, model="psn"):
    for need in runs:
        if need.model == model:
            return need
    raise KeyError(model)


# ------------------------------------------------------------------ Tables 5, 6, 7

BASELINE_NAMES = {"ststnet": "STSTNet", "off_apexnet": "OFF-ApexNet"}

# What each side of the comparison scored (psn.weight_selection).
SELECTION_NOTE = ("How the weights were chosen: ours are each fold's final iteration (nothing "
                  "about the test fold chooses them); the paper does not say whether it chose "
                  "iterations on its test folds, so its rows are as it reports them.")

def write_table5(setting, runs, out_dir, failed=None):
    if not any(need.model == "psn" for need in runs):
        from psn.config import RunError
        raise RunError("table5: PSN's run has no predictions (its folds failed: see above), so "
                       "there is nothing to set the baselines beside; run the same command "
                       "again to finish it")
    ms, combined, _ = _report(runs, out_dir)
    m = ms[_only(runs)]
    b = m["majority_baseline"]
    paper = metrics.PAPER_PSN
    rows = [["PSN (this run)", m["n_clips"], m["rr_pooled"], m["rr_fold_mean"],
             m["uf1_fold_mean"], m["uf1_pooled"], m["uar_pooled"]]]
    # The optical-flow baselines trained here on the same folds (psn.experiments.FLOW_BASELINES).
    for need in runs:
        if need.model in BASELINE_NAMES:
            o = ms[need]
            rows.append(["%s (trained here, same folds)" % BASELINE_NAMES[need.model],
                         o["n_clips"], o["rr_pooled"], o["rr_fold_mean"], o["uf1_fold_mean"],
                         o["uf1_pooled"], o["uar_pooled"]])
    rows += [["majority class (this run's folds)", m["n_clips"], b["rr_pooled"], None, None,
              b["uf1_pooled"], b["uar_pooled"]],
             ["paper PSN (Table 5)", 650, paper["rr"], paper["rr"], paper["uf1"], None, None],
             ["paper STSTNet (Table 5, quoted from its authors)", None,
              metrics.PAPER_STSTNET["rr"], None, metrics.PAPER_STSTNET["f1"], None, None]]
    head = ["name", "clips", "rr_pooled", "rr_fold_mean", "f1 (= uf1 fold mean)", "uf1_pooled",
            "uar_pooled"]
    write_csv(os.path.join(out_dir, "table5.csv"), head, rows)
    lines = _header("Table 5: PSN's recognition rate and F1", setting, ms)
    lines.append(md_table(["", "clips", "RR pooled %", "RR fold mean %", "F1 (UF1 fold mean)",
                            "UF1 pooled", "UAR pooled"],
                           [[md_escape(r[0]), "n/a" if r[1] is None else r[1], pct(r[2]),
                             pct(r[3]), f4(r[4]), f4(r[5]), f4(r[6])] for r in rows]))
    lines.append("The paper's F1 is UF1 averaged over folds (its Table 5 F1 equals Table 6's "
                 "UF1); its RR pools exactly from its Table 7. Full report: `report/report.md`.")
    lines.append("STSTNet and OFF-ApexNet here: the same clips, folds and weight selection as "
                 "PSN, on the onset-to-apex TV-L1 flow of the same registered face crops "
                 "(`preprocess.py run --flow`; docs/flow.md says what differs from each "
                 "paper's own preprocessing), each with its own optimiser "
                 "(prototxt/schedules/ststnet*.json, off_apexnet*.json) where the schedule "
                 "above is PSN's. The paper's STSTNet row comes from another pipeline, face "
                 "crop and folds.")
    lines.append(SELECTION_NOTE)
    return _write(out_dir, "table5", lines)


def write_table6(setting, runs, out_dir, failed=None):
    ms, _, _ = _report(runs, out_dir)
    m = ms[_only(runs)]
    paper = metrics.PAPER_PSN
    rows = [["combined", "Combined", m["n_clips"], m["uf1_pooled"], m["uar_pooled"],
             paper["uf1"], paper["uar"]]]
    for db, d in m["per_database"].items():
        ref = d["paper_psn"] or {}
        rows.append([db, d["name"], d["n"], d["uf1"], d["uar"], ref.get("uf1"), ref.get("uar")])
    write_csv(os.path.join(out_dir, "table6.csv"),
              ["database", "name", "clips", "uf1", "uar", "paper_uf1", "paper_uar"], rows)
    lines = _header("Table 6: UF1 and UAR per database", setting, ms)
    lines.append(md_table(["database", "clips", "UF1", "UAR", "paper UF1", "paper UAR"],
                           [[md_escape(r[1]), r[2], f4(r[3]), f4(r[4]), f4(r[5]), f4(r[6])]
                            for r in rows]))
    lines.append("Ours pool the test clips of all folds within each database; the paper's "
                 "Combined row is its fold-averaged F1 and UAR (Table 5).")
    if setting.synthetic:
        lines.append("\nOn the synthetic data the databases are the synthetic ones made for "
                     "this run (`--synthetic casme2,casme` gives two).")
    return _write(out_dir, "table6", lines)


def write_table7(setting, runs, out_dir, failed=None):
    ms, _, _ = _report(runs, out_dir)
    m = ms[_only(runs)]
    ours = np.asarray(m["confusion"])
    paper = metrics.PAPER_PSN_CONFUSION
    rows = []
    for c in range(N_CLASSES):
        rows.append([CLASS_SHORT[c]] + list(ours[c]) + list(paper[c]))
    head = (["true"] + ["ours_" + s for s in CLASS_SHORT] + ["paper_" + s for s in CLASS_SHORT])
    write_csv(os.path.join(out_dir, "table7.csv"), head, rows)
    norm = lambda cm: cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)   # noqa: E731
    lines = _header("Table 7: PSN's confusion matrix, all clips", setting, ms)
    lines.append("Counts (rows: true class; columns: predicted), ours | the paper's:\n")
    lines.append(md_table(["true \\ pred"] + list(CLASS_SHORT) + ["|"] + list(CLASS_SHORT),
                           [["%s (%d | %d)" % (CLASS_SHORT[c], ours[c].sum(), paper[c].sum())]
                            + list(ours[c]) + ["|"] + list(paper[c]) for c in range(N_CLASSES)]))
    lines.append("Row-normalised (recall on the diagonal), ours | the paper's:\n")
    no, npap = norm(ours), norm(paper)
    lines.append(md_table(["true \\ pred"] + list(CLASS_SHORT) + ["|"] + list(CLASS_SHORT),
                           [[CLASS_SHORT[c]] + ["%.2f" % v for v in no[c]] + ["|"]
                            + ["%.2f" % v for v in npap[c]] for c in range(N_CLASSES)]))
    lines.append("Heatmaps: `report/psn/confusion_*.png`.")
    return _write(out_dir, "table7", lines)


# ------------------------------------------------------------------ Figures 6, 7

def write_fig6(setting, runs, out_dir, failed=None):
    ms, _, report_dir = _report(runs, out_dir)
    need = _only(runs)
    src = os.path.join(report_dir, _run_name(need))
    for ext in ("png", "csv"):
        shutil.copyfile(os.path.join(src, "rates_by_database." + ext),
                        os.path.join(out_dir, "fig6." + ext))
    m = ms[need]
    lines = _header("Fig. 6: RR, TPR and TNR per class for each database", setting, ms)
    lines.append("![fig6](fig6.png)\n")
    rows = []
    for db, d in m["per_database"].items():
        pc = d["per_class"]
        rows.append([md_escape(d["name"]), d["n"], pct(d["rr"])]
                    + [f3(pc[name]["tpr"]) for name in pc] + [f3(pc[name]["tnr"]) for name in pc])
    lines.append(md_table(["database", "clips", "RR %"] + ["TPR " + s for s in CLASS_SHORT]
                           + ["TNR " + s for s in CLASS_SHORT], rows))
    lines.append("Values: `fig6.csv`. A class without clips in a database has no TPR (n/a).")
    return _write(out_dir, "fig6", lines)


def write_fig7(setting, runs, out_dir, failed=None):
    from psn import plots
    ms, combined, _ = _report(runs, out_dir)
    comp = combined["comparison"]
    fields = ("name", "kind", "rr_pooled", "rr_fold_mean", "rr_fold_std", "uf1_pooled",
              "uf1_fold_mean", "uar_pooled", "n_clips", "n_folds")
    write_csv(os.path.join(out_dir, "fig7.csv"), fields, [[r[k] for k in fields] for r in comp])
    plots.comparison_bars(comp, os.path.join(out_dir, "fig7.png"),
                          "Ablation (cf. Fig. 7): recognition rate and UF1")
    lines = _header("Fig. 7: the ablation", setting, ms)
    lines.append(_provenance(setting, "fig7"))
    lines.append("![fig7](fig7.png)\n")
    lines.append(md_table(["condition", "clips", "RR pooled %", "RR fold mean %", "RR std",
                            "UF1 pooled", "F1 (UF1 fold mean)"],
                           [[md_escape(r["name"]), r["n_clips"] or "n/a", pct(r["rr_pooled"]),
                             pct(r["rr_fold_mean"]), f3(r["rr_fold_std"]), f4(r["uf1_pooled"]),
                             f4(r["uf1_fold_mean"])] for r in comp]))
    lines.append("The paper shows Fig. 7 as bars without a table of values; its PSN row is "
                 "Table 5's.")
    return _write(out_dir, "fig7", lines)


# ------------------------------------------------------------------ Table 9

def table9_rows(runs_metrics):
    """[(backbone, fusion, model, our metrics or None, paper's {rr_mean, rr_std, f1})] in
    Table 9's order; runs_metrics: {model: metrics}."""
    from psn.nets import MODELS
    names = {"alexnet": "AlexNet", "vgg16": "VGG16", "resnet10": "ResNet10"}
    rows = []
    for (backbone, fusion), paper in metrics.PAPER_TABLE9.items():
        model = next(m for m, c in MODELS.items() if names[c.backbone] == backbone
                     and c.fusion.upper() == fusion and c.streams == "both" and not c.swap
                     and c.recurrent == "TPU" and c.tpu_mode == "TPU" and c.head == "conv"
                     and c.frame == "all")
        rows.append((backbone, fusion, model, runs_metrics.get(model), paper))
    return rows


def write_table9(setting, runs, out_dir, failed=None):
    ms, _, _ = _report(runs, out_dir)
    rows = table9_rows({need.model: m for need, m in ms.items()})
    csv_rows, md_rows = [], []
    for backbone, fusion, model, m, paper in rows:
        m = m or {}
        csv_rows.append([backbone, fusion, model, m.get("n_folds"), m.get("rr_fold_mean"),
                         m.get("rr_fold_std"), m.get("uf1_fold_mean"), m.get("rr_pooled"),
                         paper["rr_mean"], paper["rr_std"], paper["f1"]])
        md_rows.append([backbone, fusion, model, m.get("n_folds", "not run"),
                        pct(m.get("rr_fold_mean")), f3(m.get("rr_fold_std")),
                        f4(m.get("uf1_fold_mean")), pct(paper["rr_mean"]),
                        f3(paper["rr_std"]), f4(paper["f1"])])
    write_csv(os.path.join(out_dir, "table9.csv"),
              ["backbone", "fusion", "model", "n_folds", "rr_mean", "rr_std", "f1", "rr_pooled",
               "paper_rr_mean", "paper_rr_std", "paper_f1"], csv_rows)
    lines = _header("Table 9: spatial backbone and fusion", setting, ms)
    lines.append(md_table(["backbone", "fusion", "model", "folds", "RR_mean %", "RR_std",
                            "F1", "paper RR_mean %", "paper RR_std", "paper F1"], md_rows))
    lines.append("RR_mean and RR_std over folds (population std, as a fraction like the "
                 "paper's: 0.084 = 8.4 points); F1 = UF1 averaged over folds, the paper's F1.")
    lines.append(SELECTION_NOTE)
    return _write(out_dir, "table9", lines)


# ------------------------------------------------------------------ Fig. 10

def _share_of(data_dir):
    """Mean and range of E's non-zero share over a data folder's included clips, their count."""
    from preprocessing.layout import DataFolder
    rows = [r for r in DataFolder(data_dir).manifest_rows() if str(r["included"]) == "1"]
    shares = np.array([float(r["rpca_nnz_share"]) for r in rows]) if rows else np.zeros(0)
    if not len(shares):
        return None, None, None, 0
    return float(shares.mean()), float(shares.min()), float(shares.max()), len(rows)


def fig10_rows(setting, ms, failed=None):
    """The fixed lambda's row, then one per level: bin, measured non-zero share (mean, min,
    max), clips, RR pooled, F1 (UF1 fold mean), UF1 pooled, or why a level has no result."""
    rows = []
    for level in [FIXED_LAMBDA] + sorted(setting.levels):
        key = rpca_setting(level)
        need = next((n for n in ms if rpca_setting(n.sparsity) == key), None)
        reference = level == FIXED_LAMBDA
        label = ("fixed lambda" if reference else
                 "%d-%d %%" % (round(100 * level - 5), round(100 * level + 5)))
        data = setting.data_dir(level)
        why = (failed or {}).get(key)
        mean, lo, hi, n = (_share_of(data) if os.path.exists(DataFolder(data).manifest)
                           else (None, None, None, 0))
        m = ms.get(need) or {}
        rows.append({"level": "lambda" if reference else level, "reference": reference,
                     "bin": label, "share_mean": mean, "share_min": lo,
                     "share_max": hi, "clips": n, "rr_pooled": m.get("rr_pooled"),
                     "f1": m.get("uf1_fold_mean"), "uf1_pooled": m.get("uf1_pooled"),
                     "n_folds": m.get("n_folds"),
                     "note": str(why) if why else ("" if m else "no finished run")})
    return rows


def write_fig10(setting, runs, out_dir, failed=None):
    from psn import plots
    ms, _, _ = _report(runs, out_dir) if runs else ({}, None, None)
    rows = fig10_rows(setting, ms, failed)
    fields = ("level", "bin", "share_mean", "share_min", "share_max", "clips", "n_folds",
              "rr_pooled", "f1", "uf1_pooled", "note")
    write_csv(os.path.join(out_dir, "fig10.csv"), fields, [[r[k] for k in fields] for r in rows])
    plots.retention_curves(rows, os.path.join(out_dir, "fig10.png"))
    lines = _header("Fig. 10: the apex frame's E against RPCA retention", setting, ms)
    lines.append("The single-frame net (`spatial_apex`: the spatial stream on E of the sampled "
                 "frame nearest each clip's apex) trained on each preprocessing; lambda chosen "
                 "per clip so that E keeps the level's share of non-zeros, and the fixed lambda "
                 "1/sqrt(12544) for reference.\n")
    lines.append("![fig10](fig10.png)\n")
    lines.append(md_table(["retention", "E non-zeros: mean (min-max)", "clips", "folds",
                            "RR pooled %", "F1", "UF1 pooled", "note"],
                           [[r["bin"], "n/a" if r["share_mean"] is None else "%.1f %% (%.1f-%.1f)"
                             % (100 * r["share_mean"], 100 * r["share_min"], 100 * r["share_max"]),
                             r["clips"], r["n_folds"] or "n/a", pct(r["rr_pooled"]), f4(r["f1"]),
                             f4(r["uf1_pooled"]), md_escape(r["note"])] for r in rows]))
    best = [r for r in rows if not r["reference"] and r["rr_pooled"] is not None]
    if best:
        top = max((r["rr_pooled"], r["f1"] or 0) for r in best)
        tied = [r["bin"] for r in best if (r["rr_pooled"], r["f1"] or 0) == top]
        lines.append("Best level here: %s (RR %s %%, F1 %s)%s. The paper found 20-30 %% best; "
                     "the pipeline's default is %d %% (lambda per clip)."
                     % (", ".join(tied), pct(top[0]), f4(top[1]),
                        " (tied)" if len(tied) > 1 else "", round(100 * DEFAULT_SPARSITY)))
    return _write(out_dir, "fig10", lines)


# ------------------------------------------------------------------ Figures 3 and 8

def _default_clips(data_dir, n=4):
    from preprocessing.contact_sheet import choose_clips
    rows = DataFolder(data_dir).manifest_rows()
    return ["%s/%s" % (r["subject"], r["clip"]) for r in choose_clips(rows, n)]


def write_fig3(setting, runs, out_dir, failed=None):
    from preprocessing.pipeline import write_fig3 as draw
    data = setting.data_dir()
    names = list(setting.clips) or _default_clips(data)
    png = draw(data, names, os.path.join(out_dir, "fig3.png"))
    lines = ["# Fig. 3: raw frames and E\n",
             "Clips: %s (from `%s`; `--clips` chooses others).\n" % (", ".join(names), data),
             "![fig3](%s)" % os.path.basename(png),
             "\nEach clip: the 16 face crops the nets see, then |E| at the same frames (white = "
             "the clip's 99.5th percentile of |E|)."]
    return _write(out_dir, "fig3", lines)


def write_fig8(setting, runs, out_dir, failed=None):
    from psn.feature_maps import write_feature_maps
    need = _only(runs)
    run_dir = runs[need]
    data = setting.data_dir()
    names = list(setting.clips[:1]) or _default_clips(data, 1)
    info = write_feature_maps(run_dir, data, setting.fold, names[0],
                              os.path.join(out_dir, "fig8.png"))
    lines = _header("Fig. 8: the spatial stream's first and fifth convolutional layers", setting,
                    {})
    lines.append("Fold %d of `%s`, clip %s (class %s, a test clip of that fold: %s), frame %d of "
                 "the 16 (the sampled frame nearest the apex).\n"
                 % (setting.fold, run_dir, info["clip"], info["class"],
                    "yes" if info["held_out"] else "no", info["frame"] + 1))
    lines.append("![fig8](fig8.png)\n")
    lines.append("Left: the raw frame and |E| (the spatial stream's input). Then each channel "
                 "of conv1 and conv5 after ReLU (%d and %d channels; at most 64 shown each), "
                 "each scaled to its own maximum. Share of zero activations: conv1 %.1f %%, "
                 "conv5 %.1f %% (the paper: conv5's maps are sparser)."
                 % (info["channels"]["conv1"], info["channels"]["conv5"],
                    100 * info["zero_share"]["conv1"], 100 * info["zero_share"]["conv5"]))
    return _write(out_dir, "fig8", lines)


WRITERS = {"table5": write_table5, "table6": write_table6, "table7": write_table7,
           "fig6": write_fig6, "fig7": write_fig7, "table9": write_table9,
           "fig10": write_fig10, "fig3": write_fig3, "fig8": write_fig8}
