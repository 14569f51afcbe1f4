"""Why the recurrent streams stopped learning on large or strong content: measures, at
initialisation, what the order task's clips do to the recurrent layer, per grid cell.

    python benchmarks/temporal_mechanism.py [--net FIELD=VALUE ...] [--cells c,s,n;...]
                                            [--caffe] [--clips 20]

For each cell (contrast, sigma, noise) it builds the order task's clips (psn.probe_tasks),
puts them through the temporal input of psn.nets.NetConfig (centring, scale, per-clip rms
normalisation, as the net does) and the TPU's numpy reference (layers/psn_layers/tpu.py) with
the net's initial fillers at width 1/8 (H = 64), and prints:

  W_I x     std of the input drive W_I x_t (xavier: the input's rms per frame)
  W_m gain  1 / tp_ref: the TPU's W_m at init, set from the cell's clips (psn.tp_gain)
  sat h~    share of |h~| > 0.95 (tanh saturated: no gradient, memory overwritten)
  tp st/tr  mean tp at frames without change (sensor noise only) / where the blob appears,
            moves or leaves (frames 1, 8, 15)
  m st/tr   std of W_m (tp h~), the pre-activation of h, at those frames
  memory    |dL/dx| at the first segment's frames over that at the second segment's, for a
            random loss on the second segment's outputs: how much of what came before
            reaches the frames where order is decided
  (Caffe's RNN: the same with h = h~)

With --caffe, also one forward/backward of psn_temporal and alexnet_rnn's train nets per cell
(pycaffe): the global gradient norm (the solver clips at 10, scaling every step by 10/norm)
and the temporal stream's share of the per-row spread at the fusion. docs/temporal_stream.md
quotes its output.
"""
import argparse
import os
import sys
from dataclasses import replace

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _init_paths  # noqa: F401,E402  (the checkout on sys.path)

from psn import tp_gain  # noqa: E402

CELLS = [(64, 7, 2), (30, 14, 2), (64, 14, 2), (100, 14, 2), (16, 4, 1), (16, 4, 4),
         (128, 24, 1), (128, 24, 4)]
TRANSITIONS = (1, 8, 15)


def temporal_input(raw, cfg):
    """(T, N, D) as the net's temporal stream gives it to the recurrent layer."""
    x = (raw.astype(np.float64) - 128.0) * cfg.temporal_scale          # (N, T, 3, S, S)
    if cfg.temporal_centre:
        x = x - x.mean(axis=1, keepdims=True)
    x = x.reshape(x.shape[0], x.shape[1], -1)
    if cfg.temporal_norm == "rms":
        ms = (x ** 2).mean(axis=(1, 2), keepdims=True)
        eps = cfg.temporal_norm_eps * cfg.temporal_scale
        x = x * cfg.temporal_norm_rms / np.sqrt(ms + eps ** 2)
    return np.ascontiguousarray(x.transpose(1, 0, 2)).astype(np.float32)


def init_params(cfg, D, rng, tp_ref_rms=None):
    """The net's initial parameters; W_m's gain at tp_ref_rms (psn.tp_gain) where given."""
    from psn_layers import tpu
    from psn.nets import _w, tp_unit
    H = _w(cfg, cfg.hidden)
    if tp_ref_rms is not None:
        cfg = replace(cfg, tp_ref_rms=tp_ref_rms)
    x = {"type": "xavier"}
    return [tpu.fill((H, D), x, rng), np.zeros(H, np.float32), tpu.fill((H, H), x, rng),
            tpu.fill((H, H), x, rng), np.zeros(H, np.float32),
            rng.normal(0, 1.0 / (np.sqrt(H) * tp_unit(cfg)), (H, H)).astype(np.float32),
            np.zeros(H, np.float32)]


def measure(cell, cfg, mode, clips=20, seed=0):
    from psn_layers import tpu
    from psn.probe_tasks import make_clips
    contrast, sigma, noise = cell
    raw, _, _ = make_clips("order", clips, seed=seed, noise=noise, contrast=contrast,
                           sigma=sigma)
    x = temporal_input(raw, cfg)
    T, N, D = x.shape
    cont = np.ones((T, N), np.float32)
    cont[0] = 0
    ref = None
    if mode == "tpu" and tp_gain.applies(cfg):
        ref = tp_gain.from_median(cfg, float(np.median(tp_gain.frame_tp(
            tp_gain.gray_levels(raw, cfg), cfg))))
    p = init_params(cfg, D, np.random.default_rng(1), ref)
    y, c = tpu.forward(x, cont, p, mode=mode)
    static = [t for t in range(2, T - 1) if t not in TRANSITIONS]
    out = {"W_I x": float((x.reshape(T * N, D) @ p[0].T).std()),
           "sat h~": float((np.abs(c["htilde"]) > 0.95).mean())}
    if mode == "tpu":
        m = np.einsum("tnh,gh->tng", c["scaled"], p[5])
        from psn.nets import tp_unit
        out.update({"W_m gain": 1.0 / tp_unit(replace(cfg, tp_ref_rms=ref) if ref else cfg),
                    "tp st": float(c["tp"][static].mean()),
                    "tp tr": float(c["tp"][list(TRANSITIONS)].mean()),
                    "m st": float(m[static].std()), "m tr": float(m[list(TRANSITIONS)].std()),
                    "sat h": float((np.abs(c["hidden"]) > 0.95).mean())})
    dy = np.zeros_like(y)
    dy[8:] = np.random.default_rng(2).normal(size=dy[8:].shape)
    dx, _ = tpu.backward(dy, c, p)
    dx = dx.reshape(T, N, D)
    out["memory"] = float(np.sqrt((dx[1:8] ** 2).mean()) / np.sqrt((dx[8:] ** 2).mean()))
    return out


def caffe_measure(cell, overrides, workdir, clips=20):
    """{model: (global gradient norm, temporal share of the fusion spread)} at init."""
    import caffe
    from psn.net_health import fusion_shares, load_train_net
    from psn.probe_tasks import write_task
    contrast, sigma, noise = cell
    d = write_task(os.path.join(workdir, "c%g_s%g_n%g" % cell), "order", n_clips=clips,
                   seed=0, noise=noise, contrast=contrast, sigma=sigma)
    caffe.set_mode_cpu()
    caffe.set_random_seed(1)
    out = {}
    for model in ("psn_temporal", "alexnet_rnn"):
        from psn import nets
        from dataclasses import replace
        saved = nets.MODELS[model]
        nets.MODELS[model] = replace(saved, **overrides)
        try:
            net, tv, _, _ = load_train_net(model, d, 1, nets.DEMO_WIDTH, None)
        finally:
            nets.MODELS[model] = saved
        net.forward()
        net.backward()
        norm = float(np.sqrt(sum(float((b.diff.astype(np.float64) ** 2).sum())
                                 for ps in net.params.values() for b in ps)))
        shares = fusion_shares(net, tv)
        share = None if not shares else [s["spread_share"] for s in shares
                                         if s["stream"] == "temporal"][0]
        out[model] = (norm, share)
    return out


def gain_table(cfg, task="order", clips=20):
    """Markdown: per grid cell the median tp of the task's clips (in units of the clip's rms)
    and the W_m gain psn.tp_gain sets from it."""
    from psn.probe_tasks import GRID, grid_cells, make_clips
    lines = ["| noise | jitter | σ (px) | %s |" % " | ".join("c %g" % c for c in GRID["contrast"]),
             "|---|---|---|%s" % ("---|" * len(GRID["contrast"]))]
    row = []
    for cell in grid_cells():
        raw, _, _ = make_clips(task, clips, seed=0, noise=cell["noise"], contrast=cell["contrast"],
                               sigma=cell["sigma"], frame_jitter=cell["frame_jitter"])
        median = float(np.median(tp_gain.frame_tp(tp_gain.gray_levels(raw, cfg), cfg)))
        row.append("%.3f → %.3g" % (median, 1.0 / (tp_gain.from_median(cfg, median)
                                                    * cfg.temporal_norm_rms)))
        if len(row) == len(GRID["contrast"]):
            lines.append("| %g | %g | %g | %s |" % (cell["noise"], cell["frame_jitter"],
                                                   cell["sigma"], " | ".join(row)))
            row = []
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--cells", default=None, help="contrast,sigma,noise;... (default: %s)"
                    % ";".join("%g,%g,%g" % c for c in CELLS))
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--caffe", action="store_true",
                    help="also the gradient norm and fusion share from the Caffe nets")
    ap.add_argument("--out", default=os.path.join(ROOT, "work", "temporal_mechanism"))
    ap.add_argument("--gains", metavar="TASK", choices=("order", "place"),
                    help="only print, per cell of the grid, the median tp of the task's clips "
                         "and the W_m gain psn.tp_gain sets from it")
    args = ap.parse_args(argv)
    from psn.env import ensure_caffe
    ensure_caffe()
    from dataclasses import replace
    from psn.nets import DEMO_WIDTH, MODELS, parse_overrides
    try:
        overrides = parse_overrides(args.net)
        cells = CELLS if not args.cells else [tuple(float(v) for v in c.split(","))
                                              for c in args.cells.split(";")]
    except ValueError as e:
        ap.error(str(e))
    if any(len(c) != 3 for c in cells):
        ap.error("--cells: give contrast,sigma,noise triples separated by ';'")
    cfg = replace(MODELS["psn_temporal"], width=DEMO_WIDTH, **overrides)
    if cfg.temporal_norm not in ("rms", "none"):
        ap.error("temporal_norm must be rms or none, got %r" % cfg.temporal_norm)
    if args.gains:
        print(gain_table(cfg, args.gains, args.clips))
        return 0
    from psn.nets import tp_unit
    print("temporal input: %s, W_m gain %g%s" % (
        "centred, rms %g per clip (eps %g gray levels)" % (cfg.temporal_norm_rms,
                                                          cfg.temporal_norm_eps)
        if cfg.temporal_norm == "rms" else
        "x %g%s" % (cfg.temporal_scale, ", centred" * cfg.temporal_centre), 1 / tp_unit(cfg),
        " at most: the data's median tp sets it (psn.tp_gain)" * tp_gain.applies(cfg)))
    for mode in ("tpu", "rnn"):
        rows = [(cell, measure(cell, cfg, mode, args.clips)) for cell in cells]
        keys = list(rows[0][1])
        print("\n%s | contrast | sigma | noise | %s |" % ("TPU" if mode == "tpu" else "RNN",
                                                         " | ".join(keys)))
        for cell, r in rows:
            print("    | %g | %g | %g | %s |" % (cell + (" | ".join("%.3g" % r[k] for k in keys),)))
    if args.caffe:
        print("\nCaffe nets at init | contrast | sigma | noise | psn_temporal grad norm | "
              "alexnet_rnn grad norm | alexnet_rnn temporal share at the fusion |")
        for cell in cells:
            r = caffe_measure(cell, overrides, args.out, args.clips)
            print("    | %g | %g | %g | %.3g | %.3g | %.2f |" % (
                cell + (r["psn_temporal"][0], r["alexnet_rnn"][0], r["alexnet_rnn"][1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
