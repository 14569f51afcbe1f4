"""Do the optical-flow baselines learn what the flow says, over the range real clips span?
Trains and prints.

    python benchmarks/flow_grid.py [--models ststnet,off_apexnet] [--seeds 1]
        [--shift 0.25,0.5,1,2] [--sigma 6,24] [--noise 1,4] [--drift 0,3]
        [--clips 200] [--epochs 500] [--jobs 1] [--out DIR] [--doc FILE] [--report-only]
        [--ledger FILE]

For every cell of the grid (psn.flow_probe.GRID: movement at the patch's centre x patch radius
x sensor noise x head drift between onset and apex) and every seed, builds the direction task
(psn.flow_probe: the frames go through registration, TV-L1 and the flow shards as real clips
do; half the clips held out; data seed = training seed) and trains each flow net on fold 1
with its own optimiser (prototxt/schedules/<model>.json) for --epochs passes over the training
clips (iterations x batch / clips: Caffe's batches are always full; at least one iteration an
epoch, as the authors' loaders take), in a single-threaded
process. Prints a table per model (rows noise / drift / sigma,
columns shift) and how many runs reach 0.9. --doc writes the same as markdown with the
command and the date: docs/flow_grid.md is its output. Results are kept per cell in OUT (an
interrupted run resumes; a cell is retrained only when its settings changed) and in the ledger
docs/flow_grid_runs.json, which goes into the repository: a part of the grid run on another
machine adds to it (psn.grid_ledger).
"""
import argparse
import datetime
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _init_paths  # noqa: F401,E402  (the checkout on sys.path)

PASS = 0.9
LEDGER = os.path.join(ROOT, "docs", "flow_grid_runs.json")


def iterations(model, n_train, epochs):
    """Iterations of `epochs` passes over n_train clips at the model's own batch, and at least
    one an epoch: where the batch exceeds the training clips (STSTNet's 256), its authors'
    loader still takes a step every epoch, on a partial batch, while Caffe's batches are full
    and would give fewer steps than the epochs (as prototxt/schedules/ststnet_demo.json)."""
    from psn import nets
    return max(epochs, int(math.ceil(epochs * n_train / float(nets.MODELS[model].batch))))


def run_key(model, cell, seed, clips, epochs):
    import hashlib
    from dataclasses import asdict
    from psn import flow_probe, nets
    text = json.dumps([flow_probe.TASK_VERSION, model, cell, seed, clips, epochs,
                       asdict(nets.MODELS[model]),
                       nets.read_schedule(os.path.join(nets.SCHEDULE_DIR, "%s.json" % model))],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _job(job):
    from psn.env import one_blas_thread
    one_blas_thread()
    from psn import flow_probe, probe_tasks
    cell, seed, models, out, clips, epochs = job
    keys = {m: run_key(m, cell, seed, clips, epochs) for m in models}
    iters = {m: iterations(m, clips // 2, epochs) for m in models}

    def train_one(model, data, folder):
        r = probe_tasks.train_and_score(data, model, folder, iters=iters[model], seed=seed)
        r.update(model=model, seed=seed, iters=iters[model], epochs=epochs, clips=clips,
                 key=keys[model], **cell)
        return r

    t0 = time.time()
    res = probe_tasks.train_missing(
        os.path.join(out, flow_probe.cell_name(cell, seed)), models,
        lambda r: r.get("key") == keys[r["model"]] and r.get("iters") == iters[r["model"]],
        lambda folder: flow_probe.write_task(folder, n_clips=clips, seed=seed, **cell),
        train_one)
    print("%-34s %s  (%.0f s)" % (flow_probe.cell_name(cell, seed), "  ".join(
        "%s %.2f" % (r["model"], r["accuracy"]) for r in res), time.time() - t0), flush=True)
    return res


def table(results, model, grid):
    """Markdown: rows (noise, drift, sigma), columns shift (psn.probe_tasks.accuracy_table)."""
    from psn import probe_tasks
    return probe_tasks.accuracy_table(results, [("noise", "noise", grid["noise"]),
                                                ("drift", "drift", grid["drift"]),
                                                ("sigma", "σ (px)", grid["sigma"])],
                                      ("shift", "shift %g", grid["shift"]), {"model": model})


def main(argv=None):
    from psn import flow_probe
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(flow_probe.MODELS))
    ap.add_argument("--seeds", default="1")
    g = flow_probe.GRID
    for key in ("shift", "sigma", "noise", "drift"):
        ap.add_argument("--" + key, default=",".join(map(str, g[key])))
    ap.add_argument("--clips", type=int, default=200, help="clips per task, half held out")
    ap.add_argument("--epochs", type=int, default=500,
                    help="epochs: passes over the training clips, at least one step each "
                         "(STSTNet's paper: 500)")
    from psn import grid_ledger
    grid_ledger.add_arguments(ap, LEDGER, ROOT, out=os.path.join(ROOT, "work", "flow_grid"), jobs=1)
    args = ap.parse_args(argv)
    from psn.env import ensure_caffe
    ensure_caffe()
    from psn import nets
    models = [m for m in args.models.split(",") if m]
    bad = [m for m in models if m not in nets.MODELS or not nets.reads_flow(nets.MODELS[m])]
    if bad:
        ap.error("not a flow net: %s (the flow nets: %s)" % (", ".join(bad), ", ".join(
            m for m, c in nets.MODELS.items() if nets.reads_flow(c))))
    try:
        grid = {k: grid_ledger.axis_values(getattr(args, k)) for k in ("shift", "sigma", "noise", "drift")}
        seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError as e:
        ap.error(str(e))
    if args.jobs < 1 or args.clips < 4 or args.epochs < 1:
        ap.error("--jobs and --epochs must be at least 1, --clips at least 4")
    out = os.path.join(args.out, "clips%d_epochs%d" % (args.clips, args.epochs))

    def cell_dir(r):
        return flow_probe.cell_name({k: r[k] for k in flow_probe.GRID}, r["seed"])

    def same_settings(r):
        return (r.get("model") in nets.MODELS and nets.reads_flow(nets.MODELS[r["model"]])
                and (r.get("clips"), r.get("epochs")) == (args.clips, args.epochs)
                and r.get("key") == run_key(r["model"], {k: r[k] for k in flow_probe.GRID},
                                            r["seed"], r["clips"], r["epochs"])
                and r.get("iters") == iterations(r["model"], r["clips"] // 2, r["epochs"]))
    jobs = [(cell, s, models, out, args.clips, args.epochs)
            for cell in flow_probe.grid_cells(grid) for s in seeds]
    t0 = time.time()
    ran = grid_ledger.run_grid(args, _job, jobs, cell_dir, same_settings, "flow_grid", out,
                               ROOT, ap.error)
    if ran is None:
        return 1
    results, stored = ran
    minutes = (time.time() - t0) / 60
    if args.doc:
        results = stored
        models = [m for m in flow_probe.MODELS if any(r["model"] == m for r in results)]
        grid = {k: tuple(sorted({r[k] for r in results})) for k in flow_probe.GRID}
        seeds = sorted({r["seed"] for r in results})
    parts, summ = [], []
    for model in models:
        rs = [r for r in results if r["model"] == model]
        if not rs:
            continue
        parts.append("### %s\n\n%s\n" % (model, table(results, model, grid)))
        summ.append("%s: %d of %d runs >= %.1f (seeds %s); mean %.3f, lowest %.2f; %d iterations "
                    "a run, %.0f s median" % (
                        model, sum(r["accuracy"] >= PASS for r in rs), len(rs), PASS,
                        ",".join(str(s) for s in sorted({r["seed"] for r in rs})),
                        sum(r["accuracy"] for r in rs) / len(rs), min(r["accuracy"] for r in rs),
                        rs[0]["iters"], sorted(r["seconds"] for r in rs)[len(rs) // 2]))
    text = "\n".join(parts) + "\n" + "\n".join("- " + s for s in summ) + "\n"
    print("\n" + text)
    if args.doc:
        from preprocessing.atomic import write_atomic
        cmd = "python benchmarks/flow_grid.py " + " ".join(argv if argv is not None else sys.argv[1:])
        how = ("tabled from the stored results" if args.report_only else
               "%.0f min on this machine, %d jobs at once" % (minutes, args.jobs))
        head = ("# The optical-flow baselines' robustness grid\n\n"
                "Written by `%s` on %s (%s). The direction task of psn.flow_probe: a patch of "
                "a face-like texture moves up (class 0) or down (class 1) between onset and "
                "apex; the frames go through registration, TV-L1 and the flow shards as real "
                "clips do. Each net trains with its own optimiser for %d epochs (passes over the "
                "training clips at its batch, and at least one step an epoch, as its authors' "
                "loader takes where the batch exceeds the clips: STSTNet); held-out clip "
                "accuracy on fold 1, %d clips, half held out "
                "(chance 0.5); each cell the mean over the seeds run (seeds %s), the worst in "
                "brackets where they differ; – where a cell was not run; the runs are kept in "
                "`%s` (psn.grid_ledger). docs/flow.md explains the task and the nets.\n\n"
                % (cmd.strip(), datetime.date.today().isoformat(), how, args.epochs, args.clips,
                   ", ".join(map(str, seeds)), os.path.relpath(args.ledger, ROOT)))
        write_atomic(args.doc, head + text)
        print("wrote", args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
