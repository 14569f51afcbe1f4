"""Which settings let a recurrent stream learn frame order? Trains and prints a table.

    python benchmarks/probe_tasks.py [--task order] [--settings a,b,...] [--seeds 1,2,3]
                                     [--iters 600] [--jobs 2] [--out DIR]

For each named setting (SETTINGS below: a model of psn.nets plus overrides of its NetConfig
and solver) and each seed, trains on fold 1 of the task built by psn.probe_tasks (80 clips,
40 held out) in a single-threaded process and prints the held-out clip accuracy; results
also go to OUT/results.json. Chance is 0.5. docs/temporal_stream.md quotes its output.
"""
import argparse
import json
import multiprocessing as mp
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _init_paths  # noqa: F401,E402  (the checkout on sys.path)

from psn.nets import DEMO_WIDTH  # noqa: E402

G = 1.0 / 64   # the first measurements: uncentred frames, (gray - 128) / 64
RAW = dict(temporal_centre=False, temporal_scale=G, temporal_norm="none")
X8 = dict(temporal_norm="none")   # the previous default: centred, x / 8, W_m gain 2.5


def _gain(g):
    """tp_ref (gray levels) that gives W_m gain g at scale 1/64."""
    return 64.0 / g


SETTINGS = {
    # name: (model, NetConfig overrides, solver overrides)
    "tpu_released": ("psn_temporal", dict(rec_init="tiny", temporal_scale=1.0,
                                          temporal_centre=False, first_tp="ZERO",
                                          temporal_norm="none"), {}),
    "tpu_xavier": ("psn_temporal", dict(RAW, tp_ref=_gain(1)), {}),
    "tpu_xavier_one": ("psn_temporal", dict(RAW, tp_ref=_gain(1), first_tp="ONE"), {}),
    "tpu_gain10": ("psn_temporal", dict(RAW, tp_ref=_gain(10)), {}),
    "tpu_gain10_one": ("psn_temporal", dict(RAW, tp_ref=_gain(10), first_tp="ONE"), {}),
    "tpu_gain10_next": ("psn_temporal", dict(RAW, tp_ref=_gain(10), first_tp="NEXT"), {}),
    "tpu_gain20": ("psn_temporal", dict(RAW, tp_ref=_gain(20)), {}),
    "tpu_gain20_next": ("psn_temporal", dict(RAW, tp_ref=_gain(20), first_tp="NEXT"), {}),
    "tpu_gain30": ("psn_temporal", dict(RAW, tp_ref=_gain(30)), {}),
    "tpu_gain30_one": ("psn_temporal", dict(RAW, tp_ref=_gain(30), first_tp="ONE"), {}),
    "tpu_gain30_next": ("psn_temporal", dict(RAW, tp_ref=_gain(30), first_tp="NEXT"), {}),
    "tpu_gain20_centred": ("psn_temporal", dict(RAW, tp_ref=_gain(20), temporal_centre=True), {}),
    "tp1_xavier": ("psn_temporal", dict(RAW, tpu_mode="TP1"), {}),
    "rnn_released": ("alexnet_rnn", dict(rec_init="tiny", temporal_scale=1.0,
                                         temporal_centre=False, temporal_norm="none"), {}),
    "rnn_xavier": ("alexnet_rnn", dict(RAW), {}),
    "rnn_xavier_centred": ("alexnet_rnn", dict(RAW, temporal_centre=True), {}),
    # The previous defaults (centred, x/8, tp_ref 3.2) and their neighbours.
    "tpu_x8": ("psn_temporal", dict(X8), {}),
    "tpu_x8_next": ("psn_temporal", dict(X8, first_tp="NEXT"), {}),
    "tpu_x16": ("psn_temporal", dict(X8, temporal_scale=1.0 / 16), {}),
    "tp1_x8": ("psn_temporal", dict(X8, tpu_mode="TP1"), {}),
    "rnn_x8": ("alexnet_rnn", dict(X8), {}),
    # The shipped defaults (centred, rms 0.25 per clip, eps 4, W_m gain 8).
    "tpu_default": ("psn_temporal", {}, {}),
    "tp1_default": ("psn_temporal", dict(tpu_mode="TP1"), {}),
    "rnn_default": ("alexnet_rnn", {}, {}),
    "spatial": ("psn_spatial", {}, {}),
}


def _pairs(items):
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        out[key] = value
    return out


def _run(job):
    from psn.env import one_blas_thread
    one_blas_thread()
    from psn.probe_tasks import train_and_score
    name, seed, data, out, iters, width, (net_extra, solver_extra) = job
    model, net_over, solver_over = SETTINGS[name]
    net_over, solver_over = dict(net_over, **net_extra), dict(solver_over, **solver_extra)
    t0 = time.time()
    res = train_and_score(data, model, os.path.join(out, "%s_s%d" % (name, seed)), iters=iters,
                          seed=seed, width=width, solver_overrides=solver_over, **net_over)
    res.update(setting=name, seed=seed, seconds=round(time.time() - t0, 1))
    print("%-18s seed %d  acc %.2f  loss %.3f  (%.0f s)" % (name, seed, res["accuracy"],
                                                        res["loss"], res["seconds"]), flush=True)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="order")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--iters", type=int, default=600)
    ap.add_argument("--width", type=float, default=DEMO_WIDTH)
    ap.add_argument("--clips", type=int, default=80)
    ap.add_argument("--noise", type=float, default=2.0)
    ap.add_argument("--identities", action="store_true",
                    help="a texture behind each pair of clips instead of a flat background")
    ap.add_argument("--jitter", type=int, default=0,
                    help="move the blobs by up to this many pixels per clip")
    ap.add_argument("--net", action="append", default=[], metavar="FIELD=VALUE",
                    help="NetConfig override for every setting (e.g. dropout=0)")
    ap.add_argument("--solver", action="append", default=[], metavar="KEY=VALUE",
                    help="solver override for every setting (e.g. base_lr=0.001)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "work", "probe"))
    args = ap.parse_args(argv)
    from psn.env import ensure_caffe
    ensure_caffe()
    from psn.probe_tasks import write_task
    names = [s for s in args.settings.split(",") if s]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        ap.error("unknown settings %s (known: %s)" % (unknown, ", ".join(SETTINGS)))
    variant = "%s%s%s" % (args.task, "_id" * args.identities,
                          "_j%d" % args.jitter if args.jitter else "")
    data = write_task(os.path.join(args.out, "data_" + variant), args.task,
                      n_clips=args.clips, seed=0, noise=args.noise,
                      identities=args.identities, jitter=args.jitter)
    from psn.nets import parse_overrides
    try:
        extra = (parse_overrides(args.net), _pairs(args.solver))
    except ValueError as e:
        ap.error(str(e))
    jobs = [(n, int(s), data, args.out, args.iters, args.width, extra)
            for n in names for s in args.seeds.split(",")]
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        results = pool.map(_run, jobs, chunksize=1)
    print("\n%-18s %s  mean" % ("setting", "  ".join("seed %s" % s for s in args.seeds.split(","))))
    for n in names:
        accs = [r["accuracy"] for r in results if r["setting"] == n]
        print("%-18s %s  %.2f" % (n, "    ".join("%.2f" % a for a in accs), sum(accs) / len(accs)))
    with open(os.path.join(args.out, "results_%s.json" % variant), "w") as f:
        json.dump(dict(vars(args), results=results), f, indent=1)


if __name__ == "__main__":
    main()
