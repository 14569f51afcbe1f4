import os
import shutil
import subprocess
import sys

import pytest

import fake_databases as fd
from preprocessing.cli import main
from preprocessing.table4 import format_csv, table4

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Counts implied by fd.X_EXPECTED (positive, negative, surprise, others, total); CASME's
# sheet also counts EP08_2 (Negative), whose frames end before its onset.
EXPECTED_CSV = (
    "database,positive,negative,surprise,others,total\n"
    "casme,4,5,1,3,13\n"
    "casme2,1,3,1,1,6\n"
    "casme2sq,2,1,1,0,4\n"
    "samm,1,4,1,2,8\n"
    "total,8,13,4,6,31\n"
)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return fd.make_all(tmp_path_factory.mktemp("dbs"))


def counts(expected, sheet_only=()):
    row = [0, 0, 0, 0]
    for value in list(expected.values()) + list(sheet_only):
        row[value[1]] += 1
    return row + [sum(row)]


def test_expected_csv_matches_fakes():
    lines = EXPECTED_CSV.splitlines()[1:5]
    for line, exp, extra in zip(lines, (fd.CASME_EXPECTED, fd.CASME2_EXPECTED, fd.CASME2SQ_EXPECTED,
                                        fd.SAMM_EXPECTED), ([({4, 7}, 1)], (), (), ())):
        assert [int(v) for v in line.split(",")[1:]] == counts(exp, extra)


def test_table4_all(roots):
    rows = table4(roots)
    assert format_csv(rows) == EXPECTED_CSV
    assert rows[-1] == {"database": "total", "positive": 8, "negative": 13, "surprise": 4, "others": 6, "total": 31}


def test_table4_subset_in_fixed_order(roots):
    rows = table4({"samm": roots["samm"], "casme2": roots["casme2"]})
    assert format_csv(rows) == (
        "database,positive,negative,surprise,others,total\n"
        "casme2,1,3,1,1,6\nsamm,1,4,1,2,8\ntotal,2,7,2,3,14\n")


def test_table4_reads_sheets_only(tmp_path):
    root = fd.make_casme2sq(tmp_path)
    shutil.rmtree(os.path.join(root, "rawpic"))
    # macro row and offset-0 row excluded from the sheet alone; frames are not needed
    assert table4({"casme2sq": root})[0] == {"database": "casme2sq", "positive": 2, "negative": 1,
                                              "surprise": 1, "others": 0, "total": 4}
    assert table4({"casme2sq": root}, options={"casme2sq": {"offset_zero": "apex"}})[0]["positive"] == 3


def test_table4_accepts_the_loaders_options(roots):
    rows = table4({"casme2": roots["casme2"]}, options={"casme2": {"tree": "selected"}})
    assert rows[0]["total"] == 6


def test_table4_unknown_database(roots):
    with pytest.raises(ValueError, match="smic"):
        table4({"smic": roots["samm"]})


def test_main_in_process(roots, capsys):
    assert main(["table4", "--casme2", roots["casme2"]]) == 0
    out, err = capsys.readouterr()
    assert out == "database,positive,negative,surprise,others,total\ncasme2,1,3,1,1,6\ntotal,1,3,1,1,6\n"


def test_main_custom_rules(roots, tmp_path, capsys):
    rules = tmp_path / "rules.csv"
    rules.write_text("aus,class\n4+7,2\n")
    assert main(["table4", "--casme2", roots["casme2"], "--rules", str(rules)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "casme2,0,0,1,5,6"


def test_main_alternatives_flag(tmp_path, capsys):
    """--alternatives reaches the rules: SAMM's four cells the first parser misread, counted
    from the sheet under each reading (agree: the two Negative and one Positive of the first
    alternative become Others; A/L12 is Positive under both)."""
    rows = [row for row, _, _ in fd.SAMM_ALTERNATIVE_ROWS]
    root = fd.make_samm(tmp_path, rows=fd.SAMM_ROWS + rows)
    lines = {}
    for choice in ("agree", "first"):
        assert main(["table4", "--samm", root, "--alternatives", choice]) == 0
        lines[choice] = capsys.readouterr().out.splitlines()[1]
    assert lines["agree"] == "samm,2,4,1,5,12"
    assert lines["first"] == "samm,3,6,1,2,12"
    assert main(["table4", "--samm", root]) == 0
    assert capsys.readouterr().out.splitlines()[1] == lines["agree"]


def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "preprocess.py"), *args],
                          capture_output=True, text=True, cwd="/", timeout=120)


def test_cli_script(roots):
    p = run_cli("table4", "--casme", roots["casme"], "--casme2", roots["casme2"],
                "--casme2sq", roots["casme2sq"], "--samm", roots["samm"])
    assert p.returncode == 0, p.stderr
    assert p.stdout == EXPECTED_CSV
    # sheet-decided exclusions are reported on stderr with file:row
    assert "offset 0 (unknown) in sheet" in p.stderr and "code_final.xlsx:6" in p.stderr


def test_cli_errors(tmp_path):
    p = run_cli("table4", "--samm", str(tmp_path / "missing"))
    assert p.returncode == 2 and str(tmp_path / "missing") in p.stderr and "does not exist" in p.stderr
    assert p.stdout == ""
    p = run_cli("table4")
    assert p.returncode == 2 and "--casme" in p.stderr
