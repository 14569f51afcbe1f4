"""preprocessing/sheets.py: a sheet is read as far as it holds data, in bounded memory and time,
whatever used range the file declares (a stray cell far away made table4 run out of memory)."""
import json
import os
import subprocess
import sys

import openpyxl
import pytest

from preprocessing.sheets import read_rows, read_table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = ["Subject", "Filename", "OnsetFrame"]
DATA = [[1, "EP01_01", 10], [2, "EP02_02", 20]]

# Read in a child process under an address-space limit: a reader that allocates by the
# declared dimension fails there with MemoryError (within seconds) instead of taking the
# machine's memory.
CHILD = r"""
import json, resource, sys
limit = 1536 << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from preprocessing.sheets import read_rows, read_table
rows = read_rows(sys.argv[1])
table = read_table(sys.argv[1], {"subject": ("Subject",), "clip": ("Filename",)})
json.dump({"n": len(rows), "head": rows[:3], "table": table}, sys.stdout)
"""


def read_bounded(path):
    res = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                         text=True, timeout=120, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=REPO))
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def xlsx(path, stray):
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in [HEADER] + DATA:
        ws.append(row)
    ws[stray] = "x"
    wb.save(path)
    return path


def test_a_stray_cell_in_the_last_row_and_column_of_an_xlsx(tmp_path):
    got = read_bounded(xlsx(tmp_path / "s.xlsx", "XFD1048576"))
    assert got["head"] == [HEADER] + DATA
    # Only the data rows: the stray cell lies beyond the last column a sheet here can use.
    assert got["n"] == 3
    assert got["table"] == [[2, {"subject": 1, "clip": "EP01_01"}],
                            [3, {"subject": 2, "clip": "EP02_02"}]]


def test_a_stray_cell_far_below_is_read_where_it_is(tmp_path):
    """Nothing is dropped silently: a value in a column the loaders read, 100,000 rows
    down, comes back as that row (the loaders then skip it as an unreadable row)."""
    got = read_bounded(xlsx(tmp_path / "s.xlsx", "B100000"))
    assert got["head"] == [HEADER] + DATA and got["n"] == 100000
    assert got["table"][-1] == [100000, {"subject": None, "clip": "x"}]


def test_a_stray_cell_in_the_last_cell_of_an_xls(tmp_path):
    pytest.importorskip("xlwt")
    from synthetic.formats import xls_bytes
    path = tmp_path / "s.xls"
    rows = [HEADER] + DATA
    data = xls_bytes(rows + [[None]] * (65535 - len(rows)) + [[None] * 255 + ["x"]])
    path.write_bytes(data)
    got = read_bounded(path)
    # Rows are as long as their cells (xlrd padded each to the sheet's 256 columns).
    assert got["head"] == [HEADER] + DATA
    # IV is the last column an .xls has, so the stray value is read, as its own row.
    assert got["n"] == 65536
    assert got["table"][-1] == [65536, {"subject": None, "clip": None}] and len(got["table"]) == 3


def test_rows_keep_their_sheet_row_numbers_across_blank_rows(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    ws["A5"], ws["B5"], ws["C5"] = 1, "EP01_01", 10
    wb.save(tmp_path / "g.xlsx")
    rows = read_rows(str(tmp_path / "g.xlsx"))
    assert rows[4] == [1, "EP01_01", 10] and len(rows) == 5
    assert read_table(str(tmp_path / "g.xlsx"), {"clip": ("Filename",)}) == [(5, {"clip": "EP01_01"})]
