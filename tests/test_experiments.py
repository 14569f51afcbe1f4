"""The named experiments (psn/experiments.py): each one's plan, its checks, and its writer
(psn/report/experiments.py) on small predictions whose numbers are worked out by hand; one
end-to-end run of fig3, fig8 and fig10 at smoke scale through real Caffe."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from psn import experiments as ex
from psn.config import RunError
from psn.experiments import EXPERIMENTS, Need, Setting, check_setting, plan
from psn.report import experiments as writers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = "database,subject,clip,fold,label,pred,prob_0,prob_1,prob_2,prob_3"
ALL = {"casme": "/c", "casme2": "/c2", "casme2sq": "/sq", "samm": "/s"}


def setting(tmp_path, **kw):
    kw.setdefault("roots", {"casme2": "/db"})
    kw.setdefault("synthetic", True)
    return Setting(out=str(tmp_path), schedule="demo", width=0.125, **kw)


# ------------------------------------------------------------------ plans

def test_each_experiment_plans_the_runs_the_paper_needs(tmp_path):
    s = setting(tmp_path)
    models = lambda name: [n.model for n in plan(name, s)]     # noqa: E731
    for name in ("table6", "table7", "fig6", "fig8"):
        assert models(name) == ["psn"]
    assert models("table5") == ["psn", "ststnet", "off_apexnet"]
    assert models("fig7") == ["psn", "psn_spatial", "psn_temporal", "psn_swap", "psn_tp1",
                              "alexnet_rnn", "psn_no_conv"]
    assert models("table9") == ["psn", "psn_prod", "psn_concat", "vgg16_sum", "vgg16_prod",
                                "vgg16_concat", "resnet10_sum", "resnet10_prod",
                                "resnet10_concat"]
    assert plan("fig3", s) == [] and not EXPERIMENTS["fig3"].trains
    fig10 = plan("fig10", s)
    # The fixed lambda for reference, then the levels; 25 % is the pipeline's default, so
    # that level is the default preprocessing itself.
    assert [n.sparsity for n in fig10] == ["lambda", 0.05, 0.15, None, 0.35, 0.45]
    assert {n.model for n in fig10} == {"spatial_apex"} and {n.batch for n in fig10} == {16}
    # Every experiment that names a paper model trains a model psn.nets generates.
    from psn.nets import MODELS
    assert {n.model for e in EXPERIMENTS for n in plan(e, s)} <= set(MODELS)


def test_runs_are_shared_across_experiments_and_variants_kept_apart(tmp_path):
    s = setting(tmp_path)
    psn = s.run_config(Need("psn"))
    assert psn.out == str(tmp_path / "runs" / "psn_w0.125_demo")
    assert psn.data == str(tmp_path / "data") and psn.folds is None
    # table5 and fig7 name the same run: one training serves both.
    assert s.run_config(plan("table5", s)[0]).out == s.run_config(plan("fig7", s)[0]).out
    apex = [s.run_config(n) for n in plan("fig10", s)]
    assert len({c.out for c in apex}) == 6 and len({c.data for c in apex}) == 6
    assert apex[0].data == str(tmp_path / "data_lambda")
    assert apex[0].out.endswith("spatial_apex_w0.125_demo_lambda")
    assert apex[2].data == str(tmp_path / "data_sparsity15")
    assert apex[3].data == str(tmp_path / "data") and apex[3].batch == 16
    assert apex[3].out.endswith("spatial_apex_w0.125_demo")
    assert s.data_dir(0.25) == s.data_dir(None) == s.data_dir()
    assert setting(tmp_path, quick=True).run_config(Need("psn")).folds == (1,)


def test_bad_requests_are_one_line_each(tmp_path):
    with pytest.raises(RunError, match="unknown experiment 'tabel9': choose from table5"):
        check_setting(["tabel9"], setting(tmp_path))
    real = setting(tmp_path, roots={"casme2": "/c2", "samm": "/s"}, synthetic=False)
    with pytest.raises(RunError, match="table6 .* needs casme, casme2sq too: add --casme DIR "
                                       "--casme2sq DIR, or give --partial"):
        check_setting(["table5", "table6"], real)
    check_setting(["table6", "fig6"], setting(tmp_path, roots=ALL, synthetic=False))
    check_setting(["fig6"], setting(tmp_path, roots={"samm": "/s"}, synthetic=False,
                                    partial=True))
    check_setting(["table5"], real)
    for levels in ((0.0, 0.2), (0.2, 0.2), (1.5,), ()):
        with pytest.raises(RunError, match="--levels"):
            check_setting(["fig10"], setting(tmp_path, levels=levels))
    with pytest.raises(RunError, match="--quick trains fold 1 only"):
        check_setting(["fig8"], setting(tmp_path, quick=True, fold=2))


def test_list_and_unknown_names_through_the_command(tmp_path):
    from psn.main import main
    res = subprocess.run([sys.executable, "-m", "psn.main", "--list-experiments"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0
    assert [line.split()[0] for line in res.stdout.splitlines()] == list(EXPERIMENTS)
    with pytest.raises(SystemExit) as exc:
        main(["--experiment", "fig10", "--levels", "0.2,x", "--out", str(tmp_path)])
    assert exc.value.code == 2


# ------------------------------------------------------------------ writers

# Clip i: database, label, prediction, fold. Worked out by hand below.
CLIPS = [("casme", 0, 0, 1), ("casme", 1, 1, 1), ("casme2", 1, 3, 1), ("samm", 3, 3, 1),
         ("casme", 2, 2, 2), ("casme2", 1, 1, 2), ("samm", 3, 1, 2), ("samm", 3, 3, 2)]


def write_run(folder, clips=CLIPS):
    os.makedirs(folder, exist_ok=True)
    lines = [HEADER]
    for i, (db, y, p, fold) in enumerate(clips):
        probs = ["0.1"] * 4
        probs[p] = "0.7"
        lines.append("%s,%s/s%d,clip%d,%d,%d,%d,%s" % (db, db, i % 3, i, fold, y, p,
                                                     ",".join(probs)))
    with open(os.path.join(folder, "predictions.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return folder


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def psn_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("exp")
    return base, {Need("psn"): write_run(str(base / "runs" / "psn"))}


def test_table5_beside_the_paper(psn_run, tmp_path):
    base, runs = psn_run
    md = writers.write_table5(setting(tmp_path), runs, str(tmp_path))
    rows = read_csv(str(tmp_path / "table5.csv"))
    # 6 of 8 right; fold 1: 3/4, fold 2: 3/4. Majority of each fold's training set: Others
    # (fold 1 trains on fold 2: two Others) and Negative (fold 2 trains on fold 1: two Negative).
    assert float(rows[0]["rr_pooled"]) == pytest.approx(0.75)
    assert float(rows[0]["rr_fold_mean"]) == pytest.approx(0.75)
    assert float(rows[1]["rr_pooled"]) == pytest.approx((1 + 1) / 8)
    assert rows[2]["name"] == "paper PSN (Table 5)" and float(rows[2]["rr_pooled"]) == 0.6492
    assert float(rows[2]["f1 (= uf1 fold mean)"]) == 0.5211
    text = open(md).read()
    assert "| PSN (this run) | 8 | 75.00 | 75.00 |" in text and "64.92" in text
    assert "ours are each fold's final iteration" in text and "the paper does not say" in text
    assert rows[3]["name"].startswith("paper STSTNet") and float(rows[3]["rr_pooled"]) == 0.5323
    assert os.path.exists(str(tmp_path / "report" / "report.md"))


def test_table5_puts_the_flow_baselines_trained_here_beside_psn(psn_run, tmp_path):
    base, runs = psn_run
    # STSTNet right on 4 of 8 clips: its row holds its own scores, above the majority class.
    worse = [(db, y, y if i % 2 == 0 else (y + 1) % 4, fold) for i, (db, y, _, fold) in
             enumerate(CLIPS)]
    runs = {**runs, Need("ststnet"): write_run(str(base / "runs" / "ststnet"), worse)}
    writers.write_table5(setting(tmp_path), runs, str(tmp_path))
    rows = read_csv(str(tmp_path / "table5.csv"))
    assert [r["name"] for r in rows][:3] == ["PSN (this run)", "STSTNet (trained here, same folds)",
                                             "majority class (this run's folds)"]
    assert float(rows[1]["rr_pooled"]) == pytest.approx(0.5)
    assert "same clips, folds and weight selection" in open(str(tmp_path / "table5.md")).read()


def test_table6_per_database_beside_the_paper(psn_run, tmp_path):
    _, runs = psn_run
    writers.write_table6(setting(tmp_path, roots=ALL, synthetic=False), runs, str(tmp_path))
    rows = {r["database"]: r for r in read_csv(str(tmp_path / "table6.csv"))}
    assert list(rows) == ["combined", "casme", "casme2", "samm"]
    # CASME: P, N, S all right: UF1 = UAR = 1. CASME II: N -> O, N -> N: recall N 0.5,
    # F1_N = 2/3, F1_O = 0 (a false positive only): UF1 1/3 over the two classes in play.
    assert float(rows["casme"]["uf1"]) == pytest.approx(1.0)
    assert float(rows["casme2"]["uar"]) == pytest.approx(0.5)
    assert float(rows["casme2"]["uf1"]) == pytest.approx((2 / 3 + 0) / 2)
    assert float(rows["samm"]["paper_uf1"]) == 0.4545 and float(rows["combined"]["paper_uar"]) == 0.4871
    assert rows["samm"]["clips"] == "3"


def test_table7_confusion_beside_the_paper(psn_run, tmp_path):
    _, runs = psn_run
    md = writers.write_table7(setting(tmp_path), runs, str(tmp_path))
    rows = read_csv(str(tmp_path / "table7.csv"))
    ours = np.array([[int(r["ours_" + c]) for c in "PNSO"] for r in rows])
    paper = np.array([[int(r["paper_" + c]) for c in "PNSO"] for r in rows])
    expect = np.zeros((4, 4), int)
    for _, y, p, _ in CLIPS:
        expect[y, p] += 1
    assert (ours == expect).all()
    assert paper.tolist() == [[10, 20, 0, 25], [2, 226, 3, 49], [1, 21, 6, 22], [6, 79, 0, 180]]
    assert "N (3 | 280)" in open(md).read()


def test_fig6_and_fig7_are_drawn_with_their_values(psn_run, tmp_path):
    _, runs = psn_run
    writers.write_fig6(setting(tmp_path), runs, str(tmp_path / "f6"))
    rates = {r["database"]: r for r in read_csv(str(tmp_path / "f6" / "fig6.csv"))}
    assert float(rates["samm"]["rr"]) == pytest.approx(2 / 3)
    assert float(rates["samm"]["tpr_O"]) == pytest.approx(2 / 3)
    assert float(rates["casme2"]["tnr_O"]) == pytest.approx(0.5)
    assert open(str(tmp_path / "f6" / "fig6.png"), "rb").read(4) == b"\x89PNG"
    runs2 = dict(runs)
    runs2[Need("psn_spatial")] = write_run(str(tmp_path / "runs" / "psn_spatial"),
                                           [(d, y, y, f) for d, y, _, f in CLIPS])
    md = writers.write_fig7(setting(tmp_path), runs2, str(tmp_path / "f7"))
    # How and when: a table quoted in the README must carry its pipeline and settings.
    import datetime
    from preprocessing.clip_chain import PIPELINE_VERSION
    text = open(md).read()
    assert ("Made by `tools/run_psn.sh --experiment fig7` on %s: preprocessing pipeline "
            "version %d" % (datetime.date.today().isoformat(), PIPELINE_VERSION)) in text
    assert "temporal input: centred, rms 0.25 per clip (4 gray levels in quadrature)" in text
    assert "version %d, frames registered on the onset frame (ECC), RPCA" % PIPELINE_VERSION in text
    comp = {r["name"]: r for r in read_csv(str(tmp_path / "f7" / "fig7.csv"))}
    assert float(comp["psn_spatial"]["rr_pooled"]) == 1.0 and float(comp["psn"]["rr_pooled"]) == 0.75
    assert "majority class" in comp and "paper PSN (reported)" in comp
    assert os.path.getsize(str(tmp_path / "f7" / "fig7.png")) > 1000


def test_table9_has_nine_rows_in_the_papers_order(psn_run, tmp_path):
    _, runs = psn_run
    runs = dict(runs)
    runs[Need("vgg16_prod")] = write_run(str(tmp_path / "runs" / "vgg16_prod"),
                                         [(d, y, y, f) for d, y, _, f in CLIPS])
    md = writers.write_table9(setting(tmp_path), runs, str(tmp_path))
    rows = read_csv(str(tmp_path / "table9.csv"))
    assert [(r["backbone"], r["fusion"]) for r in rows] == [
        (b, f) for b in ("AlexNet", "VGG16", "ResNet10") for f in ("SUM", "PROD", "CONCAT")]
    assert [r["model"] for r in rows] == list(ex.TABLE9_MODELS)
    assert float(rows[0]["rr_mean"]) == pytest.approx(0.75) and float(rows[0]["rr_std"]) == 0.0
    assert float(rows[4]["rr_mean"]) == 1.0 and float(rows[4]["paper_rr_mean"]) == 0.6123
    assert rows[1]["rr_mean"] == "" and float(rows[1]["paper_f1"]) == 0.4702
    assert "not run" in open(md).read()


def write_manifest(data_dir, shares):
    os.makedirs(data_dir, exist_ok=True)
    from preprocessing.manifest import MANIFEST_COLUMNS
    with open(os.path.join(data_dir, "manifest.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        w.writeheader()
        for i, s in enumerate(shares):
            w.writerow(dict({c: "" for c in MANIFEST_COLUMNS}, index=i, included=1 if s else 0,
                            rpca_nnz_share=s or ""))


def test_fig10_rows_measure_each_levels_share_and_name_a_level_without_clips(tmp_path):
    s = setting(tmp_path, levels=(0.15, 0.25, 0.35))
    write_manifest(s.data_dir("lambda"), [0.4, 0.6, None])
    write_manifest(s.data_dir(0.15), [0.14, 0.16, 0.15])
    write_manifest(s.data_dir(), [0.25, 0.24, 0.26])
    write_manifest(s.data_dir(0.35), [None, None, None])
    runs = {Need("spatial_apex", "lambda", 16): write_run(str(tmp_path / "r0")),
            Need("spatial_apex", 0.15, 16): write_run(str(tmp_path / "r15")),
            Need("spatial_apex", None, 16): write_run(str(tmp_path / "r25"),
                                                      [(d, y, y, f) for d, y, _, f in CLIPS])}
    failed = {0.35: "no clip could be used; the reasons are in manifest.csv"}
    md = writers.write_fig10(s, runs, str(tmp_path / "out"), failed=failed)
    rows = read_csv(str(tmp_path / "out" / "fig10.csv"))
    assert [r["bin"] for r in rows] == ["fixed lambda", "10-20 %", "20-30 %", "30-40 %"]
    assert float(rows[0]["share_mean"]) == pytest.approx(0.5) and rows[0]["clips"] == "2"
    assert float(rows[1]["share_mean"]) == pytest.approx(0.15)
    assert float(rows[2]["rr_pooled"]) == 1.0 and float(rows[1]["rr_pooled"]) == 0.75
    assert rows[3]["rr_pooled"] == "" and "no clip could be used" in rows[3]["note"]
    text = open(md).read()
    assert "Best level here: 20-30 %" in text
    assert os.path.getsize(str(tmp_path / "out" / "fig10.png")) > 1000


def test_a_failed_level_is_named_and_the_rest_still_written(tmp_path, monkeypatch, capsys):
    """run_experiments: a level whose every clip is excluded is one line, not an abort; the
    other levels train and the figure is written."""
    from preprocessing.errors import InputError
    from psn import training
    s = setting(tmp_path, levels=(0.15, 0.25))
    trained = []

    def fake_preprocess(setting_, sparsities, log, flow=False):
        assert sparsities == {None, "lambda", 0.15}
        write_manifest(setting_.data_dir(), [0.25])
        write_manifest(setting_.data_dir("lambda"), [0.4])
        return {0.15: InputError("no clip could be used; the reasons are in manifest.csv")}

    def fake_run_folds(cfg):
        trained.append(os.path.basename(cfg.out))
        write_run(cfg.out)
        return 0

    monkeypatch.setattr(ex, "_preprocess", fake_preprocess)
    monkeypatch.setattr(training, "run_folds", fake_run_folds)
    written = ex.run_experiments(["fig10"], s)
    out = capsys.readouterr().out
    assert "fig10: the level 0.15 leaves no clip: no clip could be used" in out
    assert trained == ["spatial_apex_w0.125_demo_lambda", "spatial_apex_w0.125_demo"]
    rows = read_csv(os.path.join(os.path.dirname(written["fig10"]), "fig10.csv"))
    assert [r["rr_pooled"] != "" for r in rows] == [True, False, True]
    assert "no clip could be used" in rows[1]["note"]


# ------------------------------------------------------------------ end to end (Caffe)

def test_fig3_fig8_fig10_end_to_end_at_smoke_scale(caffe_env, tmp_path):
    """The command a user runs: a small synthetic database, PSN and the single-frame net
    trained (fold 1, smoke schedule), the three figures written; a rerun trains nothing."""
    out = str(tmp_path / "work")
    cmd = [sys.executable, "-m", "psn.main", "--out", out, "--experiment", "fig3,fig8,fig10",
           "--quick", "--schedule", "smoke", "--levels", "0.3", "--subjects", "4",
           "--clips-per-subject", "3", "--loso", "--workers", "2", "--jobs", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=caffe_env, cwd=ROOT,
                         timeout=1500)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    exp = os.path.join(out, "experiments")
    for name, png in (("fig3", "fig3.png"), ("fig8", "fig8.png"), ("fig10", "fig10.png")):
        with open(os.path.join(exp, name, png), "rb") as f:
            assert f.read(4) == b"\x89PNG", name
    rows = read_csv(os.path.join(exp, "fig10", "fig10.csv"))
    assert [r["bin"] for r in rows] == ["fixed lambda", "25-35 %"]
    assert all(r["rr_pooled"] != "" and r["n_folds"] == "1" for r in rows)
    # lambda per clip met the level's share of non-zeros (within the search's tolerance).
    assert abs(float(rows[1]["share_mean"]) - 0.3) < 0.02
    with open(os.path.join(out, "runs", "spatial_apex_w0.125_smoke_sparsity30", "fold01",
                           "deploy.prototxt")) as f:
        assert "dim: 1\n" in f.read()      # one frame per clip
    assert "Quick look" in open(os.path.join(exp, "fig8", "fig8.md")).read()
    again = subprocess.run(cmd, capture_output=True, text=True, env=caffe_env, cwd=ROOT,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already trained" in again.stdout and "trained 4 iterations" not in again.stdout
