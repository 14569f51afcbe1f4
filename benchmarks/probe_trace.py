"""How one probe-task run trains, step by step: the loss, the share of live ReLU outputs and of
saturated recurrent outputs, the size of each step. Trains and prints.

    python benchmarks/probe_trace.py [--task order] [--model psn_temporal] [--contrast 32]
        [--sigma 4] [--noise 1] [--jitter 0] [--seed 2] [--iters 300] [--every 10]
        [--clips 200] [--net FIELD=VALUE ...]

Builds one cell of the robustness grid (psn.probe_tasks, data seed = training seed) and trains
it as benchmarks/temporal_grid.py does (the same run: the same held-out accuracy and loss),
printing every --every iterations:

  loss      the training loss of the last batch (not smoothed)
  live X    share of the ReLU layer X's outputs above 0 over the batch (before any dropout
            after it), and how many of its outputs (units, or a convolution's filters x
            positions) are above 0 for some row of the batch: one at 0 for every row passes
            no gradient
  sat X     share of the recurrent layer X's outputs (TPU, RNN) with |y| > 0.99
  step      the norm of the last update over every parameter (Caffe keeps it in the
            parameters' diffs after a step: lr x (the clipped gradient + weight decay), plus
            momentum x the update before)

docs/temporal_stream.md quotes it on the order grid's one failing run.
"""
import argparse
import os
import shutil
import sys
import tempfile

import _init_paths  # noqa: F401  (the checkout on sys.path)


def tracer(kinds, out=sys.stdout):
    """trace(net, iteration) for psn.probe_tasks.train_and_score: one printed row a call.
    kinds: [(top, layer type)] of the ReLU and recurrent layers to watch."""
    import numpy as np

    from psn.nets import DATA_LAYERS
    relus = [top for top, kind in kinds if kind == "ReLU"]
    recurrent = [top for top, kind in kinds if kind in ("TPU", "RNN")]
    heads = (["iter", "loss  "] + ["live %s (outputs)" % t for t in relus]
             + ["sat %s" % t for t in recurrent] + ["step"])
    print("  ".join(heads), file=out)

    def trace(net, iteration):
        b = net.blobs
        loss = float(b["loss"].data)
        step = np.sqrt(sum(float((p.diff.astype(np.float64) ** 2).sum())
                           for ps in net.params.values() for p in ps))
        # A ReLU's top may be rewritten in place after it (the head's dropout zeroes half of
        # conv_fuse in training): the batch just trained on, forward again from the first
        # layer after the data up to the last ReLU, gives the ReLUs' own outputs. It reads no
        # data and draws no random number, so training goes on as without the trace.
        names = list(net._layer_names)
        types = [layer.type for layer in net.layers]
        first = next(i for i, t in enumerate(types) if t not in DATA_LAYERS + ("Input",))
        last = max(i for i, t in enumerate(types) if t == "ReLU")
        net.forward(start=names[first], end=names[last])
        cols = ["%4d" % iteration, "%.4f" % loss]
        for top in relus:
            d = b[top].data
            # Rows x outputs: a recurrent stream's blobs are T x N x units, the rest rows first.
            x = (d.reshape(-1, d.shape[-1]) if d.ndim == 3 else d.reshape(d.shape[0], -1)) > 0
            cols.append("%.3f (%d of %d)" % (x.mean(), int(x.any(axis=0).sum()), x.shape[1]))
        cols += ["%.3f" % (np.abs(b[top].data) > 0.99).mean() for top in recurrent]
        cols.append("%.4f" % step)
        print("  ".join(c.ljust(len(h)) for c, h in zip(cols, heads)).rstrip(), file=out,
              flush=True)
    return trace


def main(argv=None):
    from psn.env import one_blas_thread
    one_blas_thread()       # as the grid's workers, so a trace reproduces their run
    from psn import grid_ledger, probe_tasks
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="order", choices=sorted(probe_tasks.TASKS))
    ap.add_argument("--model", default="psn_temporal")
    ap.add_argument("--contrast", default="32")
    ap.add_argument("--sigma", default="4")
    ap.add_argument("--noise", default="1")
    ap.add_argument("--jitter", default="0")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--net", action="append", default=[], metavar="FIELD=VALUE")
    args = ap.parse_args(argv)
    from psn.env import ensure_caffe
    ensure_caffe()
    from psn import nets
    frame_nets = sorted(m for m, c in nets.MODELS.items() if not nets.reads_flow(c))
    if args.model not in frame_nets:
        ap.error("%s is not a frame net of the probe tasks (they are: %s)"
                 % (args.model, ", ".join(frame_nets)))
    if args.every < 1 or args.iters < 1 or args.clips < 4:
        ap.error("--every and --iters must be at least 1, --clips at least 4")
    cell = {}
    try:
        for key, text in (("contrast", args.contrast), ("sigma", args.sigma),
                          ("noise", args.noise), ("frame_jitter", args.jitter)):
            values = grid_ledger.axis_values(text)
            if len(values) != 1:
                raise ValueError("one value a cell: --%s %s"
                                 % ("jitter" if key == "frame_jitter" else key, text))
            cell[key] = values[0]
        net = nets.parse_overrides(args.net)
        tv, _, _ = nets.build(args.model, width=nets.DEMO_WIDTH, **net)
    except (ValueError, TypeError, AttributeError) as e:
        ap.error(str(e))
    kinds = [(layer.top[0], layer.type) for layer in tv.layer
             if layer.type in ("ReLU", "TPU", "RNN")]
    print("%s, %s, seed %d: %s" % (args.task, args.model, args.seed, probe_tasks.cell_name(
        args.task, cell, args.seed)))
    with tempfile.TemporaryDirectory() as tmp:
        data = probe_tasks.write_task(os.path.join(tmp, "data"), args.task, n_clips=args.clips,
                                      seed=args.seed, **cell)
        r = probe_tasks.train_and_score(data, args.model, os.path.join(tmp, "run"),
                                        iters=args.iters, seed=args.seed,
                                        trace=tracer(kinds), trace_every=args.every, **net)
        shutil.rmtree(data, ignore_errors=True)
    print("held-out accuracy %.2f, last loss %.4f" % (r["accuracy"], r["loss"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
