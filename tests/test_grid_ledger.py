"""psn.grid_ledger: a grid's runs kept in the repository, so that parts of a grid run on
different machines (each with an empty work folder) add up instead of being lost."""
import json
import os

import pytest

from psn import grid_ledger, probe_tasks

CELL = dict(contrast=32, sigma=8, noise=1, frame_jitter=0)


def run(model="m", seed=1, key="k1", accuracy=1.0, **cell):
    return dict(task="order", model=model, seed=seed, key=key, accuracy=accuracy,
                **dict(CELL, **cell))


def cell_dir(r):
    return probe_tasks.cell_name(r["task"], {k: r[k] for k in probe_tasks.GRID}, r["seed"])


def test_update_merges_one_run_a_line_and_keeps_the_newer(tmp_path):
    path = str(tmp_path / "runs.json")
    assert grid_ledger.update(path, [run(seed=2), run()], cell_dir) == 2
    assert grid_ledger.update(path, [run(accuracy=0.5), run(model="n")], cell_dir) == 3
    runs = grid_ledger.load(path)
    assert [(r["model"], r["seed"], r["accuracy"]) for r in runs] == [
        ("m", 1, 0.5), ("n", 1, 1.0), ("m", 2, 1.0)]
    text = open(path).read()
    assert text.count("\n") == len(runs) + 2 and text.startswith("[\n{")


def test_seed_fills_an_empty_work_folder_with_the_runs_of_these_settings(tmp_path):
    path = str(tmp_path / "runs.json")
    grid_ledger.update(path, [run(), run(seed=2), run(key="other", model="n")], cell_dir)
    work = str(tmp_path / "work")
    keep = lambda r: r["key"] == "k1"   # noqa: E731
    assert grid_ledger.seed(path, work, cell_dir, keep) == 2
    with open(os.path.join(work, cell_dir(run()), "results.json")) as f:
        assert [r["model"] for r in json.load(f)] == ["m"]
    # A cell that holds the run already is left as it is; run_cell then trains nothing there.
    assert grid_ledger.seed(path, work, cell_dir, keep) == 0
    assert sorted(os.listdir(work)) == sorted({cell_dir(run()), cell_dir(run(seed=2))})


def test_seed_leaves_a_cell_that_a_grid_is_training_in(tmp_path):
    """Its trainer writes the cell's results.json and adds its runs to the ledger itself."""
    from preprocessing.folder_lock import folder_lock
    path, work = str(tmp_path / "runs.json"), tmp_path / "work"
    grid_ledger.update(path, [run(), run(seed=2)], cell_dir)
    with folder_lock(str(work / cell_dir(run())), "training in"):
        assert grid_ledger.seed(path, str(work), cell_dir, lambda r: True) == 1
    assert not (work / cell_dir(run()) / "results.json").exists()
    assert (work / cell_dir(run(seed=2)) / "results.json").exists()


def test_a_damaged_ledger_is_refused_naming_the_fix(tmp_path):
    path = tmp_path / "runs.json"
    path.write_text("[{\"model\": ")
    with pytest.raises(ValueError, match="restore it from git"):
        grid_ledger.load(str(path))
    path.write_text("{}")
    with pytest.raises(ValueError, match="a JSON list of runs"):
        grid_ledger.load(str(path))


def test_temporal_grid_tables_runs_trained_on_another_machine(caffe_env, tmp_path, capsys):
    """Machine A's work folder gives the ledger its runs; machine B, whose work folder is
    empty, tables them from the ledger alone."""
    from conftest import load_benchmark
    grid = load_benchmark("temporal_grid")
    key = probe_tasks.run_key("order", "psn_temporal", 300, 200, {})
    a = run(model="psn_temporal", key=key, accuracy=0.95)
    work_a = tmp_path / "a" / "clips200_iters300_default" / cell_dir(a)
    work_a.mkdir(parents=True)
    (work_a / "results.json").write_text(json.dumps([a, run(model="psn_temporal", key="stale")]))
    ledger = str(tmp_path / "runs.json")
    args = ["--report-only", "--task", "order", "--models", "psn_temporal", "--ledger", ledger]
    assert grid.main(args + ["--out", str(tmp_path / "a"), "--doc", str(tmp_path / "a.md")]) == 0
    assert [r["accuracy"] for r in grid_ledger.load(ledger)] == [0.95]   # not the stale run
    assert grid.main(args + ["--out", str(tmp_path / "b"), "--doc", str(tmp_path / "b.md")]) == 0
    doc = (tmp_path / "b.md").read_text()
    assert "| 1 | 0 | 8 | 0.95 |" in doc
    assert "1 runs taken from" in capsys.readouterr().out


def _add_one_at_a_time(job):
    path, model = job
    for seed in range(15):
        grid_ledger.update(path, [run(model=model, seed=seed)], cell_dir)


def test_grids_sharing_a_ledger_lose_none_of_each_others_runs(tmp_path):
    """Four processes each merge 15 runs one by one into one ledger, as two grids run at once
    do. Each update reads, merges and rewrites the file; unguarded, a later write dropped an
    earlier one's runs (29-37 of 60 were left on this machine)."""
    import multiprocessing as mp
    path = str(tmp_path / "docs" / "runs.json")
    with mp.get_context("spawn").Pool(4) as pool:
        pool.map(_add_one_at_a_time, [(path, "m%d" % k) for k in range(4)])
    assert len(grid_ledger.load(path)) == 60
    assert os.listdir(tmp_path / "docs") == ["runs.json"]     # no lock file beside it


def test_temporal_grid_judges_a_cell_by_its_mean_over_the_seeds_and_names_a_miss():
    """The issue's bar is per cell (the mean of its seeds), not per run: one run at chance of
    three is a cell at 0.83, named; psn_spatial on the order task passes at chance."""
    from conftest import load_benchmark
    grid = load_benchmark("temporal_grid")
    runs = [run(model="psn_temporal", seed=s, accuracy=a) for s, a in ((1, 1.0), (2, 0.5), (3, 1.0))]
    runs += [run(model="psn_temporal", seed=s, sigma=16) for s in (1, 2, 3)]
    runs += [run(model="psn_spatial", seed=s, accuracy=0.5) for s in (1, 2, 3)]
    lines = grid.summary(runs, ["order"], {"order": ["psn_temporal", "psn_spatial"]})
    assert lines[0].startswith("order, psn_temporal: 5 of 6 runs (2 cells, seeds 1,2,3)")
    assert lines[0].endswith("1 of 2 cells pass by their mean over the seeds (missed: contrast "
                             "32, sigma 8, noise 1, jitter 0 at 0.83)")
    assert lines[1].endswith("1 of 1 cells pass by their mean over the seeds")


def test_gather_takes_the_work_folders_runs_of_these_settings_into_the_ledger(tmp_path):
    path = str(tmp_path / "runs.json")
    work = tmp_path / "work"
    keep = lambda r: r["key"] == "k1"   # noqa: E731
    assert grid_ledger.gather(path, str(work), cell_dir, keep) == ([], None)
    assert not os.path.exists(path)                  # nothing to keep: no ledger written
    for r in (run(), run(seed=2), run(key="other", model="n")):
        cell = work / cell_dir(r)
        cell.mkdir(parents=True, exist_ok=True)
        done = cell / "results.json"
        have = json.loads(done.read_text()) if done.exists() else []
        done.write_text(json.dumps(have + [r]))
    grid_ledger.update(path, [run(model="earlier")], cell_dir)
    runs, n = grid_ledger.gather(path, str(work), cell_dir, keep)
    assert sorted((r["model"], r["seed"]) for r in runs) == [("m", 1), ("m", 2)]
    assert n == 3 and {r["model"] for r in grid_ledger.load(path)} == {"m", "earlier"}


def test_axis_values_keep_integers_integers():
    """Cell folder names and the ledger's runs hold 16, not 16.0: an axis typed as 16 must
    find the runs of 16."""
    assert grid_ledger.axis_values("16,32") == (16, 32)
    assert all(type(v) is int for v in grid_ledger.axis_values("16,32"))
    assert grid_ledger.axis_values("0.25,1,") == (0.25, 1)


def _cell_job(job):
    """A grid cell's stand-in: its runs, or the death of its process, as Caffe's abort is."""
    seed, die = job
    if die:
        os._exit(134)
    return [run(seed=seed), run(seed=seed, key="other settings")]


def test_train_cells_keeps_each_cells_runs_of_these_settings_as_it_ends(tmp_path):
    path = str(tmp_path / "runs.json")
    keep = lambda r: r["key"] == "k1"   # noqa: E731
    results = grid_ledger.train_cells(_cell_job, [(1, False), (2, False)], 2, path, cell_dir,
                                      keep, "grid", str(tmp_path / "work"))
    assert sorted((r["seed"], r["key"]) for r in results) == [
        (1, "k1"), (1, "other settings"), (2, "k1"), (2, "other settings")]
    assert sorted((r["seed"], r["key"]) for r in grid_ledger.load(path)) == [(1, "k1"), (2, "k1")]


def test_a_worker_that_dies_is_one_line_and_the_cells_before_it_are_kept(tmp_path, capsys):
    path = str(tmp_path / "runs.json")
    work = str(tmp_path / "work")
    assert grid_ledger.train_cells(_cell_job, [(1, False), (2, True)], 1, path, cell_dir,
                                   lambda r: True, "grid", work) is None
    err = capsys.readouterr().err
    assert err.startswith("grid: a worker died while training a cell") and err.count("\n") == 1
    assert work in err and path in err and "run the same command again" in err
    assert [r["seed"] for r in grid_ledger.load(path)] == [1, 1]


def test_run_grid_seeds_trains_and_gathers_saying_each_step(tmp_path, capsys):
    """Both grid benchmarks' course: the ledger's runs into the work folder, the jobs trained,
    every run of these settings back into the ledger; --report-only without --doc refused
    before anything is written; a dying worker ends it with None (train_cells' line)."""
    from argparse import Namespace

    def error(message):
        raise SystemExit(message)
    path = str(tmp_path / "runs.json")
    work = str(tmp_path / "work")
    keep = lambda r: r["key"] == "k1"   # noqa: E731
    grid_ledger.update(path, [run()], cell_dir)
    args = Namespace(report_only=True, doc=None, jobs=1, ledger=path)
    with pytest.raises(SystemExit, match="give --doc FILE"):
        grid_ledger.run_grid(args, _cell_job, [], cell_dir, keep, "grid", work, str(tmp_path), error)
    assert not os.path.exists(work)
    args = Namespace(report_only=False, doc=None, jobs=1, ledger=path)
    results, stored = grid_ledger.run_grid(args, _cell_job, [(2, False)], cell_dir, keep, "grid",
                                           work, str(tmp_path), error)
    assert sorted((r["seed"], r["key"]) for r in results) == [(2, "k1"), (2, "other settings")]
    assert [r["seed"] for r in stored] == [1]      # the stand-in job writes no results.json
    assert capsys.readouterr().out == "1 runs taken from runs.json\nruns.json: 2 runs\n"
    assert grid_ledger.run_grid(args, _cell_job, [(3, True)], cell_dir, keep, "grid", work,
                                str(tmp_path), error) is None
    args = Namespace(report_only=True, doc="grid.md", jobs=1, ledger=path)
    results, stored = grid_ledger.run_grid(args, _cell_job, [(4, False)], cell_dir, keep, "grid",
                                           work, str(tmp_path), error)
    assert results == [] and sorted(r["seed"] for r in stored) == [1, 2]   # seed 4 not trained
