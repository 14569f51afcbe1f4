"""A grid benchmark's runs kept in the repository, so that a grid run in parts adds up.

benchmarks/temporal_grid.py and benchmarks/flow_grid.py train cell by cell into a work folder
(WORK/<cell>/results.json) and table whatever it holds. A grid takes tens of core-hours, so it
is run in parts, and often each part on a fresh machine whose work folder is empty: results
kept only there were lost with the machine (the temporal grid's first 200 runs were). The
ledger, a JSON file under docs/ beside the grid's table, holds every run a grid has trained:

    seed(path, workdir, cell_dir, keep)   the ledger's runs that `keep` accepts (same settings)
                                          put into WORKDIR/<cell_dir(run)>/results.json where
                                          missing, so the grid trains only what neither holds
    update(path, runs, cell_dir)          merge runs into the ledger (written atomically, one
                                          process at a time)
    gather(path, workdir, cell_dir, keep) every run in WORKDIR/*/results.json that `keep`
                                          accepts, merged into the ledger and returned
    train_cells(job, jobs, workers, ...)  job(j) for every cell in spawned processes, each
                                          cell's runs into the ledger as it ends

A run is a dict as the grid stores it (model, key, seed, cell fields, accuracy, ...); two runs
are the same run when their cell folder, model and key agree, and the newer one is kept.

Both grids also take the same options for their axes and their results (add_arguments,
axis_values).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import multiprocessing as mp
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from preprocessing.atomic import write_atomic
from preprocessing.folder_lock import FolderBusy, folder_lock

CELL_RUNS = "results.json"    # a cell folder's runs, as psn.probe_tasks.train_missing keeps them


def cell_runs(folder):
    """The runs kept in a cell folder ([] where none is kept yet)."""
    done = os.path.join(folder, CELL_RUNS)
    if not os.path.isfile(done):
        return []
    with open(done) as f:
        return json.load(f)


def load(path):
    """The ledger's runs ([] where there is none yet)."""
    if not os.path.isfile(path):
        return []
    try:
        with open(path) as f:
            runs = json.load(f)
    except ValueError as e:
        raise ValueError("%s is not a grid ledger (%s): restore it from git (git checkout -- %s)"
                         % (path, e, path)) from None
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise ValueError("%s is not a grid ledger (a JSON list of runs): restore it from git"
                         % path)
    return runs


def _identity(run, cell_dir):
    return (cell_dir(run), run.get("model"), run.get("key"))


def seed(path, workdir, cell_dir, keep):
    """Copy the ledger's runs for which keep(run) holds into WORKDIR/<cell_dir(run)>/
    results.json unless a run of the same model and key is there; returns how many. A cell
    that another process is training in (its folder's lock, psn.probe_tasks.train_missing) is
    left to it: that process adds its runs to the ledger when the cell ends, and a run of this
    grid's that only the ledger held for that cell is trained again."""
    added = 0
    by_cell = {}
    for run in load(path):
        if keep(run):
            by_cell.setdefault(cell_dir(run), []).append(run)
    for cell, runs in by_cell.items():
        folder = os.path.join(workdir, cell)
        try:
            with folder_lock(folder, "seeding"):
                have = cell_runs(folder)
                held = {(r.get("model"), r.get("key")) for r in have}
                new = [r for r in runs if (r.get("model"), r.get("key")) not in held]
                if new:
                    write_atomic(os.path.join(folder, CELL_RUNS),
                                 json.dumps(have + new, indent=1) + "\n")
                    added += len(new)
        except FolderBusy:
            continue
    return added


@contextlib.contextmanager
def _merging(path):
    """The ledger's folder locked for one read-merge-write. Two grids that share a ledger (the
    order and the place task run at once, or --report-only beside a training run) each read
    the ledger, add their runs and write it back: without the lock the later write drops the
    earlier one's runs. The folder itself is locked (flock), not a lock file beside the ledger,
    which would show in the repository; write_atomic replaces the ledger's file, so a lock on
    that file would guard a file that is gone. A writer waits: a merge takes moments."""
    folder = os.path.dirname(os.path.realpath(path))     # one folder however it is named
    os.makedirs(folder, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            # A file system without locks (some NFS mounts; NFSv4 locks a folder opened for
            # reading not at all: EBADF): merge unguarded.
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL,
                               errno.EBADF):
                raise
        yield
    finally:
        os.close(fd)


def update(path, runs, cell_dir):
    """Merge `runs` into the ledger at `path`; returns the ledger's size."""
    with _merging(path):
        merged = {_identity(r, cell_dir): r for r in load(path)}
        merged.update((_identity(r, cell_dir), r) for r in runs)
        ordered = [merged[k] for k in sorted(merged, key=lambda k: tuple(str(v) for v in k))]
        # One run a line: a part added later changes few lines of the file.
        write_atomic(path, "[\n" + ",\n".join(json.dumps(r, sort_keys=True) for r in ordered)
                     + "\n]\n")
        return len(ordered)


def gather(path, workdir, cell_dir, keep):
    """Every run in WORKDIR/*/results.json for which keep(run) holds (earlier invocations'
    and the ledger's included: a grid is run in parts), merged into the ledger at `path`.
    Returns (the runs, the ledger's size), the size None where there was no run."""
    runs = []
    for done in sorted(glob.glob(os.path.join(workdir, "*", CELL_RUNS))):
        runs.extend(r for r in cell_runs(os.path.dirname(done)) if keep(r))
    return runs, (update(path, runs, cell_dir) if runs else None)


def train_cells(job, jobs, workers, path, cell_dir, keep, name, workdir):
    """job(j) for each j of `jobs` in `workers` spawned processes (job returns the cell's runs,
    and must be importable: a benchmark's module-level function), each cell's runs that `keep`
    accepts merged into the ledger at `path` as the cell ends, so a part cut short keeps what
    it trained. Returns every run, or None after one line on stderr when a worker died: Caffe
    aborts its process on a fatal error, and where a Pool would wait for the lost cell for
    ever the executor raises BrokenProcessPool."""
    results = []
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            for runs in pool.map(job, jobs):
                results.extend(runs)
                update(path, [r for r in runs if keep(r)], cell_dir)
    except BrokenProcessPool:
        print("%s: a worker died while training a cell (Caffe aborts on a fatal error: its line "
              "is above); the cells finished are kept in %s and %s: run the same command again "
              "to go on from them" % (name, workdir, path), file=sys.stderr)
        return None
    return results


def run_grid(args, job, jobs, cell_dir, keep, name, workdir, root, error):
    """A grid benchmark's course over its ledger (args: add_arguments' options): the ledger's
    runs of these settings copied into `workdir`, `jobs` trained (none with --report-only),
    then every run of these settings in `workdir` merged back into the ledger, each step said
    in a line. Returns (this run's results, every stored run), or None where a worker died
    (train_cells said so); error(message) for a ledger that cannot be read or --report-only
    without --doc."""
    if args.report_only and not args.doc:
        error("--report-only writes the document: give --doc FILE")
    shown = os.path.relpath(args.ledger, root)
    try:
        seeded = seed(args.ledger, workdir, cell_dir, keep)
    except ValueError as e:
        error(str(e))
    if seeded:
        print("%d runs taken from %s" % (seeded, shown))
    results = []
    if not args.report_only:
        results = train_cells(job, jobs, args.jobs, args.ledger, cell_dir, keep, name, workdir)
        if results is None:
            return None
    # Every run trained into workdir with these settings, not only this one's.
    stored, n = gather(args.ledger, workdir, cell_dir, keep)
    if n is not None:
        print("%s: %d runs" % (shown, n))
    return results, stored


def axis_values(text):
    """A grid axis given on the command line, "16,32" or "0.25,0.5" -> (16, 32), (0.25, 0.5)."""
    return tuple(float(v) if "." in v else int(v) for v in text.split(",") if v)


def add_arguments(ap, ledger, root, out, jobs):
    """A grid benchmark's options for where its runs go: --jobs, --out (the work folder),
    --doc, --report-only and --ledger (default `ledger`, shown relative to `root`)."""
    ap.add_argument("--jobs", type=int, default=jobs)
    ap.add_argument("--out", default=out)
    ap.add_argument("--doc", default=None, help="write the tables to this markdown file")
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: table the results already in OUT (with --doc)")
    ap.add_argument("--ledger", default=ledger,
                    help="the runs kept in the repository (psn.grid_ledger): read into OUT "
                         "first, every run of these settings added after (default: %s)"
                         % os.path.relpath(ledger, root))
