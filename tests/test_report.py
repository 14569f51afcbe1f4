import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import matplotlib.image
import pytest

from prediction_files import LABELS, PRED_A, write_csv
from psn.report import PredictionsError, ReportError, make_report, read_predictions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")


def assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", path
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, path


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    (d / "psn").mkdir()
    a = write_csv(d / "psn" / "predictions.csv", PRED_A)
    b = write_csv(d / "perfect.csv", LABELS)
    out = d / "out"
    combined = make_report([a, b], str(out), logs=["psn=" + DATA])
    return out, combined


def test_files_exist_and_pngs_are_images(two_runs):
    out, _ = two_runs
    for f in ("report.md", "metrics.json", "comparison.csv", "comparison.png", "fold_rr.csv"):
        assert (out / f).is_file(), f
    for run in ("psn", "perfect"):  # 'psn': the folder of predictions.csv; 'perfect': stem
        for f in ("metrics.json", "summary.csv", "per_class.csv", "per_database.csv",
                  "folds.csv", "confusion_counts.csv", "confusion_normalised.csv"):
            assert (out / run / f).is_file(), (run, f)
        for scope in ("all", "casme", "casme2", "samm"):
            assert_png(str(out / run / ("confusion_%s.png" % scope)))
    assert_png(str(out / "comparison.png"))
    assert_png(str(out / "psn" / "curves.png"))
    # The pictures show the runs' numbers: a perfect run's confusion matrix is not the
    # imperfect run's, and neither picture is blank.
    imgs = [matplotlib.image.imread(str(out / run / "confusion_all.png")) for run in
            ("psn", "perfect")]
    assert all(img[..., :3].std() > 0.05 for img in imgs)
    assert imgs[0].shape != imgs[1].shape or np.abs(imgs[0] - imgs[1]).max() > 0.2
    assert not (out / "perfect" / "curves.png").exists()  # no logs given for that run
    leftovers = [f for _, _, fs in os.walk(out) for f in fs if f.endswith(".tmp")]
    assert leftovers == []


def test_metrics_json_values_by_hand(two_runs):
    out, combined = two_runs
    a = json.loads((out / "psn" / "metrics.json").read_text())
    assert a["rr_pooled"] == pytest.approx(0.5)
    assert a["uf1_pooled"] == pytest.approx(1 / 3)
    assert a["f1_pooled"] == a["uf1_pooled"]
    assert a["uar_pooled"] == pytest.approx(7 / 18)
    assert a["rr_fold_mean"] == pytest.approx(0.5)
    assert a["rr_fold_std"] == pytest.approx(1 / 6)
    assert a["uf1_fold_mean"] == pytest.approx((2 / 3 + 2 / 9) / 2)
    assert a["uar_fold_mean"] == pytest.approx(0.5)
    assert a["confusion"] == [[1, 1, 0, 0], [0, 2, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert a["per_class"]["Others"]["tpr"] is None  # undefined -> null, not NaN
    assert a["per_class"]["Negative"]["tnr"] == pytest.approx(2 / 3)
    samm = a["per_database"]["samm"]  # clips 1, 3, 5: (0->1), (1->1), (2->3)
    assert samm["n"] == 3 and samm["rr"] == pytest.approx(1 / 3)
    assert samm["confusion"] == [[0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert [f["fold"] for f in a["folds"]] == ["1", "2"]
    assert [f["rr"] for f in a["folds"]] == [pytest.approx(2 / 3), pytest.approx(1 / 3)]
    # majority baseline: fold 1 trains on (1, 1, 2) -> 1, fold 2 on (0, 0, 1) -> 0
    base = a["majority_baseline"]
    assert base["class_per_fold"] == {"1": "Negative", "2": "Positive"}
    assert base["rr_pooled"] == pytest.approx(1 / 6)
    assert len(a["logs"]) == 3

    b = json.loads((out / "perfect" / "metrics.json").read_text())
    assert (b["rr_pooled"], b["uf1_pooled"], b["uar_pooled"], b["rr_fold_mean"],
            b["rr_fold_std"]) == (1.0, 1.0, 1.0, 1.0, 0.0)

    top = json.loads((out / "metrics.json").read_text())
    assert top["order"] == ["psn", "perfect"]
    assert top["runs"]["psn"]["rr_pooled"] == pytest.approx(0.5)
    assert "rr_pooled" not in top  # several runs: no single headline at the top level
    assert top["paper_psn"]["rr"] == 0.6492
    assert round(top["paper_psn_table7_pooled"]["uf1_pooled"], 4) == 0.4653


def test_comparison_has_runs_one_baseline_and_paper(two_runs):
    out, _ = two_runs
    with open(out / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    names = [r["name"] for r in rows]
    assert names == ["psn", "perfect", "majority class", "paper PSN (reported)",
                     "paper PSN (Table 7, pooled)"]
    assert float(rows[2]["rr_pooled"]) == pytest.approx(1 / 6)
    paper = rows[3]
    assert float(paper["rr_pooled"]) == 0.6492
    assert float(paper["uf1_fold_mean"]) == 0.5211
    assert float(paper["uar_fold_mean"]) == 0.4871
    assert paper["uf1_pooled"] == ""  # not known how the paper averaged: not claimed pooled
    with open(out / "fold_rr.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["name"] == "psn"
    assert float(rows[0]["rr_fold_std"]) == pytest.approx(1 / 6)
    assert any(r["name"] == "paper AlexNet + SUM" and float(r["rr_fold_std"]) == 0.084
               for r in rows)


def test_confusion_csv_layout(two_runs):
    out, _ = two_runs
    with open(out / "psn" / "confusion_counts.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["scope", "true", "n", "P", "N", "S", "O"]
    assert rows[1] == ["all", "P", "2", "1", "1", "0", "0"]
    assert [r[0] for r in rows[1:]] == ["all"] * 4 + ["casme"] * 4 + ["casme2"] * 4 + ["samm"] * 4
    with open(out / "psn" / "confusion_normalised.csv") as f:
        rows = list(csv.reader(f))
    assert rows[1] == ["all", "P", "2", "0.5", "0.5", "0.0", "0.0"]
    assert rows[4] == ["all", "O", "0", "", "", "", ""]  # no true 'Others' clips


def test_report_markdown_mentions_tables(two_runs):
    out, _ = two_runs
    md = (out / "report.md").read_text()
    for text in ("Table 5", "Table 7", "Table 8", "Table 9", "Fig. 9", "paper PSN (reported)",
                 "majority class", "comparison.png", "psn/curves.png", "psn/confusion_all.png"):
        assert text in md, text


def test_single_run_cli_has_headline_keys_at_top(tmp_path):
    p = write_csv(tmp_path / "run.csv", PRED_A)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "report.py"), p,
                        "--names", "mine", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    top = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert top["rr_pooled"] == pytest.approx(0.5) and top["uf1_pooled"] == pytest.approx(1 / 3)
    assert top["uar_pooled"] == pytest.approx(7 / 18)
    assert top["rr_fold_mean"] == pytest.approx(0.5) and top["rr_fold_std"] == pytest.approx(1 / 6)
    assert (tmp_path / "out" / "mine" / "metrics.json").is_file()


def test_the_papers_report_refuses_a_three_class_file(tmp_path):
    """tools/report.py without --protocol reports the paper's 4 classes: MEGC's 3-class
    predictions are refused, naming the option that reports them."""
    p = tmp_path / "preds.csv"
    p.write_text("database,subject,clip,fold,label,pred,prob_0,prob_1,prob_2\n"
                 "samm,samm/006,a,1,2,0,0.5,0.2,0.3\n")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "report.py"), str(p),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "preds.csv: prob_0..prob_2 give 3 classes, the paper's report has 4" in r.stderr
    assert "--protocol megc2019" in r.stderr
    assert not (tmp_path / "out").exists()


def test_bad_class_names_file_and_line(tmp_path):
    p = write_csv(tmp_path / "preds.csv", PRED_A,
                          extra_rows=["samm,samm/s9,clipX,2,Negative,1,0.1,0.7,0.1,0.1"])
    with pytest.raises(PredictionsError, match=r"preds\.csv:8: label 'Negative' is not a class"):
        read_predictions(p)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "report.py"), p,
                        "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 2 and "preds.csv:8" in r.stderr


def test_argument_errors(tmp_path):
    p = write_csv(tmp_path / "a.csv", PRED_A)
    with pytest.raises(ReportError, match="--names: 2 name"):
        make_report([p], str(tmp_path / "out"), names=["x", "y"])
    empty = tmp_path / "nologs"
    empty.mkdir()
    (empty / "notes.log").write_text("nothing from caffe here\n")
    with pytest.raises(ReportError, match="no Caffe training logs found"):
        make_report([p], str(tmp_path / "out"), logs=[str(empty)])
    assert not (tmp_path / "out").exists()  # inputs are checked before anything is written
    with pytest.raises(ReportError, match="1 folder"):
        make_report([p, p], str(tmp_path / "out"), logs=[str(empty)])


def test_nan_never_reaches_json(two_runs):
    out, _ = two_runs
    text = (out / "psn" / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text)
    assert not math.isnan(json.loads(text)["rr_pooled"])


def test_rates_per_database_fig6(two_runs):
    """Fig. 6's values, worked out by hand for SAMM in run A: clips (0->1), (1->1), (2->3).
    P: TPR 0/1, TNR 2/2; N: 1/1, 1/2 (the P clip called N); S: 0/1, 2/2; O: no true clip
    (TPR undefined), TNR 2/3 (the S clip called O)."""
    out, _ = two_runs
    with open(out / "psn" / "rates_by_database.csv", newline="") as f:
        rows = {r["database"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["casme", "casme2", "samm"]
    samm = rows["samm"]
    assert (samm["name"], samm["n"]) == ("SAMM", "3")
    assert float(samm["rr"]) == pytest.approx(1 / 3)
    assert [float(samm["tpr_" + c]) for c in "PNS"] == [0.0, 1.0, 0.0] and samm["tpr_O"] == ""
    assert [float(samm["tnr_" + c]) for c in "PNSO"] == pytest.approx([1.0, 0.5, 1.0, 2 / 3])
    assert_png(str(out / "psn" / "rates_by_database.png"))
    assert "psn/rates_by_database.png" in (out / "report.md").read_text()


KILLED_MID_REPORT = """
import os, sys
sys.path.insert(0, {root!r})
import psn.report as report
# Killed (kill -9) after every run's files are written, before report.md.
report.markdown = lambda *a, **k: os._exit(9)
report.make_report([{preds!r}], {out!r}, names=["second"])
"""


def test_a_report_killed_mid_rewrite_leaves_the_one_before_whole(tmp_path):
    """kill -9 of report.py while it rewrote a folder left the first run's report.md beside
    the second run's files."""
    first = write_csv(tmp_path / "a.csv", PRED_A)
    second = write_csv(tmp_path / "b.csv", LABELS)
    out = tmp_path / "out"
    make_report([first], str(out), names=["first"])
    before = sorted(os.listdir(out))
    script = tmp_path / "killed.py"
    script.write_text(KILLED_MID_REPORT.format(root=ROOT, preds=second, out=str(out)))
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert res.returncode == 9, res.stderr
    assert sorted(os.listdir(out)) == before and not (out / "second").exists()
    assert [n for n in os.listdir(tmp_path) if n.startswith(".out.new-")]   # the killed one's
    make_report([second], str(out), names=["second"])
    assert sorted(os.listdir(out)) == sorted(n.replace("first", "second") for n in before)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".out.")]   # cleaned up
    with open(out / "metrics.json") as f:
        assert json.load(f)["order"] == ["second"]


def test_a_report_does_not_replace_a_folder_it_did_not_write(tmp_path):
    preds = write_csv(tmp_path / "a.csv", PRED_A)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work")
    with pytest.raises(ReportError, match="mine holds files this tool did not write"):
        make_report([preds], str(mine))
    assert os.listdir(mine) == ["thesis.tex"]


def test_names_are_a_comma_separated_list_like_every_tool_s(tmp_path):
    a = write_csv(tmp_path / "a.csv", PRED_A)
    b = write_csv(tmp_path / "b.csv", LABELS)
    from psn.report import main
    for names in (["first,second"], ["first", "second"]):
        out = tmp_path / ("out%d" % len(names))
        assert main([a, b, "--names"] + names + ["--out", str(out)]) == 0
        assert json.loads((out / "metrics.json").read_text())["order"] == ["first", "second"]
