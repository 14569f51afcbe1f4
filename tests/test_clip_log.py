"""psn.clip_log: per-clip logs in the field's plain format, and tools/score.py on them."""
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from psn.clip_log import LogError, read_clip_log, score_log, write_clip_log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEGC = ["negative", "positive", "surprise"]

# Six clips worked out by hand (tests/test_protocols.py's MEGC scoring test): composite UF1
# (0.8 + 0.5 + 2/3) / 3, UAR (2/3 + 1/2 + 1) / 3; SMIC-HS all right (1, 1); SAMM UF1 2/9,
# UAR 1/3.
KNOWN = """# clip database subject truth prediction
s01_ne_01 smic-hs s01 negative negative
s01_ne_02 smic-hs s01 negative negative
s02_po_01 smic-hs s02 positive positive
006_1_1 samm 006 negative positive
006_1_2 samm 006 positive surprise
007_1_1 samm 007 surprise surprise
"""


def _log(tmp_path, text, name="log.txt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_scores_of_a_log_with_a_known_answer(tmp_path):
    parts = score_log(_log(tmp_path, KNOWN), MEGC)
    assert parts["composite"].uf1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert parts["composite"].uar == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert (parts["smic-hs"].uf1, parts["smic-hs"].uar) == (1.0, 1.0)
    assert parts["samm"].uf1 == pytest.approx(2 / 9) and parts["samm"].uar == pytest.approx(1 / 3)


def test_another_projects_style_reads_the_same(tmp_path):
    """Comma-separated with a header, class indices instead of names, upper case."""
    rows = [line.split() for line in KNOWN.splitlines()[1:]]
    text = "clip,database,subject,truth,prediction\n" + "".join(
        "%s,%s,%s,%d,%s\n" % (c, d, s, MEGC.index(t), p.upper()) for c, d, s, t, p in rows)
    a = score_log(_log(tmp_path, KNOWN, "a.txt"), MEGC)
    b = score_log(_log(tmp_path, text, "b.csv"), MEGC)
    assert {k: (v.uf1, v.uar, v.n) for k, v in a.items()} == {k: (v.uf1, v.uar, v.n) for k, v in b.items()}


@pytest.mark.parametrize("line,message", [
    ("008_1_1 samm 008 happy surprise", r"log.txt:8: truth 'happy' is not one of the classes"),
    ("008_1_1 samm 008 surprise 3", r"log.txt:8: prediction '3' is not one of the classes"),
    ("006_1_1 samm 006 negative negative", r"log.txt:8: clip samm/006/006_1_1 already on line 5"),
    ("008_1_1 samm surprise surprise", r"log.txt:8: 4 fields, expected 5"),
])
def test_a_bad_line_is_named_with_file_and_line(tmp_path, line, message):
    path = _log(tmp_path, KNOWN + line + "\n")
    with pytest.raises(LogError, match=message):
        read_clip_log(path, MEGC)


def test_score_tool_prints_the_scores_and_refuses_bad_logs_in_one_line(tmp_path):
    tool = os.path.join(ROOT, "tools", "score.py")
    res = subprocess.run([sys.executable, tool, _log(tmp_path, KNOWN)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "composite         6   0.6556   0.7222" in res.stdout
    assert "samm              3   0.2222   0.3333" in res.stdout
    bad = _log(tmp_path, KNOWN + "x samm 9 anger negative\n", "bad.txt")
    res = subprocess.run([sys.executable, tool, bad], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "score: error: %s:8: truth 'anger' is not one of the classes negative, positive, surprise "
        "(or 0..2): give the protocol the log was made under (--protocol)" % bad]


def test_run_folds_writes_the_runs_log_that_scores_as_its_predictions(tmp_path):
    """RUN/per_clip.txt from RUN/predictions.csv, classes named by the data's protocol.json."""
    import json
    from preprocessing.layout import DataFolder, RunFolder
    from psn import metrics
    from psn.clip_log import log_predictions
    from psn.predictions import read_predictions, write_predictions
    data, out = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    out.mkdir()
    (data / "protocol.json").write_text(json.dumps({"name": "megc2019", "classes": MEGC, "folds": "loso"}))
    rows = [line.split() for line in KNOWN.splitlines()[1:]]
    preds = []
    for i, (c, d, s, t, p) in enumerate(rows):
        probs = [0.1, 0.1, 0.1]
        probs[MEGC.index(p)] = 0.8
        preds.append([d, s, c, str(i % 2 + 1), MEGC.index(t), MEGC.index(p)] + probs)
    write_predictions(RunFolder(str(out)).predictions, preds, 3)
    said = []
    path = log_predictions(RunFolder(str(out)).predictions, RunFolder(str(out)).clip_log(),
                           DataFolder(str(data)).classes(), said.append)
    assert path == str(out / "per_clip.txt") and "tools/score.py" in said[-1]
    assert DataFolder(str(data)).classes() == MEGC
    p = read_predictions(RunFolder(str(out)).predictions, 3)
    want = metrics.by_database(p.label, p.pred, p.database, 3)
    got = score_log(path, MEGC)
    assert {k: (v.uf1, v.uar) for k, v in got.items()} == {k: (v.uf1, v.uar) for k, v in want.items()}
    with open(path) as f:
        assert f.readlines()[4] == "006_1_1 samm 006 negative positive\n"


def test_a_field_with_a_space_cannot_be_written(tmp_path):
    p = SimpleNamespace(clip=["a b"], database=["samm"], subject=["006"], label=[0], pred=[0])
    with pytest.raises(LogError, match="a field with a space or comma"):
        write_clip_log(p, str(tmp_path / "x.txt"), MEGC)
    assert not (tmp_path / "x.txt").exists()
