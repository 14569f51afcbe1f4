"""Caffe training logs -> the `.train` / `.test` tables of BVLC's tools/extra/parse_log.py.

Columns, as BVLC writes them: NumIters, Seconds, LearningRate, then one column per net
output name in order of first appearance (e.g. ``accuracy``, ``loss``). Differences from
BVLC, each deliberate:

* glog lines with the year (glog >= 0.6: ``I20261125 07:40:01.123456 ...``) and without
  (``I1125 07:40:01.123456 ...``) are both read; without a year, a month that goes
  backwards (Dec -> Jan) is a new year.
* ``nan`` / ``-nan`` / ``inf`` values are kept (BVLC's number pattern silently drops them,
  and then loses the whole row).
* Test net #k > 0 (several ``test_iter`` / ``test_net`` entries) gets its own columns,
  ``<name>_net<k>``; BVLC writes all test nets into the same cells, the last one winning.
  Net #0 keeps BVLC's plain names.
* LearningRate is the rate Caffe printed for the row's own iteration (``Iteration N, lr = x``
  is logged after the outputs of iteration N, so BVLC gives each row the previous display's
  rate); an iteration without its own lr line takes the latest rate before it, and rows
  before the first lr line take the first one.
* The last row of a log is kept (BVLC drops it when it is the only row of its kind).
* A resumed run (a second ``Solving`` line, or an iteration number going back) supersedes
  the rows of the earlier run from the resumed iteration on, so each iteration appears once
  and the curves stay monotone in NumIters. ``restarts="keep"`` keeps every row in log
  order instead.
* NumIters is written as an integer (BVLC writes ``100.0``).

Seconds are measured, as in BVLC, from the first ``Solving <net>`` line (from the first
timestamped line when a log has none) and keep counting wall-clock time across restarts.
"""
import argparse
import bisect
import csv
import datetime
import io
import math
import os
import re
import sys

from preprocessing.atomic import write_atomic

__all__ = ["LogError", "parse_log", "parse_lines", "columns", "write_csv", "save_csv_files",
           "is_training_log", "main"]

# [IWEF] then mmdd or yyyymmdd, then hh:mm:ss.uuuuuu (the glog prefix).
_GLOG = re.compile(r"^([IWEF])(\d{8}|\d{4}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\s")
_CREATED = re.compile(r"^Log file created at: (\d{4})/(\d{2})/(\d{2})")
_NUM = r"([-+]?(?:nan|inf(?:inity)?|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))"
_ITERATION = re.compile(r"Iteration (\d+)")
_TRAIN_OUT = re.compile(r"Train net output #(\d+): (\S+) = " + _NUM, re.IGNORECASE)
_TEST_OUT = re.compile(r"Test net output #(\d+): (\S+) = " + _NUM, re.IGNORECASE)
_TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_LR = re.compile(r"Iteration (\d+), lr = " + _NUM, re.IGNORECASE)
_SOLVING = re.compile(r"\] Solving ")

BASE_COLUMNS = ("NumIters", "Seconds", "LearningRate")


class LogError(ValueError):
    """A log that cannot be parsed; the message names the file and line."""


def is_training_log(text):
    """Whether text (a file's first part) holds glog lines of `caffe train`: the glog prefix,
    then 'Solving ...' or 'Iteration N'."""
    return any(_GLOG.match(line) and (_SOLVING.search(line) or _ITERATION.search(line))
               for line in text.splitlines())


def _to_float(text):
    # float() reads 'nan', '-nan', 'inf', '-inf' the way glibc's printf writes them.
    return float(text)


class _Clock:
    """Turns glog timestamps into datetimes, inferring the year where glog omits it."""

    def __init__(self, year):
        self.year = year
        self.last_month = None

    def __call__(self, match):
        date = match.group(2)
        if len(date) == 8:
            year, month, day = int(date[:4]), int(date[4:6]), int(date[6:])
            self.year = year
        else:
            month, day = int(date[:2]), int(date[2:])
            if self.last_month is not None and month < self.last_month:
                self.year += 1  # Dec 31 -> Jan 1 in a log without years
            year = self.year
        self.last_month = month
        frac = match.group(6) or "0"
        micro = int(frac.ljust(6, "0"))
        return datetime.datetime(year, month, day, int(match.group(3)), int(match.group(4)),
                                 int(match.group(5)), micro)


def _first_year(lines, path, year):
    """Year of the log's first timestamp for logs without years.

    An explicit ``year`` wins; then glog's own header (``Log file created at: 2026/11/25``);
    then the file's modification year taken as the year of the *last* line, minus the number
    of Dec->Jan turns in the log (so a log written over New Year still lines up).
    """
    if year is not None:
        return year
    for line in lines[:10]:
        m = _CREATED.match(line)
        if m:
            return int(m.group(1))
    end_year = datetime.datetime.now().year
    if path is not None:
        end_year = datetime.datetime.fromtimestamp(os.path.getmtime(path)).year
    turns, last = 0, None
    for line in lines:
        m = _GLOG.match(line)
        if not m or len(m.group(2)) != 4:
            continue
        month = int(m.group(2)[:2])
        if last is not None and month < last:
            turns += 1
        last = month
    return end_year - turns


class _Run:
    """Rows of one uninterrupted `caffe train` run inside a log."""

    def __init__(self):
        self.train = []          # rows, in order
        self.test = []
        self.lr = {}             # iteration -> learning rate printed for it
        self.first_iter = None


def parse_lines(lines, path=None, year=None, restarts="supersede"):
    """Parse the lines of a Caffe log; see parse_log."""
    if restarts not in ("supersede", "keep"):
        raise ValueError("restarts must be 'supersede' or 'keep', not %r" % (restarts,))
    name = path if path is not None else "<log>"
    lines = [ln.rstrip("\r\n") for ln in lines]
    clock = _Clock(_first_year(lines, path, year))

    start = None
    runs = [_Run()]
    iteration = None
    test_net = 0
    train_row = test_row = None

    def flush():
        nonlocal train_row, test_row
        if train_row is not None:
            runs[-1].train.append(train_row)
        if test_row is not None:
            runs[-1].test.append(test_row)
        train_row = test_row = None

    def new_run():
        nonlocal iteration, test_net
        flush()
        if runs[-1].first_iter is not None:
            runs.append(_Run())
        iteration = None
        test_net = 0

    for lineno, line in enumerate(lines, 1):
        m = _GLOG.match(line)
        if not m:
            continue  # glog header, stray stdout of a Python layer, a blank line
        try:
            when = clock(m)
        except ValueError as exc:
            raise LogError("%s:%d: bad glog timestamp (%s): %r" % (name, lineno, exc, line))
        if _SOLVING.search(line):
            new_run()
            if start is None:
                start = when
            continue

        it = _ITERATION.search(line)
        if it:
            n = int(it.group(1))
            if iteration is not None and n < iteration:
                new_run()  # a resumed run in the same log without its own 'Solving' line
            if iteration != n:
                flush()
            iteration = n
            if runs[-1].first_iter is None:
                runs[-1].first_iter = n
        if iteration is None:
            continue  # net set-up before the first iteration
        if start is None:
            start = when
        seconds = (when - start).total_seconds()

        t = _TESTING.search(line)
        if t:
            test_net = int(t.group(2))
            if test_net == 0 and test_row is not None:
                # A second test pass at the same iteration (rare: a snapshot-and-test on
                # exit): its own row. Nets #1.. share net #0's row, in their own columns.
                runs[-1].test.append(test_row)
                test_row = None
            continue
        lr = _LR.search(line)
        if lr:
            runs[-1].lr[int(lr.group(1))] = _to_float(lr.group(2))
            continue
        out = _TRAIN_OUT.search(line)
        if out:
            if train_row is None:
                train_row = {"NumIters": iteration, "Seconds": seconds}
            train_row[out.group(2)] = _to_float(out.group(3))
            continue
        out = _TEST_OUT.search(line)
        if out:
            if test_row is None:
                test_row = {"NumIters": iteration, "Seconds": seconds}
            col = out.group(2) if test_net == 0 else "%s_net%d" % (out.group(2), test_net)
            test_row[col] = _to_float(out.group(3))
    flush()

    train, test = [], []
    for run in runs:
        for rows in (run.train, run.test):
            _fill_learning_rate(rows, run.lr)
        if restarts == "supersede" and run.first_iter is not None:
            train = [r for r in train if r["NumIters"] < run.first_iter]
            test = [r for r in test if r["NumIters"] < run.first_iter]
        train.extend(run.train)
        test.extend(run.test)
    return [_ordered(r) for r in train], [_ordered(r) for r in test]


def _fill_learning_rate(rows, lr_by_iter):
    iters = sorted(lr_by_iter)
    for row in rows:
        if not iters:
            row["LearningRate"] = math.nan
            continue
        # the rate printed for this iteration, else the latest before it, else the first
        k = bisect.bisect_right(iters, row["NumIters"]) - 1
        row["LearningRate"] = lr_by_iter[iters[max(k, 0)]]


def _ordered(row):
    out = {k: row[k] for k in BASE_COLUMNS}
    out.update((k, v) for k, v in row.items() if k not in out)
    return out


def parse_log(path, year=None, restarts="supersede"):
    """Parse a Caffe log file into (train_rows, test_rows).

    Each row is a dict: NumIters (int), Seconds (float), LearningRate (float), then one float
    per net output (nan kept). ``year``: the year of the first line, for logs whose glog lines
    carry none (default: glog's header, else the file's modification year). ``restarts``:
    "supersede" (default) or "keep"; see the module docstring.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError as exc:
        raise LogError("cannot read Caffe log %s: %s" % (path, exc))
    if lines and not lines[-1].endswith("\n"):
        # glog ends every line with a newline: a last line without one is being written, or
        # was cut by a kill or a full disk ("loss = 1." of "loss = 1.52311").
        lines.pop()
    return parse_lines(lines, path=path, year=year, restarts=restarts)


def columns(rows):
    """Column names of a table: BVLC's three, then outputs in order of first appearance."""
    cols = list(BASE_COLUMNS)
    for row in rows:
        for k in row:
            if k not in cols:
                cols.append(k)
    return cols


def _cell(value):
    # str() of a float is its shortest round-trip form; nan stays 'nan'.
    return "" if value is None else str(value)


def write_csv(path, rows, delimiter=","):
    """Write rows (as parse_log returns them) atomically; a cell an output lacks stays empty.

    An empty table is written as its header only, so a missing file always means "not run".
    """
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    cols = columns(rows)
    writer.writerow(cols)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in cols])
    return write_atomic(path, buf.getvalue())


def save_csv_files(log_path, out_dir, train_rows, test_rows, delimiter=",", basename=None):
    """Write OUT_DIR/<log basename>.train and .test, as BVLC names them; returns both paths."""
    os.makedirs(out_dir, exist_ok=True)
    base = basename or os.path.basename(log_path)
    train_path = write_csv(os.path.join(out_dir, base + ".train"), train_rows, delimiter)
    test_path = write_csv(os.path.join(out_dir, base + ".test"), test_rows, delimiter)
    return train_path, test_path


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Parse a Caffe training log into LOGFILE.train and LOGFILE.test CSV files "
                    "(the columns of BVLC's tools/extra/parse_log.py).")
    parser.add_argument("logfile_path", help="Caffe log (glog format, with or without years)")
    parser.add_argument("output_dir", help="directory for the .train and .test files")
    parser.add_argument("--delimiter", default=",", help="column delimiter (default: ',')")
    parser.add_argument("--year", type=int, default=None,
                        help="year of the log's first line when its glog lines carry no year "
                             "(default: glog's header, else the file's modification year)")
    parser.add_argument("--keep-restarts", action="store_true",
                        help="keep the rows of a run that was later resumed from a snapshot "
                             "(default: the resumed run replaces them from its first iteration)")
    parser.add_argument("--verbose", action="store_true", help="print the files written")
    args = parser.parse_args(argv)
    if len(args.delimiter) != 1:
        parser.error("--delimiter must be one character, not %r" % args.delimiter)
    from preprocessing.errors import fail
    try:
        train, test = parse_log(args.logfile_path, year=args.year,
                                restarts="keep" if args.keep_restarts else "supersede")
    except (LogError, OSError) as exc:
        return fail("error: ", exc)
    if not train and not test:
        print("warning: %s has no 'Train net output' or 'Test net output' lines; "
              "is it a `caffe train` log?" % args.logfile_path, file=sys.stderr)
    try:
        paths = save_csv_files(args.logfile_path, args.output_dir, train, test, args.delimiter)
    except OSError as exc:   # a read-only output_dir, a full disk: one line naming the file
        return fail("error: ", exc)
    if args.verbose:
        for p in paths:
            print("Wrote %s" % p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
