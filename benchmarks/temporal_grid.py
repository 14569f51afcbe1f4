"""Does each stream learn what it should over the range real clips span? Trains and prints.

    python benchmarks/temporal_grid.py [--task order,place] [--models a,b] [--seeds 1,2,3]
        [--contrast 16,32,64,128] [--sigma 4,8,16,24] [--noise 1,4] [--jitter 0,3]
        [--iters 300] [--jobs 2] [--net FIELD=VALUE ...] [--out DIR] [--doc FILE]
        [--report-only] [--ledger FILE]

For every cell of the grid (psn.probe_tasks.GRID: blob contrast x blob size x sensor noise x
per-frame jitter) and every seed, builds the probe task (200 clips, 100 held out; data seed =
training seed), trains each model on fold 1 with the demo schedule (300 SGD iterations, step
at 200) in a single-threaded process and records the held-out clip accuracy. Prints one table
per task and model (rows noise / jitter / sigma, columns contrast; mean over seeds, the worst
seed in brackets) and how many runs and cells pass (order: recurrent streams >= 0.9,
psn_spatial <= 0.7; place: every stream >= 0.9). --doc writes the same tables as markdown,
with the command and the date: docs/temporal_grid.md is its output. Results are kept per cell
in OUT (an interrupted run resumes) and in the ledger docs/temporal_grid_runs.json, which goes
into the repository: a part of the grid run on another machine adds to it (psn.grid_ledger).
"""
import argparse
import datetime
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _init_paths  # noqa: F401,E402  (the checkout on sys.path)

LEDGER = os.path.join(ROOT, "docs", "temporal_grid_runs.json")
PASS = {"order": {"psn_spatial": (0.0, 0.7)}, "place": {}}
DEFAULT_PASS = (0.9, 1.0)


def _job(job):
    from psn.env import one_blas_thread
    one_blas_thread()
    from psn.probe_tasks import cell_name, run_cell
    task, cell, seed, models, out, iters, net, clips = job
    t0 = time.time()
    res = run_cell(task, cell, seed, models, out, iters=iters, n_clips=clips, net_overrides=net)
    print("%-34s %s  (%.0f s)" % (cell_name(task, cell, seed), "  ".join(
        "%s %.2f" % (r["model"], r["accuracy"]) for r in res), time.time() - t0), flush=True)
    return res


def passes(task, model, accuracy):
    lo, hi = PASS[task].get(model, DEFAULT_PASS)
    return lo <= accuracy <= hi


def summary(results, tasks, models):
    """A line per task and model: its runs in the bar, then its cells judged as the issue
    judges them (a cell's mean over its seeds), naming every cell that misses."""
    from psn.probe_tasks import GRID
    lines = []
    for task in tasks:
        for model in models[task]:
            rs = [r for r in results if r["task"] == task and r["model"] == model]
            if not rs:
                continue
            ok = sum(passes(task, model, r["accuracy"]) for r in rs)
            lo, hi = PASS[task].get(model, DEFAULT_PASS)
            cells = {}
            for r in rs:
                cells.setdefault(tuple(r[k] for k in GRID), []).append(r["accuracy"])
            means = {c: sum(a) / len(a) for c, a in cells.items()}
            missed = sorted(c for c, m in means.items() if not passes(task, model, m))
            line = ("%s, %s: %d of %d runs (%d cells, seeds %s) in [%.1f, %.1f]; mean %.3f, "
                    "lowest %.2f; %d of %d cells pass by their mean over the seeds" % (
                        task, model, ok, len(rs), len(cells), ",".join(
                            str(s) for s in sorted({r["seed"] for r in rs})), lo, hi,
                        sum(r["accuracy"] for r in rs) / len(rs),
                        min(r["accuracy"] for r in rs), len(cells) - len(missed), len(cells)))
            if missed:
                line += " (missed: " + "; ".join(
                    "contrast %(contrast)g, sigma %(sigma)g, noise %(noise)g, jitter "
                    "%(frame_jitter)g" % dict(zip(GRID, c)) + " at %.2f" % means[c]
                    for c in missed) + ")"
            lines.append(line)
    return lines


def main(argv=None):
    from psn import grid_ledger, probe_tasks
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="order,place")
    ap.add_argument("--models", default=None,
                    help="comma-separated; default per task: %s" % probe_tasks.GRID_MODELS)
    ap.add_argument("--seeds", default="1,2,3")
    g = probe_tasks.GRID
    ap.add_argument("--contrast", default=",".join(map(str, g["contrast"])))
    ap.add_argument("--sigma", default=",".join(map(str, g["sigma"])))
    ap.add_argument("--noise", default=",".join(map(str, g["noise"])))
    ap.add_argument("--jitter", default=",".join(map(str, g["frame_jitter"])))
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--clips", type=int, default=200,
                    help="clips per task, half of them held out (default: %(default)s)")
    ap.add_argument("--net", action="append", default=[], metavar="FIELD=VALUE",
                    help="NetConfig override for every model (e.g. temporal_norm=none)")
    grid_ledger.add_arguments(ap, LEDGER, ROOT, out=os.path.join(ROOT, "work", "temporal_grid"),
                              jobs=2)
    args = ap.parse_args(argv)
    from psn.env import ensure_caffe
    ensure_caffe()
    from psn.nets import parse_overrides
    try:
        net = parse_overrides(args.net)
        grid = {"contrast": grid_ledger.axis_values(args.contrast),
                "sigma": grid_ledger.axis_values(args.sigma),
                "noise": grid_ledger.axis_values(args.noise),
                "frame_jitter": grid_ledger.axis_values(args.jitter)}
        seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError as e:
        ap.error(str(e))
    tasks = [t for t in args.task.split(",") if t]
    bad = [t for t in tasks if t not in probe_tasks.TASKS]
    if bad:
        ap.error("unknown task %s (known: %s)" % (bad, ", ".join(probe_tasks.TASKS)))
    models = {t: (args.models.split(",") if args.models else list(probe_tasks.GRID_MODELS[t]))
              for t in tasks}
    from psn import nets
    for m in sorted({m for ms in models.values() for m in ms}):
        if m not in nets.MODELS:
            ap.error("unknown model %s (known: %s)" % (m, ", ".join(sorted(nets.MODELS))))
        try:     # a bad override fails here, not in a worker after the data is written
            nets.build(m, width=nets.DEMO_WIDTH, **net)
        except (ValueError, TypeError, AttributeError) as e:
            ap.error("--net %s: %s" % (" ".join(args.net), e))
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    # The command's settings that are not grid axes name the work folder: runs of another
    # schedule or net would otherwise share a cell's folder, and each would take the other's
    # stored runs for stale ones and train them again.
    out = os.path.join(args.out, "clips%d_iters%d_" % (args.clips, args.iters)
                       + ("_".join(args.net) or "default"))
    jobs = [(t, cell, s, models[t], out, args.iters, net, args.clips)
            for t in tasks for cell in probe_tasks.grid_cells(grid) for s in seeds]

    def cell_dir(r):
        return probe_tasks.cell_name(r["task"], {k: r[k] for k in probe_tasks.GRID}, r["seed"])

    def same_settings(r):
        return (r.get("model") in nets.MODELS and r.get("task") in probe_tasks.TASKS and
                r.get("key") == probe_tasks.run_key(r["task"], r["model"], args.iters,
                                                    args.clips, net))
    t0 = time.time()
    ran = grid_ledger.run_grid(args, _job, jobs, cell_dir, same_settings, "temporal_grid", out,
                               ROOT, ap.error)
    if ran is None:
        return 1
    results, stored = ran
    minutes = (time.time() - t0) / 60
    if args.doc:
        results = stored
        tasks = [t for t in probe_tasks.TASKS if any(r["task"] == t for r in results)]
        found = {t: {r["model"] for r in results if r["task"] == t} for t in tasks}
        models = {t: [m for m in probe_tasks.GRID_MODELS[t] if m in found[t]]
                  + sorted(found[t] - set(probe_tasks.GRID_MODELS[t])) for t in tasks}
        grid = {k: tuple(sorted({r[k] for r in results})) for k in probe_tasks.GRID}
        seeds = sorted({r["seed"] for r in results})
    parts = []
    for task in tasks:
        for model in models[task]:
            parts.append("### %s task, %s\n\n%s\n" % (
                task, model, probe_tasks.grid_table(results, model, task, grid)))
    summ = summary(results, tasks, models)
    unseeded = sum(1 for r in results if "c_rand" in r)
    if unseeded:
        summ.append("%d of these runs were trained before in-process training seeded the C "
                    "library's rand() (Caffe's HDF5Data shuffle): their batch order came from "
                    "what their worker had trained before, so a rerun may differ at the "
                    "marginal cells" % unseeded)
    text = "\n".join(parts) + "\n" + "\n".join("- " + s for s in summ) + "\n"
    print("\n" + text)
    if args.doc:
        from preprocessing.atomic import write_atomic
        cmd = "python benchmarks/temporal_grid.py " + " ".join(argv if argv is not None
                                                               else sys.argv[1:])
        how = ("tabled from the stored results" if args.report_only else
               "%.0f min on this machine, %d jobs at once" % (minutes, args.jobs))
        head = ("# The temporal stream's robustness grid\n\n"
                "Written by `%s` on %s (%s; nets at "
                "width 1/8, %d SGD iterations, base_lr 0.01, step at %d; NetConfig overrides: "
                "%s). The tables hold every run of these settings (the same net, schedule, "
                "task version and size: psn.probe_tasks.run_key) in `%s` and in the ledger "
                "`%s` that keeps them in the repository (psn.grid_ledger), this "
                "run's and earlier ones' (– where a cell was not run). Held-out clip accuracy "
                "on fold 1; each cell the mean over the seeds run (seeds %s), the worst "
                "seed in brackets where they differ; %d clips, half held out. Chance is 0.5. "
                "docs/temporal_stream.md explains the tasks and the normalisation.\n\n"
                % (cmd.strip(), datetime.date.today().isoformat(), how, args.iters,
                   int(args.iters * 2 / 3), net or "none (shipped defaults)", os.path.relpath(out, ROOT),
                   os.path.relpath(args.ledger, ROOT),
                   ", ".join(map(str, seeds)), args.clips))
        write_atomic(args.doc, head + text)
        print("wrote", args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
