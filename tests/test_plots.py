"""psn.plots: each figure of the report is a PNG that matplotlib reads back at about the size
it was drawn for, written atomically with its figure closed; what each one draws (the cells,
bars, hatches, lines and legends its rows ask for) is read off the figure it saved, and empty
or single-row inputs draw as the functions intend."""
import math
import os
import warnings

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest

from psn import plots

DPI = 110   # plots.save's default
NAN = float("nan")


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plotting functions saved, in order (still inspectable once closed)."""
    figs = []
    real = plots.save

    def keep(fig, path, dpi=DPI):
        figs.append(fig)
        return real(fig, path, dpi)

    monkeypatch.setattr(plots, "save", keep)
    return figs


def png_size(path, figsize):
    """(height, width) of a PNG, checked to be an image about figsize * DPI (None: not
    checked): bbox_inches='tight' trims the margins (or adds a legend placed outside), so
    within 70-110 %."""
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", path
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    h, w = img.shape[:2]
    for got, inches in ((w, figsize[0]), (h, figsize[1])):
        assert inches is None or 0.7 * inches * DPI <= got <= 1.1 * inches * DPI, (path, img.shape, figsize)
    # Atomic and closed: no temporary file beside it, no figure left open.
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".")]
    assert plt.get_fignums() == []
    return h, w


def bar_heights(ax):
    return [p.get_height() for p in ax.patches]


def texts(ax):
    return [t.get_text() for t in ax.texts]


# ---------------------------------------------------------------- save


def test_a_failed_save_leaves_no_file_and_closes_the_figure(tmp_path):
    fig = plt.figure()

    def broken(*a, **k):
        raise OSError("disk full")

    fig.savefig = broken
    with pytest.raises(OSError, match="disk full"):
        plots.save(fig, str(tmp_path / "x.png"))
    assert os.listdir(str(tmp_path)) == [] and plt.get_fignums() == []


# ---------------------------------------------------------------- Tables 7-8


def test_confusion_heatmap_normalises_rows_and_annotates_counts(tmp_path, drawn):
    counts = np.array([[3, 1, 0, 0], [0, 0, 0, 0], [1, 1, 5, 0], [0, 0, 2, 2]])
    png = str(tmp_path / "confusion.png")
    with warnings.catch_warnings():
        # The empty row (no Negative clip) must not divide by zero.
        warnings.simplefilter("error", RuntimeWarning)
        assert plots.confusion_heatmap(counts, png, "casme2") == png
    png_size(png, (4.6, 4.0))
    ax = drawn[0].axes[0]
    share = ax.images[0].get_array()
    np.testing.assert_allclose(share[0], [0.75, 0.25, 0, 0])
    np.testing.assert_allclose(share[1], [0, 0, 0, 0])
    np.testing.assert_allclose(share[2], [1 / 7, 1 / 7, 5 / 7, 0])
    cells = texts(ax)
    assert cells[0] == "0.75\n(3)" and cells[4] == "0.00\n(0)" and cells[10] == "0.71\n(5)"
    # Legible on the dark cells only.
    assert [ax.texts[k].get_color() for k in (0, 1, 10, 15)] == ["white", "black", "white", "black"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["P (4)", "N (0)", "S (7)", "O (4)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["P", "N", "S", "O"]


# ---------------------------------------------------------------- Fig. 7


def comparison_row(name, rr=0.5, uf1=0.4, fold_mean=0.35):
    return dict(name=name, rr_pooled=rr, uf1_pooled=uf1, uf1_fold_mean=fold_mean)


def test_comparison_bars_draw_each_run_and_leave_absent_values_out(tmp_path, drawn):
    rows = [comparison_row("ours", rr=0.6104), comparison_row("paper", rr=None, fold_mean=NAN)]
    png = str(tmp_path / "comparison.png")
    plots.comparison_bars(rows, png)
    png_size(png, (7.0, 4.2))
    rr_ax, uf1_ax = drawn[0].axes
    assert bar_heights(rr_ax)[0] == pytest.approx(61.04) and math.isnan(bar_heights(rr_ax)[1])
    assert texts(rr_ax) == ["61.04"]          # no label over the absent bar
    assert bar_heights(uf1_ax)[:2] == [0.4, 0.4] and bar_heights(uf1_ax)[2] == 0.35
    assert math.isnan(bar_heights(uf1_ax)[3])
    # Pooled and fold-mean side by side around each run's tick.
    centres = [b.get_x() + b.get_width() / 2 for b in uf1_ax.patches]
    assert centres == [pytest.approx(v) for v in (-0.19, 0.81, 0.19, 1.19)]
    assert [t.get_text() for t in rr_ax.get_xticklabels()] == ["ours", "paper"]


def test_comparison_bars_widen_with_the_runs(tmp_path):
    one = png_size(plots.comparison_bars([comparison_row("a")], str(tmp_path / "a.png")),
                   (7.0, 4.2))
    ten = png_size(plots.comparison_bars([comparison_row("run%d" % i) for i in range(10)],
                                         str(tmp_path / "b.png")), (14.0, 4.2))
    assert ten[1] > 1.5 * one[1]


# ---------------------------------------------------------------- MEGC 2019


def test_megc_bars_hatch_the_optimistic_rows_and_outline_ours(tmp_path, drawn):
    rows = [dict(name="oracle paper", uf1=0.8, uar=NAN, optimistic=True),
            dict(name="fair paper", uf1=0.7, uar=0.72),
            dict(name="ours", uf1=0.61, uar=0.6)]
    png = str(tmp_path / "megc.png")
    plots.megc_bars(rows, png)
    png_size(png, (6.0, 4.0))
    ax = drawn[0].axes[0]
    uf1, uar = ax.patches[:3], ax.patches[3:6]
    assert [b.get_hatch() for b in uf1] == ["//", None, None]
    assert [b.get_hatch() for b in uar] == ["//", None, None]
    assert uf1[2].get_linewidth() == 1.5 and uar[2].get_linewidth() == 1.5
    assert uf1[1].get_linewidth() != 1.5
    assert texts(ax) == ["0.800", "0.700", "0.610", "0.720", "0.600"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["UF1", "UAR", "epoch chosen on the test subject"]


def test_megc_bars_without_an_optimistic_row_have_no_hatch_in_the_legend(tmp_path, drawn):
    plots.megc_bars([dict(name="ours", uf1=0.5, uar=0.5)], str(tmp_path / "megc.png"))
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["UF1", "UAR"]
    assert all(b.get_hatch() is None for b in ax.patches)


# ---------------------------------------------------------------- Fig. 6


def rates_row(name, n=10, tnr=0.9):
    return dict(name=name, n=n, rr=0.5, **{"tpr_" + c: 0.25 * k for k, c in enumerate("PNSO")},
                **{"tnr_" + c: tnr for c in "PNSO"})


def test_rates_by_database_one_panel_per_database(tmp_path, drawn):
    rows = [rates_row("casme2"), rates_row("samm", n=3, tnr=None), rates_row("all", n=13)]
    png = str(tmp_path / "rates.png")
    plots.rates_by_database(rows, png, "Fig. 6")
    png_size(png, (3.2 * 3 + 0.6, 3.6))
    axes = drawn[0].axes
    assert [ax.get_title() for ax in axes] == ["casme2 (10 clips)", "samm (3 clips)", "all (13 clips)"]
    # RR, then TPR of P, N, S, O, then TNR of each.
    assert bar_heights(axes[0]) == [0.5, 0, 0.25, 0.5, 0.75, 0.9, 0.9, 0.9, 0.9]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["RR", "P", "N", "S", "O"]
    assert axes[0].get_ylim() == (0, 1) and axes[0].get_ylabel() == "rate"
    assert all(math.isnan(h) for h in bar_heights(axes[1])[5:])     # undefined: no bar
    labels = [t.get_text() for t in drawn[0].legends[0].get_texts()]
    assert labels == ["RR", "TPR", "TNR"]


def test_rates_by_database_of_one_or_no_database(tmp_path, drawn):
    one = png_size(plots.rates_by_database([rates_row("casme2")], str(tmp_path / "one.png"), "t"),
                   (3.8, 3.6))
    # No rows still make a figure (one empty panel), not an error.
    png_size(plots.rates_by_database([], str(tmp_path / "none.png"), "t"), (3.8, 3.6))
    assert len(drawn[0].axes) == 1 and len(drawn[1].axes) == 1
    assert len(drawn[1].axes[0].patches) == 0 and drawn[1].legends[0].get_texts() == []
    three = png_size(plots.rates_by_database([rates_row("a")] * 3, str(tmp_path / "three.png"),
                                             "t"), (10.2, 3.6))
    assert three[1] > 2 * one[1]


# ---------------------------------------------------------------- Fig. 9


def curve(label, test=True, train=True):
    return dict(label=label, test_iters=[0, 10, 20] if test else [],
                test_acc=[0.2, 0.4, 0.5] if test else [], test_loss=[1.3, 1.2, NAN] if test else [],
                train_iters=[0, 5, 10, 15] if train else [],
                train_loss=[1.4, 1.3, 1.1, 1.0] if train else [])


def test_training_curves_leave_empty_series_out(tmp_path, drawn):
    png = str(tmp_path / "curves.png")
    plots.training_curves([curve("psn"), curve("tp1", train=False), curve("rnn", test=False)],
                          png, "Fig. 9")
    png_size(png, (11, 4.2))
    acc, loss = drawn[0].axes[:2]
    assert [line.get_label() for line in acc.lines] == ["psn", "tp1"]
    assert [line.get_label() for line in loss.lines] == ["psn test", "psn train", "tp1 test",
                                                        "rnn train"]
    # One colour per log across both panels.
    assert acc.lines[0].get_color() == loss.lines[1].get_color() != acc.lines[1].get_color()
    assert loss.lines[3].get_color() not in (acc.lines[0].get_color(), acc.lines[1].get_color())
    # A lone point (the nan breaks the test loss line) still shows as a marker.
    assert loss.lines[0].get_marker() == "o"


def test_training_curves_of_nothing_have_no_legend(tmp_path, drawn):
    png = str(tmp_path / "curves.png")
    plots.training_curves([curve("empty", test=False, train=False)], png, "t")
    png_size(png, (11, 4.2))
    assert all(ax.get_legend() is None and len(ax.lines) == 0 for ax in drawn[0].axes[:2])


def test_training_curves_legend_takes_two_columns_past_five_logs(tmp_path, drawn):
    plots.training_curves([curve("run%d" % i) for i in range(6)], str(tmp_path / "c.png"), "t")
    plots.training_curves([curve("run%d" % i) for i in range(5)], str(tmp_path / "d.png"), "t")
    assert drawn[0].axes[0].get_legend()._ncols == 2
    assert drawn[1].axes[0].get_legend()._ncols == 1


# ---------------------------------------------------------------- Fig. 10


def retention_rows(share=0.3, ref_rr=0.55):
    return [dict(reference=True, bin="fixed lambda", share_mean=share, rr_pooled=ref_rr, f1=0.4),
            dict(reference=False, bin="10-20 %", share_mean=0.15, rr_pooled=0.6, f1=None),
            dict(reference=False, bin="20-30 %", share_mean=0.25, rr_pooled=0.7, f1=0.5)]


def test_retention_curves_draw_levels_as_bars_and_the_fixed_lambda_as_a_line(tmp_path, drawn):
    png = str(tmp_path / "fig10.png")
    plots.retention_curves(retention_rows(), png)
    png_size(png, (10, 3.8))
    rr, f1 = drawn[0].axes
    assert bar_heights(rr) == [pytest.approx(60), pytest.approx(70)]
    assert texts(rr) == ["60.0", "70.0"] and texts(f1) == ["0.500"]     # f1 None: no label
    assert [t.get_text() for t in rr.get_xticklabels()] == ["10-20 %", "20-30 %"]
    assert rr.lines[0].get_ydata()[0] == pytest.approx(55) and f1.lines[0].get_ydata()[0] == 0.4
    assert [t.get_text() for t in rr.get_legend().get_texts()] == ["fixed lambda (E 30 % non-zero)"]
    assert rr.get_ylim() == (0, 100) and f1.get_ylim() == (0, 1)


def test_retention_curves_without_a_usable_reference(tmp_path, drawn):
    plots.retention_curves(retention_rows(share=None), str(tmp_path / "a.png"))
    assert [t.get_text() for t in drawn[0].axes[0].get_legend().get_texts()] == \
        ["fixed lambda (E ? non-zero)"]
    # The reference's RR is missing: no line in that panel, the F1 panel keeps its own.
    plots.retention_curves(retention_rows(ref_rr=None), str(tmp_path / "b.png"))
    rr, f1 = drawn[1].axes
    assert len(rr.lines) == 0 and rr.get_legend() is None and len(f1.lines) == 1
    plots.retention_curves(retention_rows()[1:], str(tmp_path / "c.png"))
    assert all(len(ax.lines) == 0 and ax.get_legend() is None for ax in drawn[2].axes)


# ---------------------------------------------------------------- Fig. 8


def test_feature_grid_one_tile_per_channel_up_to_the_cap(tmp_path, drawn):
    rng = np.random.RandomState(0)
    frame = rng.randint(0, 255, (112, 112, 3)).astype(np.uint8)
    sparse = rng.normal(0, 1, (112, 112))
    conv1 = rng.rand(12, 27, 27)
    conv5 = np.zeros((70, 6, 6))
    conv5[3] = 2.0
    png = str(tmp_path / "fig8.png")
    plots.feature_grid(frame, sparse, {"conv1": conv1, "conv5": conv5}, png, "Fig. 8")
    # 12 channels take 2 rows of 8 tiles, 70 are cut to 64: 8 rows.
    png_size(png, (2.6 + 1.1 * 8, 0.55 + 1.1 * 10))
    axes = drawn[0].axes
    assert len(axes) == 2 + 12 + 64
    assert axes[0].get_title() == "raw frame" and axes[1].get_title() == "|E|"
    assert axes[1].images[0].get_clim()[1] == pytest.approx(np.percentile(np.abs(sparse), 99.5))
    tiles = axes[2:]
    assert tiles[0].get_ylabel() == "conv1" and tiles[12].get_ylabel() == "conv5"
    assert tiles[1].get_ylabel() == ""
    # Each tile to its own maximum; a channel that never fires stays black, not a divide by 0.
    assert tiles[0].images[0].get_clim() == (0, pytest.approx(conv1[0].max()))
    assert tiles[12 + 3].images[0].get_clim() == (0, 2.0)
    assert tiles[12].images[0].get_clim() == (0, 1)


def test_feature_grid_max_channels_and_a_single_small_layer(tmp_path, drawn):
    png = str(tmp_path / "fig8.png")
    plots.feature_grid(np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16)),
                       {"conv1": np.ones((20, 4, 4))}, png, "t", max_channels=3)
    # One row of tiles: the figure keeps the two rows the frame and |E| need (the empty
    # tile columns are trimmed away, so only the height is the drawn one).
    png_size(png, (None, 0.55 + 1.1 * 2))
    assert len(drawn[0].axes) == 2 + 3


def test_megc_bars_of_no_rows_say_so(tmp_path):
    with pytest.raises(ValueError, match="no rows to draw"):
        plots.megc_bars([], str(tmp_path / "megc.png"))
    assert not (tmp_path / "megc.png").exists()
