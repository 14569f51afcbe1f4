"""SMIC's loader (the folder tree is its annotation), protocols as data (paper, megc2019), and
Table 4 under MEGC 2019's protocol, on fake trees and sheets in the owners' formats."""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

import fake_databases as fd
from preprocessing import protocols
from preprocessing.clips import Entry
from preprocessing.errors import InputError
from preprocessing.loaders import load_database, read_sheet
from preprocessing.table4 import differences, format_csv, table4, table4_with_skips

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def smic(tmp_path_factory):
    return fd.make_smic(tmp_path_factory.mktemp("smic"))


@pytest.fixture(scope="module")
def megc_roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("megc")
    return {"smic": fd.make_smic(base), "casme2": fd.make_casme2(base), "samm": fd.make_samm(base)}


# ---------------------------------------------------------------- SMIC
def test_smic_reads_every_camera_from_the_tree(smic):
    clips, skipped = load_database("smic", smic)
    got = {(c.database, c.subject, c.clip): (c.emotion, c.onset, c.offset) for c in clips}
    assert got == fd.SMIC_EXPECTED
    reasons = {s.clip: s.reason for s in skipped}
    assert reasons["s03_ha_01"] == "emotion folder 'happy' is not one of negative, positive, surprise"
    assert reasons["s4_ne_03"].startswith("missing frames 305 of 300..310")


def test_smic_apex_is_the_middle_frame_and_said_so(smic):
    clips, _ = load_database("smic", smic)
    c = next(c for c in clips if c.clip == "s1_ne_01" and c.database == "smic-hs")
    assert c.apex == (76532 + 76545) // 2
    assert c.notes == ("SMIC annotates no apex: the middle frame 76538 stands in",)
    assert len(c.frames) == 76545 - 76532 + 1 and c.frames[0].endswith("image076532.bmp")
    sur = next(c for c in clips if c.clip == "s03_sur_01")
    assert [os.path.basename(f) for f in sur.frames[4:6]] == ["image999999.bmp", "image1000000.bmp"]


def test_smic_parts_and_a_missing_part(smic):
    entries, _ = read_sheet("smic", smic, parts=("vis",))
    assert {e.database for e in entries} == {"smic-vis"}
    with pytest.raises(InputError, match=r"no SMIC NIR folder \(found HS, VIS\)"):
        read_sheet("smic", smic, parts=("hs", "nir"))


def test_smic_root_without_cameras_is_an_error(tmp_path):
    (tmp_path / "empty" / "s1").mkdir(parents=True)
    with pytest.raises(InputError, match="no SMIC camera folder"):
        read_sheet("smic", str(tmp_path / "empty"))


# ---------------------------------------------------------------- protocols
def test_both_protocols_load():
    paper, megc = protocols.load_protocol("paper"), protocols.load_protocol("megc2019")
    assert paper.classes == ("positive", "negative", "surprise", "others")
    assert (paper.label_by, paper.folds) == ("au_rule", "stratified")
    assert megc.classes == ("negative", "positive", "surprise") and megc.folds == "loso"
    assert megc.loader_names() == ["smic", "casme2", "samm"]
    assert megc.loader_options() == {"smic": {"parts": ("hs",)}}
    exp = megc.expected
    assert [exp[d]["subjects"] for d in ("smic-hs", "casme2", "samm", "total")] == [16, 24, 28, 68]
    assert sum(exp[d][c] for d in ("smic-hs", "casme2", "samm") for c in megc.classes) == 442
    for c in megc.classes:
        assert sum(exp[d][c] for d in ("smic-hs", "casme2", "samm")) == exp["total"][c]


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("classes"), "$: 'classes' is a required property"),
    (lambda d: d.update(label_by="au"), "$.label_by is \"au\", expected one of 'au_rule', 'emotion'"),
    (lambda d: d.update(folds="kfold"), "$.folds is \"kfold\", expected one of 'stratified', 'loso'"),
    (lambda d: d["emotions"]["samm"].update(anger="angry"), "the samm mapping names classes ['angry']"),
    (lambda d: d["emotions"].pop("casme2"), "no emotion mapping for 'casme2'"),
    (lambda d: d.update(classes=["a", "a"]), "$.classes is [\"a\", \"a\"], expected a list of two or "
                                             "more distinct class names"),
    (lambda d: d.update(exclued=[]), "$: Additional properties are not allowed ('exclued' was unexpected)"),
    (lambda d: d["expected"]["samm"].update(surprise="15"), "$.expected.samm.surprise is \"15\", "
                                                            "expected a count"),
])
def test_a_malformed_protocol_file_is_named_with_the_fault(tmp_path, edit, message):
    with open(os.path.join(protocols.PROTOCOL_DIR, "megc2019.json")) as f:
        d = json.load(f)
    edit(d)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(d))
    with pytest.raises(InputError) as e:
        protocols.load_protocol(str(path))
    assert str(path) in str(e.value) and message in str(e.value)


@pytest.mark.parametrize("classes", [["positive", "negative", "surprise"],
                                     ["Negative", "Positive", "Surprise", "Others"],
                                     ["negative", "positive", "surprise", "others"]],
                         ids=["three", "renamed", "reordered"])
def test_an_au_rule_protocol_must_name_the_au_rules_classes(tmp_path, classes):
    """An AU-rule protocol with three classes wrote every output and then tracebacked (run_folds
    then trained label 3 on a 3-output net); with its four classes renamed it was accepted and
    the AU rule's positive clips were called "Negative"."""
    with open(os.path.join(protocols.PROTOCOL_DIR, "paper.json")) as f:
        d = json.load(f)
    assert d["label_by"] == "au_rule"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(dict(d, classes=classes)))
    with pytest.raises(InputError) as e:
        protocols.load_protocol(str(path))
    assert str(path) in str(e.value) and "label_by 'au_rule' labels clips with the AU rule's 4 " \
        "classes ['positive', 'negative', 'surprise', 'others'] in that order" in str(e.value)
    assert protocols.load_protocol("paper").classes == ("positive", "negative", "surprise", "others")


# Item 15 of "Nothing silently wrong": values of the wrong JSON type were tracebacks.
WRONG_TYPES = {
    "a number at top level": (lambda d: 5, "$ is 5, expected an object of protocol fields"),
    "classes a number": (lambda d: {**d, "classes": 3}, "$.classes is 3, expected a list of two"),
    "classes a string": (lambda d: {**d, "classes": "abc"}, '$.classes is "abc", expected a list'),
    "emotions a list": (lambda d: {**d, "emotions": ["happiness"]},
                        '$.emotions is ["happiness"], expected an object {database: '),
    "an emotion mapped to a list": (
        lambda d: {**d, "emotions": {**d["emotions"], "samm": {"anger": ["negative"]}}},
        '$.emotions.samm.anger is ["negative"], expected a class name'),
    "exclude: [5]": (lambda d: {**d, "exclude": [5]}, "$.exclude[0] is 5, expected an object"),
}


def _wrong_protocol(tmp_path, case):
    with open(os.path.join(protocols.PROTOCOL_DIR, "megc2019.json")) as f:
        d = json.load(f)
    edit, message = WRONG_TYPES[case]
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps(edit(d)))
    return str(path), message


def _one_error_line(stderr, path, message):
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert path in lines[0] and message in lines[0] and "Fix the file" in lines[0], lines[0]


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_a_protocol_of_wrong_types_is_one_line_in_table4(tmp_path, case, megc_roots):
    path, message = _wrong_protocol(tmp_path, case)
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "preprocess.py"), "table4",
                          "--protocol", path, "--casme2", megc_roots["casme2"]],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    _one_error_line(res.stderr, path, message)


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_a_protocol_of_wrong_types_is_one_line_in_run_before_any_work(tmp_path, case, megc_roots,
                                                                      capsys):
    from preprocessing import cli
    path, message = _wrong_protocol(tmp_path, case)
    out = tmp_path / "prep"
    assert cli.main(["run", "--protocol", path, "--casme2", megc_roots["casme2"],
                     "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, path, message)
    assert not out.exists()


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_a_protocol_of_wrong_types_is_one_line_in_run_psn_before_any_work(tmp_path, case, capsys):
    """tools/run_psn.sh execs psn.main after building Caffe; the protocol is checked before
    Caffe is looked for or the synthetic database made."""
    from psn.main import main
    path, message = _wrong_protocol(tmp_path, case)
    with pytest.raises(SystemExit) as exc:
        main(["--protocol", path, "--out", str(tmp_path / "work")])
    assert exc.value.code == 2
    _one_error_line(capsys.readouterr().err, path, message)
    assert not (tmp_path / "work").exists()


def test_a_protocol_of_wrong_types_through_the_commands(tmp_path, megc_roots):
    """The same, as processes: `preprocess.py run` and `python -m psn.main` (run_psn.sh's)."""
    path, message = _wrong_protocol(tmp_path, "emotions a list")
    for cmd in ([os.path.join(REPO, "tools", "preprocess.py"), "run", "--casme2",
                 megc_roots["casme2"], "--out", str(tmp_path / "prep")], ["-m", "psn.main"]):
        res = subprocess.run([sys.executable] + cmd + ["--protocol", path], capture_output=True,
                             text=True, timeout=120, cwd=REPO)
        assert res.returncode == 2, res.stderr
        _one_error_line(res.stderr, path, message)
    assert not (tmp_path / "prep").exists()


def test_the_shipped_protocols_fit_the_schema():
    import jsonschema
    for name in protocols.names():
        with open(os.path.join(protocols.PROTOCOL_DIR, name + ".json")) as f:
            jsonschema.validate(json.load(f), protocols.SCHEMA)
    jsonschema.Draft202012Validator.check_schema(protocols.SCHEMA)


def test_unknown_protocol_lists_the_known_ones():
    with pytest.raises(InputError, match="one of casme3, casme3_ac, megc2019, paper"):
        protocols.load_protocol("megc2020")


def _entry(database, subject, clip, emotion, label=3):
    return Entry(database, subject, clip, 1, None, 9, "", frozenset(), label, emotion, "x:1")


def test_megc_relabels_by_emotion_and_records_what_it_leaves_out():
    megc = protocols.load_protocol("megc2019")
    entries = [_entry("casme2", "casme2/sub01", "a", "happiness"),
               _entry("casme2", "casme2/sub01", "b", "Repression "),
               _entry("casme2", "casme2/sub02", "c", "fear"),
               _entry("casme2", "casme2/sub05", "EP09_05f", "disgust"),
               _entry("samm", "samm/006", "d", "Contempt"),
               _entry("samm", "samm/006", "e", "Other"),
               _entry("samm", "samm/007", "f", "Angry"),
               _entry("smic-hs", "smic/s01", "g", "surprise"),
               _entry("smic-vis", "smic/s01", "h", "surprise")]
    kept, skipped = protocols.apply(megc, entries)
    assert [(e.clip, megc.classes[e.label]) for e in kept] == [
        ("a", "positive"), ("b", "negative"), ("d", "negative"), ("g", "surprise")]
    why = {s.clip: s.reason for s in skipped}
    assert why["c"] == "emotion 'fear' is not one of megc2019's classes (negative, positive, surprise)"
    assert why["e"].startswith("emotion 'Other' is not one of megc2019's classes")
    assert why["EP09_05f"].startswith("megc2019: not in the MEGC 2019 organisers' list")
    assert why["f"].startswith("emotion 'Angry' is not in protocol megc2019's mapping for samm")
    assert why["h"] == "not part of protocol megc2019"


def test_paper_protocol_refuses_smic_and_keeps_the_au_labels():
    paper = protocols.load_protocol("paper")
    e = _entry("casme2", "casme2/sub01", "a", "happiness", label=0)
    assert protocols.apply(paper, [e]) == ([e], [])
    with pytest.raises(InputError, match="smic-hs has no AU coding.*it belongs to protocol megc2019"):
        protocols.apply(paper, [_entry("smic-hs", "smic/s01", "g", "surprise")])


def test_a_subject_in_two_databases_is_an_error():
    megc = protocols.load_protocol("megc2019")
    with pytest.raises(InputError, match="subject x/1 appears in casme2 and in samm"):
        protocols.apply(megc, [_entry("casme2", "x/1", "a", "happiness"),
                               _entry("samm", "x/1", "b", "Happiness")])


# ---------------------------------------------------------------- Table 4
def test_table4_megc2019_on_fake_trees(megc_roots):
    megc = protocols.load_protocol("megc2019")
    rows, skipped = table4_with_skips(megc_roots, protocol=megc)
    # CASME II fakes: happiness -> positive; disgust x2, repression -> negative; sub04/EP12_01f
    # is one of the two named exclusions; others dropped. SAMM: Anger, Contempt, Sadness,
    # Disgust -> negative; Happiness -> positive; Surprise; Other x2 dropped. SMIC-HS: 4 clip
    # folders under the three words (s4_ne_03 counts: Table 4 does not look at frames).
    assert format_csv(rows, megc) == (
        "database,negative,positive,surprise,total,subjects\n"
        "smic-hs,2,1,1,4,3\n"
        "casme2,3,1,0,4,3\n"
        "samm,4,1,1,6,5\n"
        "total,9,3,2,14,11\n")
    assert any(s.clip == "EP12_01f" and s.reason.startswith("megc2019:") for s in skipped)
    assert differences(rows, megc)[0] == "smic-hs negative: 2 here, 70 published"


def test_table4_paper_protocol_unchanged_and_refuses_smic(megc_roots):
    rows = table4({"casme2": megc_roots["casme2"]})
    assert format_csv(rows).splitlines()[0] == "database,positive,negative,surprise,others,total"
    with pytest.raises(InputError, match="protocol paper uses casme, casme2, casme2sq, samm; --smic"):
        table4({"smic": megc_roots["smic"]})


def test_table4_cli_megc2019(megc_roots):
    args = [sys.executable, os.path.join(REPO, "tools", "preprocess.py"), "table4",
            "--protocol", "megc2019"] + [a for k, v in megc_roots.items() for a in ("--" + k, v)]
    res = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == "total,9,3,2,14,11"
    assert "megc2019: differs from the published counts: smic-hs negative: 2 here, 70 published" \
        in res.stderr
    bad = subprocess.run(args[:4] + ["megc2019", "--casme", megc_roots["casme2"]],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "protocol megc2019 uses smic-hs, casme2, samm; --casme is not part of it" in bad.stderr


# ---------------------------------------------------------------- MEGC scoring
def test_megc_scores_composite_and_per_database_by_hand(tmp_path):
    """Six clips, 3 classes (0 negative, 1 positive, 2 surprise), two databases.

    composite: confusion rows true N (3 clips: N, N, P), P (2: P, S), S (1: S).
      F1_N = 2*2/(4+0+1) = 0.8; F1_P = 2*1/(2+1+1) = 0.5; F1_S = 2*1/(2+1+0) = 2/3
      UF1 = (0.8 + 0.5 + 2/3) / 3 = 0.65556; UAR = (2/3 + 1/2 + 1) / 3 = 0.72222
    smic-hs (clips 0-2: N->N, N->N, P->P): every class right where present; S absent and never
      predicted, so it is left out: UF1 = UAR = 1.
    samm (clips 3-5: N->P, P->S, S->S): F1_N = 0, F1_P = 0 (2TP+FP+FN = 0+1+1), F1_S = 2/3;
      UF1 = 2/9; UAR = (0 + 0 + 1) / 3 = 1/3."""
    from psn.report.megc import megc_scores, write_megc
    labels = [0, 0, 1, 0, 1, 2]
    preds = [0, 0, 1, 1, 2, 2]
    dbs = ["smic-hs"] * 3 + ["samm"] * 3
    s = megc_scores(labels, preds, dbs)
    assert s["composite"]["uf1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert s["composite"]["uar"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert (s["smic-hs"]["uf1"], s["smic-hs"]["uar"]) == (1.0, 1.0)
    assert s["samm"]["uf1"] == pytest.approx(2 / 9) and s["samm"]["uar"] == pytest.approx(1 / 3)
    ours = write_megc(labels, preds, dbs, str(tmp_path))
    md = (tmp_path / "megc2019.md").read_text()
    assert "| STSTNet | 0.7353 | 0.7605 | 0.6801 | 0.7013 | 0.8382 | 0.8686 | 0.6588 | 0.6810 |" in md
    assert "| Dual-Inception | 0.7322 | 0.7278 | n/a |" in md
    assert ("| PSN | 0.6556 | 0.7222 | 1.0000 | 1.0000 | n/a | n/a | 0.2222 | 0.3333 | the "
            "schedule's last iteration (leak-free) | 6 | this run |") in md
    # How each number was chosen, and STSTNet's UAR as its own per-clip log gives it.
    assert ("| HTNet | 0.8603 | 0.8475 | n/a | n/a | n/a | n/a | n/a | n/a | per test subject, "
            "the epoch best on its test clips (optimistic) | 442 |") in md
    assert "| STSTNet (recomputed) | 0.7353 | 0.7186 | 0.6801 | 0.6703 | 0.8382 | 0.8190 | 0.6588 | 0.6415 |" in md
    assert "| CapsuleNet | 0.6520 | 0.6506 | n/a | n/a | n/a | n/a | n/a | n/a | not stated | 435 |" in md
    with open(tmp_path / "megc2019.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert rows["CausalNet"]["selected by"] == "test_best_epoch" and rows["PSN"]["selected by"] == "final"
    assert (tmp_path / "megc2019.png").stat().st_size > 1000
    assert ours["composite"]["n"] == 6
    # Runs trained here on the same folds (the flow baselines) follow ours, named apart from the
    # published rows of the same methods, with the same selection.
    write_megc(labels, preds, dbs, str(tmp_path / "more"), "psn", more=[("ststnet", ours)])
    md = (tmp_path / "more" / "megc2019.md").read_text()
    assert ("| STSTNet (trained here) | 0.6556 | 0.7222 | 1.0000 | 1.0000 | n/a | n/a | 0.2222 | "
            "0.3333 | the schedule's last iteration (leak-free) | 6 | trained here, same folds |") in md
    assert md.index("| PSN |") < md.index("| STSTNet (trained here) |")
    assert "| this run |" not in md


def test_megc_baselines_file_names_a_source_for_every_number():
    from psn.report.megc import PARTS, load_baselines
    b = load_baselines()
    names = [m["name"] for m in b["methods"]]
    assert names == ["LBP-TOP", "Bi-WOOF", "OFF-ApexNet", "STSTNet", "Dual-Inception",
                     "CapsuleNet", "RCN", "FeatRef", "EMR", "HTNet", "CausalNet"]
    for m in b["methods"]:
        assert m["source"] and m["selection"] in b["selections"] and m["n_clips"] in (435, 442)
        assert set(m) - {"name", "source", "selection", "n_clips", "note", "recomputed"} <= set(PARTS)
        for part in set(m) & set(PARTS):
            assert 0 < m[part]["uf1"] < 1 and 0 < m[part]["uar"] < 1
    by = {m["name"]: m for m in b["methods"]}
    assert [n for n in names if by[n]["selection"] == "test_best_epoch"] == ["HTNet", "CausalNet"]
    # STSTNet's per-clip log: UF1 as published, UAR lower (the published one is mean precision).
    again = by["STSTNet"]["recomputed"]
    for part in PARTS:
        assert again[part]["uf1"] == by["STSTNet"][part]["uf1"]
        assert again[part]["uar"] < by["STSTNet"][part]["uar"]
    assert by["CapsuleNet"]["n_clips"] == 435 and "s18_sur_03" in by["CapsuleNet"]["note"]


def test_scores_take_the_class_count():
    from psn import metrics
    with pytest.raises(ValueError, match="integer classes 0..2"):
        metrics.scores([0, 3], [0, 1], n_classes=3)
    assert metrics.scores([0, 1, 2], [0, 1, 2], n_classes=3).confusion.shape == (3, 3)


# ---------------------------------------------------------------- MEGC end to end
@pytest.mark.caffe
def test_megc2019_preprocess_train_predict_report(caffe_env, megc_roots, tmp_path):
    """The fake SMIC-HS, CASME II and SAMM trees under --protocol megc2019: 3-class labels,
    leave one subject out, nets generated with 3 outputs, 3 probabilities per clip, MEGC's
    table with the baselines."""
    prep = str(tmp_path / "prep")
    args = [sys.executable, os.path.join(REPO, "tools", "preprocess.py"), "run", "--protocol",
            "megc2019", "--out", prep, "--face-box", "0,0,48,48", "--rpca-tol", "0.03",
            "--lam", "standard", "--augment", "none", "--workers", "1", "--no-progress"]
    args += [a for k, v in megc_roots.items() for a in ("--" + k, v)]
    res = subprocess.run(args, capture_output=True, text=True, timeout=600, env=caffe_env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "included per class: negative 8, positive 3, surprise 2" in res.stdout
    proto = json.loads((tmp_path / "prep" / "protocol.json").read_text())
    assert proto["classes"] == ["negative", "positive", "surprise"] and proto["folds"] == "loso"
    folds = json.loads((tmp_path / "prep" / "folds.json").read_text())
    subjects = {r["subject"] for r in csv_rows(tmp_path / "prep" / "manifest.csv")
                if r["included"] == "1"}
    assert folds["n_folds"] == len(subjects) == 10

    run = str(tmp_path / "run")
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "run_folds.py"), "--data",
                          prep, "--out", run, "--model", "psn", "--schedule", "smoke", "--width",
                          "0.125", "--jobs", "2"], capture_output=True, text=True, timeout=900,
                         env=caffe_env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert 'num_output: 3' in (tmp_path / "run" / "fold01" / "deploy.prototxt").read_text()
    header = (tmp_path / "run" / "predictions.csv").read_text().splitlines()[0]
    assert header == "database,subject,clip,fold,label,pred,prob_0,prob_1,prob_2"

    rep = str(tmp_path / "report")
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "report.py"),
                          os.path.join(run, "predictions.csv"), "--protocol", "megc2019",
                          "--out", rep], capture_output=True, text=True, timeout=300, env=caffe_env)
    assert res.returncode == 0, res.stderr
    md = (tmp_path / "report" / "megc2019.md").read_text()
    assert "| STSTNet |" in md and "| run |" in md
    assert "Clips: composite 13, SMIC-HS 3, CASME II 4, SAMM 6" in md


def csv_rows(path):
    import csv
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- CAS(ME)^3
@pytest.fixture(scope="module")
def casme3(tmp_path_factory):
    return fd.make_casme3(tmp_path_factory.mktemp("casme3"))


def test_casme3_part_a_reads_the_v2_sheet_and_frames(casme3):
    clips, skipped = load_database("casme3", casme3)
    got = {(c.subject, c.clip): (c.onset, c.offset, c.emotion) for c in clips}
    assert got == fd.CASME3_EXPECTED
    assert all(f.endswith(".jpg") and "/color/" in f for c in clips for f in c.frames)
    j = next(c for c in clips if c.clip == "j_40")
    assert os.path.basename(os.path.dirname(os.path.dirname(j.frames[0]))) == "j"
    d = next(c for c in clips if c.clip == "d_10")
    assert d.apex == 20 and any("apex 30 outside onset..offset 10..20" in n for n in d.notes)
    why = {s.clip: s.reason for s in skipped}
    assert why == {"b_12 3": "unreadable onset '12 3' in sheet", "e_60": "offset 0 (unknown) in sheet"}


def test_casme3_protocol_maps_emotions_to_the_papers_classes(casme3):
    p = protocols.load_protocol("casme3")
    rows, skipped = table4_with_skips({"casme3": casme3}, protocol=p)
    # disgust -> negative, happy -> positive, surprise, others and Others -> others
    assert format_csv(rows, p).splitlines()[1:] == ["casme3,1,1,1,2,5,4", "total,1,1,1,2,5,4"]
    with pytest.raises(InputError, match="protocol paper uses casme, casme2, casme2sq, samm; --casme3"):
        table4({"casme3": casme3})


@pytest.fixture(scope="module")
def casme3_ac(tmp_path_factory):
    return fd.make_casme3_part_c(fd.make_casme3(tmp_path_factory.mktemp("casme3ac")))


def test_casme3_part_c_counts_images_in_folder_order(casme3_ac):
    clips, skipped = load_database("casme3", casme3_ac)
    part_a = {(c.subject, c.clip): (c.onset, c.offset, c.emotion) for c in clips
              if c.database == "casme3"}
    assert part_a == fd.CASME3_EXPECTED
    got = {(c.subject, c.clip): (c.onset, c.offset, [os.path.basename(f) for f in c.frames])
           for c in clips if c.database == "casme3-c"}
    assert got == {k: v for k, v in fd.CASME3_C_EXPECTED.items() if v}
    one = next(c for c in clips if c.clip == "1_1")
    assert one.au_set == {4, 11} and one.apex is None
    assert any("full-width" in n for n in one.notes)
    why = {s.clip: s.reason for s in skipped if s.database == "casme3-c"}
    assert set(why) == {"1_2", "2_2", "3_1", "4_1"}
    assert "frames 20..26 outside the 15 images of" in why["1_2"] and "from 1" in why["1_2"]
    assert "several video folders with color/" in why["3_1"] and "['a', 'b']" in why["3_1"]
    assert why["4_1"].startswith("no folder 4 (or 04) in ")


def test_casme3_part_c_alone_or_without_its_frames(tmp_path):
    alone = fd.make_casme3_part_c(str(tmp_path / "alone"))
    clips, _ = load_database("casme3", alone)
    assert {c.clip for c in clips} == {"1_1", "2_1"}
    sheet_only = str(tmp_path / "sheet_only")
    fd.make_casme3_part_c(sheet_only)
    shutil.rmtree(os.path.join(sheet_only, "part_C"))
    clips, skipped = load_database("casme3", sheet_only)
    assert clips == [] and len(skipped) == len(fd.CASME3_C_ROWS)
    assert all(s.reason.startswith(f"no part C frames under {sheet_only}") for s in skipped)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(InputError, match="no CAS\\(ME\\)\\^3 coding sheet .*part C"):
        load_database("casme3", str(tmp_path / "empty"))


def test_casme3_ac_protocol_counts_part_c_by_its_own_words(casme3_ac):
    p = protocols.load_protocol("casme3_ac")
    rows, _ = table4_with_skips({"casme3": casme3_ac}, protocol=p)
    # part C: negative 1_1, 2_2; positive 1_2; surprise 2_1; others 3_1, 4_1 (the sheet alone)
    assert format_csv(rows, p).splitlines()[1:] == [
        "casme3,1,1,1,2,5,4", "casme3-c,1,2,1,2,6,4", "total,2,3,2,4,11,8"]
    # casme3 stays part A's benchmark: part C's rows are recorded as not part of it
    a = protocols.load_protocol("casme3")
    rows, skipped = table4_with_skips({"casme3": casme3_ac}, protocol=a)
    assert format_csv(rows, a).splitlines()[1:] == ["casme3,1,1,1,2,5,4", "total,1,1,1,2,5,4"]
    assert sum(s.reason == "not part of protocol casme3" for s in skipped) == 6


def test_casme3_part_c_folders_the_count_cannot_trust(tmp_path):
    """An image without a number, or two for one number, would shift every later frame: the
    folder's clips are skipped naming the files. Subject folders may be called sub01."""
    root = fd.make_casme3_part_c(str(tmp_path / "c"), rows=[(1, 1, 2, 4, "4", "negative"),
                                                            ("sub02", 1, 2, 4, "12", "positive")])
    base = os.path.join(root, "part_C")
    shutil.copy(os.path.join(base, "01", "a", "color", "90.jpg"),
                os.path.join(base, "01", "a", "color", "Thumbs.jpg"))
    os.rename(os.path.join(base, "2"), os.path.join(base, "sub_02"))
    shutil.copy(os.path.join(base, "sub_02", "color", "92.jpg"),
                os.path.join(base, "sub_02", "color", "092.png"))
    clips, skipped = load_database("casme3", root)
    assert clips == []
    why = {s.clip: s.reason for s in skipped}
    assert why["1_1"].startswith("images without a frame number in ") and "Thumbs.jpg" in why["1_1"]
    assert why["2_1"].startswith("several images for one frame in ")
    assert "092.png, 92.jpg" in why["2_1"]
    os.remove(os.path.join(base, "01", "a", "color", "Thumbs.jpg"))
    os.remove(os.path.join(base, "sub_02", "color", "092.png"))
    clips, _ = load_database("casme3", root)
    assert {(c.subject, c.clip) for c in clips} == {("casme3/c01", "1_1"), ("casme3/c02", "2_1")}


def test_a_stray_spreadsheet_is_not_taken_for_part_c(tmp_path):
    root = fd.make_casme3(tmp_path)
    sheet = os.path.join(root, fd.CASME3_SHEET)
    shutil.copy(sheet, sheet[:-5] + " - Copy.xlsx")
    clips, _ = load_database("casme3", root)
    assert {(c.subject, c.clip) for c in clips} == set(fd.CASME3_EXPECTED)
