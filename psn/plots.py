"""Figures of the report: confusion heatmaps (Tables 7–8), rates per database (Fig. 6), the
comparison bar chart (Fig. 7) and training curves (Fig. 9). Matplotlib on the Agg backend;
every PNG is written atomically."""
import math

import matplotlib

matplotlib.use("Agg")  # no display on training servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from preprocessing.atomic import atomic_path  # noqa: E402
from psn.metrics import CLASS_SHORT  # noqa: E402


def save(fig, path, dpi=110):
    """Save a figure as PNG via a temporary file in the same folder, then close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def confusion_heatmap(counts, path, title):
    """Row-normalised colours, each cell annotated with its share and its count."""
    counts = np.asarray(counts)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, "%.2f\n(%d)" % (share[i, j], counts[i, j]), ha="center", va="center",
                    fontsize=8, color="white" if share[i, j] > 0.6 else "black")
    ticks = range(len(CLASS_SHORT))
    ax.set_xticks(ticks, CLASS_SHORT)
    ax.set_yticks(ticks, ["%s (%d)" % (c, n) for c, n in zip(CLASS_SHORT, rows[:, 0])])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (clips)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return save(fig, path)


def comparison_bars(rows, path, title="Recognition rate and UF1 (cf. Fig. 7)"):
    """rows: dicts with name, rr_pooled, uf1_pooled, uf1_fold_mean (fractions; NaN = absent)."""
    names = [r["name"] for r in rows]
    x = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(7.0, 1.1 * len(rows) + 3), 4.2))
    rr = [100 * _num(r.get("rr_pooled")) for r in rows]
    ax1.bar(x, rr, color="#4C72B0")
    for xi, v in zip(x, rr):
        if not math.isnan(v):
            ax1.text(xi, v, "%.2f" % v, ha="center", va="bottom", fontsize=7)
    ax1.set_ylabel("recognition rate (%)")
    ax1.set_ylim(0, 100)
    w = 0.38
    ax2.bar(x - w / 2, [_num(r.get("uf1_pooled")) for r in rows], w, label="pooled",
            color="#55A868")
    ax2.bar(x + w / 2, [_num(r.get("uf1_fold_mean")) for r in rows], w,
            label="fold mean (paper: reported F1)", color="#C44E52")
    ax2.set_ylabel("UF1 (= the paper's F1)")
    ax2.set_ylim(0, 1)
    ax2.legend(fontsize=7, loc="upper right")
    for ax in (ax1, ax2):
        ax.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def megc_bars(rows, path, title="MEGC 2019 composite: UF1 and UAR (pooled LOSO)"):
    """rows: dicts with name, uf1, uar (fractions; NaN = not published) and optimistic (the
    test folds chose the epoch: hatched, and marked in the legend); the last row is ours."""
    if not rows:
        raise ValueError("megc_bars: no rows to draw (the last row is ours: give at least it)")
    names = [r["name"] for r in rows]
    x = np.arange(len(rows))
    w = 0.38
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(rows) + 2), 4.0))
    for off, key, color in ((-w / 2, "uf1", "#55A868"), (w / 2, "uar", "#4C72B0")):
        vals = [_num(r.get(key)) for r in rows]
        bars = ax.bar(x + off, vals, w, label=key.upper(), color=color)
        bars[-1].set_edgecolor("black")
        bars[-1].set_linewidth(1.5)
        for bar, r in zip(bars, rows):
            if r.get("optimistic"):
                bar.set_hatch("//")
                bar.set_edgecolor("#333333")
        for xi, v in zip(x + off, vals):
            if not math.isnan(v):
                ax.text(xi, v, "%.3f" % v, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    if any(r.get("optimistic") for r in rows):
        from matplotlib.patches import Patch
        handles, _ = ax.get_legend_handles_labels()
        handles.append(Patch(facecolor="white", edgecolor="#333333", hatch="//",
                             label="epoch chosen on the test subject"))
        ax.legend(handles=handles, fontsize=8)
    else:
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return save(fig, path)


def rates_by_database(rows, path, title):
    """Fig. 6: one panel per database; RR, then TPR and TNR of each class, as bars.

    rows: dicts with name, rr, tpr_P..tpr_O, tnr_P..tnr_O (fractions; None or NaN = undefined,
    drawn as no bar)."""
    fig, axes = plt.subplots(1, max(1, len(rows)), figsize=(3.2 * max(1, len(rows)) + 0.6, 3.6),
                             squeeze=False, sharey=True)
    x = np.arange(len(CLASS_SHORT))
    w = 0.38
    for ax, r in zip(axes[0], rows):
        ax.bar([-1.0], [_num(r["rr"])], 0.6, color="#8172B2", label="RR")
        ax.bar(x - w / 2, [_num(r["tpr_" + c]) for c in CLASS_SHORT], w, color="#4C72B0",
               label="TPR")
        ax.bar(x + w / 2, [_num(r["tnr_" + c]) for c in CLASS_SHORT], w, color="#DD8452",
               label="TNR")
        ax.set_xticks([-1.0, *x], ["RR", *CLASS_SHORT], fontsize=8)
        ax.set_title("%s (%d clips)" % (r["name"], r["n"]), fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("rate")
    # Below the panels: inside, the legend would hide bars near 1.
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=3,
               fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def training_curves(curves, path, title):
    """Fig. 9: (a) test accuracy and (b) loss against iterations, one line per log.

    curves: dicts with label, test_iters, test_acc, test_loss, train_iters, train_loss
    (lists; an empty list leaves that line out).
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, c in enumerate(curves):
        col = colors[k % len(colors)]
        if c["test_acc"]:
            ax1.plot(c["test_iters"], c["test_acc"], "-o", ms=2.5, color=col, label=c["label"])
        if c["test_loss"]:
            # markers: a nan loss breaks the line, and a lone point must still show
            ax2.plot(c["test_iters"], c["test_loss"], "-o", ms=2.5, color=col,
                     label=c["label"] + " test")
        if c["train_loss"]:
            ax2.plot(c["train_iters"], c["train_loss"], "--.", ms=2, lw=0.8, color=col, alpha=0.7,
                     label=c["label"] + " train")
    ax1.set_title("(a) test accuracy (Caffe Accuracy layer)", fontsize=9)
    ax1.set_ylabel("accuracy")
    ax2.set_title("(b) loss (solid: test, dashed: train)", fontsize=9)
    ax2.set_ylabel("loss")
    for ax in (ax1, ax2):
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=2 if len(curves) > 5 else 1)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def _num(v):
    return float("nan") if v is None else float(v)


def retention_curves(rows, path, title="Recognition against RPCA retention (cf. Fig. 10)"):
    """Fig. 10: (a) RR and (b) F1 of the single-frame net at each retention level.

    rows: dicts with reference (the fixed lambda's row), bin (its label), share_mean (measured
    share of non-zeros in E), rr_pooled, f1 (None: no result). The levels are bars at their
    bins; the fixed lambda, whose share is whatever RPCA leaves, is a dashed line."""
    levels = [r for r in rows if not r["reference"]]
    ref = next((r for r in rows if r["reference"]), None)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    x = np.arange(len(levels))
    for ax, key, scale, label in ((axes[0], "rr_pooled", 100.0, "(a) recognition rate (%)"),
                                  (axes[1], "f1", 1.0, "(b) F1 (UF1 fold mean)")):
        vals = [scale * _num(r[key]) for r in levels]
        ax.bar(x, vals, 0.6, color="#4C72B0")
        for xi, v in zip(x, vals):
            if not math.isnan(v):
                ax.text(xi, v, ("%.1f" if scale > 1 else "%.3f") % v, ha="center",
                        va="bottom", fontsize=7)
        if ref is not None and ref.get(key) is not None:
            share = ref.get("share_mean")
            ax.axhline(scale * ref[key], color="#C44E52", ls="--", lw=1,
                       label="fixed lambda (E %s non-zero)" % (
                           "?" if share is None else "%.0f %%" % (100 * share)))
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xticks(x, [r["bin"] for r in levels], fontsize=8)
        ax.set_xlabel("share of the face's pixels non-zero in E")
        ax.set_title(label, fontsize=9)
        ax.set_ylim(0, scale)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def feature_grid(frame, sparse, maps, path, title, max_channels=64):
    """Fig. 8: the input frame and |E|, then one tile per channel of each layer's maps.

    frame (H, W, 3) uint8 RGB; sparse (H, W); maps: {layer: (C, h, w)}, each tile scaled to
    its own maximum (a channel that never fires stays black)."""
    layers = list(maps)
    cols = 8
    grids = []
    for name in layers:
        m = np.asarray(maps[name])[:max_channels]
        rows_ = int(math.ceil(len(m) / float(cols)))
        grids.append((name, m, rows_))
    height = max(2, sum(r for _, _, r in grids))
    fig = plt.figure(figsize=(2.6 + 1.1 * cols, 0.55 + 1.1 * height))
    gs = fig.add_gridspec(height, cols + 2, wspace=0.08, hspace=0.25)
    ax = fig.add_subplot(gs[0, 0:2])
    ax.imshow(frame)
    ax.set_title("raw frame", fontsize=8)
    ax.axis("off")
    ax = fig.add_subplot(gs[1, 0:2])
    e = np.abs(np.asarray(sparse, dtype=float))
    ax.imshow(e, cmap="gray", vmin=0, vmax=max(float(np.percentile(e, 99.5)), 1e-12))
    ax.set_title("|E|", fontsize=8)
    ax.axis("off")
    r0 = 0
    for name, m, rows_ in grids:
        for k, ch in enumerate(m):
            ax = fig.add_subplot(gs[r0 + k // cols, 2 + k % cols])
            top = float(ch.max())
            ax.imshow(ch, cmap="viridis", vmin=0, vmax=top if top > 0 else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(name, fontsize=8)
        r0 += rows_
    fig.suptitle(title, fontsize=10)
    return save(fig, path)
