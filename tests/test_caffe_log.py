import csv
import math
import os
import shutil
import subprocess
import sys

import pytest

from psn import caffe_log
from psn.caffe_log import LogError, parse_lines, parse_log, save_csv_files, write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")


def col(rows, key):
    return [r.get(key) for r in rows]


def same(a, b):
    """Lists equal, NaN equal to NaN."""
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b):
        if isinstance(x, float) and math.isnan(x):
            assert isinstance(y, float) and math.isnan(y), (a, b)
        else:
            assert x == pytest.approx(y), (a, b)


def test_old_glog_without_year_across_new_year():
    train, test = parse_log(os.path.join(DATA, "caffe_train_noyear.log"), year=2025)
    assert list(train[0]) == ["NumIters", "Seconds", "LearningRate", "loss"]
    assert list(test[0]) == ["NumIters", "Seconds", "LearningRate", "accuracy", "loss"]
    assert col(train, "NumIters") == [0, 10, 20, 30]
    same(col(train, "loss"), [1.38629, math.nan, 1.05, 0.875])  # 'nan' kept
    assert col(test, "NumIters") == [0, 20, 40]  # the final test after 'Iteration 40, loss'
    same(col(test, "accuracy"), [0.25, 0.4, 0.55])
    same(col(test, "loss"), [1.38629, math.nan, 0.1])  # '-nan' kept, '1.0e-01' read
    # Seconds from the 'Solving PSN' line (23:59:42.52 on Dec 31) to each row's first output
    # line; 00:00:06.52 on Jan 1 is 24 s later only if the year rolled over.
    same(col(test, "Seconds"), [3.08, 24.0, 46.08])
    same(col(train, "Seconds"), [4.0001, 14.0001, 24.1001, 34.1001])
    # The lr printed for the row's own iteration (BVLC would give iteration 30 the previous
    # display's 0.001).
    same(col(train, "LearningRate"), [0.001, 0.001, 0.001, 0.0001])
    same(col(test, "LearningRate"), [0.001, 0.001, 0.0001])


def test_year_of_no_year_log_from_file_mtime(tmp_path):
    # Without --year the file's modification year is the year of the *last* line: a log
    # ending on Jan 1 2026 started in 2025, and the Dec -> Jan step still adds a year.
    log = tmp_path / "caffe.log"
    shutil.copy(os.path.join(DATA, "caffe_train_noyear.log"), log)
    jan_2026 = 1767261600  # 2026-01-01 10:00 UTC
    os.utime(log, (jan_2026, jan_2026))
    _, test = parse_log(str(log))
    same(col(test, "Seconds"), [3.08, 24.0, 46.08])


LEAP_LOG = """\
Log file created at: {year}/02/28 23:58:00
Running on machine: node1
Log line format: [IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg
I0228 23:59:00.000000  1234 solver.cpp:293] Solving PSN
I0228 23:59:00.100000  1234 solver.cpp:351] Iteration 0, Testing net (#0)
I0228 23:59:00.100000  1234 solver.cpp:418]     Test net output #0: accuracy = 0.25
I0301 00:00:00.000000  1234 solver.cpp:351] Iteration 10, Testing net (#0)
I0301 00:00:00.000000  1234 solver.cpp:418]     Test net output #0: accuracy = 0.5
"""


@pytest.mark.parametrize("year,seconds", [(2024, 86400 + 60.0), (2025, 60.0)])
def test_year_from_glog_header_matters_on_leap_years(year, seconds):
    _, test = parse_lines(LEAP_LOG.format(year=year).splitlines(True))
    same(col(test, "Seconds"), [0.1, seconds])


def test_glog_06_with_year_and_two_test_nets():
    train, test = parse_log(os.path.join(DATA, "caffe_train_year.log"))
    assert caffe_log.columns(test) == ["NumIters", "Seconds", "LearningRate", "accuracy",
                                       "loss", "accuracy_net1", "loss_net1"]
    assert col(test, "NumIters") == [0, 50, 100]
    same(col(test, "accuracy"), [0.230769, 0.5, 0.6])
    same(col(test, "accuracy_net1"), [0.261538, 0.6, 0.75])
    same(col(test, "loss_net1"), [1.38621, 1.1, 0.8])
    same(col(test, "Seconds"), [3.02, 69.0, 135.58])
    assert caffe_log.columns(train) == ["NumIters", "Seconds", "LearningRate", "accuracy", "loss"]
    same(col(train, "accuracy"), [0.2, 0.4875])
    same(col(train, "loss"), [1.38629, 1.15])
    same(col(train, "LearningRate"), [0.01, 0.01])


def test_resumed_run_supersedes_rows_from_the_snapshot_on():
    path = os.path.join(DATA, "caffe_train_resumed.log")
    train, test = parse_log(path, year=2026)
    assert col(train, "NumIters") == [0, 10, 20, 30]
    same(col(train, "loss"), [1.4, 1.3, 1.2, 1.1])  # 9.9 of the crashed run is gone
    assert col(test, "NumIters") == [0, 20, 40]
    same(col(test, "accuracy"), [0.2, 0.3, 0.45])
    # wall-clock seconds keep counting from the first 'Solving' line, across the restart
    same(col(test, "Seconds"), [1.08, 3601.08, 3622.18])

    train, test = parse_log(path, year=2026, restarts="keep")
    assert col(train, "NumIters") == [0, 10, 20, 30, 20, 30]
    same(col(train, "loss"), [1.4, 1.3, 1.2, 9.9, 1.2, 1.1])
    assert col(test, "NumIters") == [0, 20, 20, 40]


def test_iteration_going_back_without_solving_line_is_a_restart():
    lines = [
        "I0101 10:00:00.000000 1 solver.cpp:293] Solving PSN\n",
        "I0101 10:00:01.000000 1 solver.cpp:239] Iteration 50 (1 iter/s, 1s/50 iters), loss = 2\n",
        "I0101 10:00:01.000000 1 solver.cpp:258]     Train net output #0: loss = 2 (* 1 = 2 loss)\n",
        "I0101 10:00:02.000000 1 solver.cpp:239] Iteration 100 (1 iter/s, 1s/50 iters), loss = 9\n",
        "I0101 10:00:02.000000 1 solver.cpp:258]     Train net output #0: loss = 9 (* 1 = 9 loss)\n",
        "I0101 11:00:01.000000 2 solver.cpp:239] Iteration 50 (1 iter/s, 1s/50 iters), loss = 3\n",
        "I0101 11:00:01.000000 2 solver.cpp:258]     Train net output #0: loss = 3 (* 1 = 3 loss)\n",
    ]
    train, _ = parse_lines(lines, year=2026)
    assert col(train, "NumIters") == [50]
    same(col(train, "loss"), [3.0])
    same(col(train, "LearningRate"), [math.nan])  # no lr line at all: NaN, not invented


def test_lines_before_the_first_iteration_and_non_glog_lines_are_ignored():
    lines = [
        "Log file created at: 2026/05/01 10:00:00\n",
        "some python layer print: Test net output #0: accuracy = 9\n",
        "I0501 10:00:00.000000 1 net.cpp:131] Top shape: 80 4 (320)\n",
        "I0501 10:00:01.000000 1 solver.cpp:351] Iteration 0, Testing net (#0)\n",
        "stray stdout\n",
        "I0501 10:00:02.500000 1 solver.cpp:418]     Test net output #0: accuracy = inf\n",
    ]
    train, test = parse_lines(lines)
    assert train == []
    assert col(test, "NumIters") == [0]
    assert col(test, "accuracy") == [math.inf]
    same(col(test, "Seconds"), [1.5])  # no 'Solving' line: from the first timestamped line


def test_bad_timestamp_names_file_and_line(tmp_path):
    log = tmp_path / "bad.log"
    log.write_text("I0101 10:00:00.000000 1 solver.cpp:293] Solving PSN\n"
                   "I1332 10:00:00.000000 1 solver.cpp:351] Iteration 0, Testing net (#0)\n")
    with pytest.raises(LogError, match=r"bad\.log:2: bad glog timestamp"):
        parse_log(str(log), year=2026)


def test_write_csv_keeps_nan_and_leaves_missing_cells_empty(tmp_path):
    rows = [{"NumIters": 0, "Seconds": 1.5, "LearningRate": 0.01, "loss": math.nan},
            {"NumIters": 10, "Seconds": 2.5, "LearningRate": 0.01, "loss": 1.0, "acc": 0.5}]
    path = write_csv(str(tmp_path / "x.train"), rows)
    with open(path) as f:
        got = list(csv.reader(f))
    assert got == [["NumIters", "Seconds", "LearningRate", "loss", "acc"],
                   ["0", "1.5", "0.01", "nan", ""],
                   ["10", "2.5", "0.01", "1.0", "0.5"]]
    assert os.listdir(tmp_path) == ["x.train"]  # no temporary file left behind
    path = write_csv(str(tmp_path / "empty.test"), [])
    assert open(path).read() == "NumIters,Seconds,LearningRate\n"


def test_save_csv_files_names_like_bvlc(tmp_path):
    log = os.path.join(DATA, "caffe_train_year.log")
    train, test = parse_log(log)
    paths = save_csv_files(log, str(tmp_path / "out"), train, test)
    assert [os.path.basename(p) for p in paths] == ["caffe_train_year.log.train",
                                                     "caffe_train_year.log.test"]


def test_cli_writes_train_and_test_with_delimiter(tmp_path):
    log = tmp_path / "caffe.INFO"
    shutil.copy(os.path.join(DATA, "caffe_train_noyear.log"), log)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "parse_log.py"), str(log),
                        str(tmp_path), "--delimiter", ";", "--year", "2025"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "caffe.INFO.test") as f:
        rows = list(csv.reader(f, delimiter=";"))
    assert rows[0] == ["NumIters", "Seconds", "LearningRate", "accuracy", "loss"]
    assert rows[2] == ["20", "24.0", "0.001", "0.4", "nan"]
    with open(tmp_path / "caffe.INFO.train") as f:
        rows = list(csv.reader(f, delimiter=";"))
    assert [r[0] for r in rows] == ["NumIters", "0", "10", "20", "30"]


def test_cli_reports_unreadable_log(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "parse_log.py"),
                        str(tmp_path / "nope.log"), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "nope.log" in r.stderr


def test_a_log_cut_in_its_last_line_drops_that_line(tmp_path):
    """A log cut mid-line (a kill, a full disk, or Caffe still writing) gave loss 1.0 for
    `1.52311` cut after `1.`."""
    with open(os.path.join(DATA, "caffe_train_year.log")) as f:
        text = f.read()
    at = text.index("Test net output #1: loss = 0.8 (* 1")
    cut = text[:at] + "Test net output #1: loss = 1."
    path = tmp_path / "cut.log"
    path.write_text(cut)
    _, test = parse_log(str(path))
    assert col(test, "NumIters") == [0, 50, 100]
    assert "loss_net1" not in test[-1] or math.isnan(test[-1]["loss_net1"]), test[-1]
    # The same text with its newline is a whole line, and is read.
    path.write_text(cut + "\n")
    _, test = parse_log(str(path))
    assert test[-1]["loss_net1"] == 1.0


def test_parse_log_reads_the_logs_caffe_wrote(trained):
    from psn.caffe_log import parse_log
    _, out, _ = trained
    train, test = parse_log(os.path.join(out, "fold01", "train.log"))
    assert [r["NumIters"] for r in test] == [2, 4]
    assert {"accuracy", "loss"} <= set(test[0])
    assert all(0 <= r["accuracy"] <= 1 for r in test)
    # display: 1; Caffe prints no train output after the last iteration, only the test.
    assert [r["NumIters"] for r in train] == [0, 1, 2, 3]
    assert "loss" in train[0] and "LearningRate" in train[0]


def test_bvlc_parse_log_reads_the_logs_run_folds_writes(caffe_env, trained, tmp_path):
    """run_folds launches Caffe without glog's year prefix, so BVLC's own
    tools/extra/parse_log.py (Python 3 by tools/caffe_patches/0004) reads its logs, to the
    same numbers as tools/parse_log.py."""
    import re
    from psn.caffe_log import parse_log
    _, out, _ = trained
    log = os.path.join(out, "fold01", "train.log")
    with open(log) as f:
        prefixes = re.findall(r"^([IWEF]\d+) \d\d:\d\d:\d\d", f.read(), re.M)
    assert prefixes and all(len(p) == 5 for p in prefixes), prefixes[:3]   # I1128, not I20261128
    tool = os.path.join(caffe_env["PSN_CAFFE_HOME"], "tools", "extra", "parse_log.py")
    res = subprocess.run([sys.executable, "-B", tool, log, str(tmp_path)], capture_output=True,
                         text=True, cwd=os.path.dirname(tool))
    assert res.returncode == 0, res.stderr[-2000:]
    ours_train, ours_test = parse_log(log)
    for suffix, ours in ((".train", ours_train), (".test", ours_test)):
        with open(os.path.join(str(tmp_path), "train.log" + suffix), newline="") as f:
            theirs = list(csv.DictReader(f))
        assert [int(float(r["NumIters"])) for r in theirs] == [r["NumIters"] for r in ours]
        for a, b in zip(theirs, ours):
            for key in ("loss", "accuracy", "LearningRate"):
                if key in a and key in b:
                    assert float(a[key]) == pytest.approx(b[key], rel=1e-6), (suffix, key)
            assert float(a["Seconds"]) == pytest.approx(b["Seconds"], abs=1e-3)
