"""Net health: does each branch of a net carry signal forward and gradient back?

    tools/inspect_net.py --model psn --data OUT [--weights W.caffemodel] [--width 0.125]
                         [--fold 1] [--clip INDEX] [--out DIR]

One forward and one backward pass of the model's train_val net (TRAIN phase, as training sees
it) on a batch of a preprocessed fold's training data, then:

* per layer: the mean and std of its top, and after each ReLU the share of exact zeros;
* per parameter blob: |grad| / |w| and the relative change one SGD step of the solver's
  base_lr would make, |dW| / |W| = lr * lr_mult * |grad + decay * w| / |w| (the first step has
  no momentum); a blob that starts at zero (biases) reports |grad| alone;
* each stream's share at the fusion: the per-row spread of its features (std over the batch's
  rows, averaged over features: what differs from input to input) and its mean magnitude;
* tp over the 16 frames of one clip (Eq. 7, in gray levels and in the net's input units),
  plotted in the style of the paper's Fig. 5.

Results go to stdout, OUT/health.json and OUT/tp_<clip>.png. Bad input (a missing model,
weights that do not fit the net, a folder that is not a preprocessing output) ends with one
line naming the file and the fix (exit 2): Caffe would otherwise abort with a stack trace.
"""
from __future__ import annotations

import json
import os

import numpy as np

from preprocessing.atomic import write_atomic
from preprocessing.sampling import SAMPLE_INDICES_1BASED
from psn.nets import DEMO_WIDTH

__all__ = ["HealthError", "load_train_net", "check_weights", "layer_stats", "param_stats",
           "fusion_shares", "clip_tp", "tp_figure", "inspect", "main"]

FRAME_NUMBERS = SAMPLE_INDICES_1BASED   # the 16 sampled frames, for tp's x axis


class HealthError(Exception):
    """Bad input: one line naming the file and the fix."""


# ------------------------------------------------------------------ inputs

def check_data(data_dir, fold):
    """(train list path, test list path) of a preprocessing output, or HealthError."""
    from preprocessing.errors import InputError
    from preprocessing.layout import DataFolder
    from psn.config import RunError
    folder = DataFolder(data_dir)
    try:
        folder.check()
        if not os.path.isdir(folder.fold_dir(fold)):
            raise RunError("%s not found: fold %d is not in %s (pick --fold from its folds/ "
                           "folder, or rerun tools/preprocess.py run)"
                           % (folder.fold_dir(fold), fold, data_dir))
        # Caffe reads the lists' lines from its working directory: absolute copies, kept
        # until the process ends.
        import atexit
        import shutil
        import tempfile
        tmp = tempfile.mkdtemp(prefix="psn-health-lists-")
        atexit.register(shutil.rmtree, tmp, True)
        lists = folder.caffe_lists(fold, tmp)
    except (RunError, InputError) as e:
        raise HealthError(str(e)) from None
    return lists["train"][0], lists["test"][0]


def _net_param(model, width, train_list, test_list):
    """The train_val NetParameter of a model name of psn.nets, or of a prototxt file."""
    from google.protobuf import text_format
    from google.protobuf.text_format import ParseError

    from psn.caffe_proto import caffe_pb2
    from psn import nets

    if model in nets.MODELS and nets.reads_flow(nets.MODELS[model]):
        train_list, test_list = (_flow_list(path) for path in (train_list, test_list))
    if model in nets.MODELS:
        tv, _, solver = nets.build(model, width=width, train_source=train_list,
                                   test_source=test_list)
        from dataclasses import replace
        from psn import tp_gain
        with open(train_list) as f:
            shards = [line.strip() for line in f if line.strip()]
        tp_gain.set_from_data(tv, replace(nets.MODELS[model], width=width), shards)
        return tv, solver.base_lr, solver.weight_decay
    if not os.path.isfile(model):
        raise HealthError("model %s not found: give a model of prototxt/ (%s) or the path of a "
                          "train_val.prototxt" % (model, ", ".join(sorted(nets.MODELS))))
    tv = caffe_pb2.NetParameter()
    try:
        with open(model) as f:
            text_format.Merge(f.read(), tv)
    except (ParseError, UnicodeDecodeError) as e:
        raise HealthError("%s is not a Caffe net prototxt (%s): fix it or regenerate it with "
                          "python -m psn.nets" % (model, str(e).splitlines()[0]))
    data = [l for l in tv.layer if l.type in nets.DATA_LAYERS]
    if not data:
        raise HealthError("%s has no HDF5Data layer: give a train_val.prototxt, not a deploy "
                          "net" % model)
    for layer in data:
        test = any(r.phase == caffe_pb2.TEST for r in layer.include)
        layer.hdf5_data_param.source = test_list if test else train_list
    base_lr, decay = nets.SOLVER_DEFAULTS["base_lr"], nets.SOLVER_DEFAULTS["weight_decay"]
    solver = os.path.join(os.path.dirname(model), "solver.prototxt")
    if os.path.isfile(solver):
        sp = caffe_pb2.SolverParameter()
        try:
            with open(solver) as f:
                text_format.Merge(f.read(), sp)
            base_lr, decay = sp.base_lr, sp.weight_decay
        except ParseError:
            pass
    return tv, base_lr, decay


def _flow_list(path):
    """A copy of a list of group shards naming their flow shards instead (the flow nets'
    input); HealthError naming `--flow` when the data folder has none."""
    from preprocessing.layout import DataFolder
    with open(path) as f:
        shards = [line.strip() for line in f if line.strip()]
    flows = list(dict.fromkeys(DataFolder.flow_shard_of(s) for s in shards))
    missing = [s for s in flows if not os.path.isfile(s)]
    if missing:
        raise HealthError("%s not found: a flow net reads the optical flow; run "
                          "tools/preprocess.py run on the data folder again with --flow" % missing[0])
    out = path[:-len(".txt")] + "_flow.txt"
    write_atomic(out, "".join(s + "\n" for s in flows))
    return out


def check_weights(net, weights):
    """HealthError unless every layer of the .caffemodel that the net has fits it."""
    from psn.caffe_proto import caffe_pb2
    if not os.path.isfile(weights):
        raise HealthError("weights %s not found: give a .caffemodel a run wrote (foldKK/"
                          "snapshots/*.caffemodel)" % weights)
    param = caffe_pb2.NetParameter()
    try:
        with open(weights, "rb") as f:
            param.ParseFromString(f.read())
    except Exception as e:  # protobuf raises DecodeError and others
        raise HealthError("%s is not a .caffemodel (%s): give the weights a run wrote"
                          % (weights, e))
    layers = list(param.layer) or list(param.layers)
    matched = 0
    for layer in layers:
        if layer.name not in net.params:
            continue
        ours = net.params[layer.name]
        if len(layer.blobs) != len(ours):
            raise HealthError("%s: layer %s has %d blobs, the net %d: these weights are for "
                              "another model or mode" % (weights, layer.name, len(layer.blobs),
                                                         len(ours)))
        for i, blob in enumerate(layer.blobs):
            shape = tuple(blob.shape.dim) if blob.HasField("shape") else tuple(
                d for d in (blob.num, blob.channels, blob.height, blob.width))
            if int(np.prod(shape)) != ours[i].data.size:
                raise HealthError("%s: layer %s blob %d is %s, the net's is %s: these weights "
                                  "are for another model or --width" % (
                                      weights, layer.name, i, "x".join(map(str, shape)),
                                      "x".join(map(str, ours[i].data.shape))))
        matched += 1
    if matched == 0:
        raise HealthError("%s shares no layer with the net: these weights are for another "
                          "model" % weights)
    have = {l.name for l in layers}
    missing = [name for name in net.params if name not in have]
    if missing:
        # Caffe would leave these layers at their initial values without a word.
        raise HealthError("%s has no weights for layer%s %s of the net: these weights are for "
                          "another model" % (weights, "s" if len(missing) > 1 else "",
                                             ", ".join(missing)))


def load_train_net(model, data_dir, fold=1, width=DEMO_WIDTH, weights=None):
    """(caffe.Net in TRAIN phase, NetParameter, base_lr, weight_decay)."""
    import tempfile

    import caffe
    from google.protobuf import text_format

    train_list, test_list = check_data(data_dir, fold)
    tv, base_lr, decay = _net_param(model, width, train_list, test_list)
    # Accuracy has no Backward (Caffe aborts if asked): it reports, it does not train.
    keep = [l for l in tv.layer if l.type != "Accuracy"]
    del tv.layer[:]
    tv.layer.extend(keep)
    from psn.engines import for_cpu    # it runs on the CPU (set_mode_cpu below)
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(text_format.MessageToString(for_cpu(tv)))
    try:
        net = caffe.Net(f.name, caffe.TRAIN)
    finally:
        os.unlink(f.name)
    if weights:
        check_weights(net, weights)
        net.copy_from(weights)
    return net, tv, base_lr, decay


# ------------------------------------------------------------------ measures

def layer_stats(net, tv):
    """[{layer, type, top, shape, mean, std, zeros}] in net order; zeros only after ReLU."""
    types = {l.name: l.type for l in tv.layer}
    out = []
    for name in net._layer_names:
        tops = net.top_names.get(name, [])
        for top in tops:
            a = net.blobs[top].data
            if a.size == 0:
                continue
            row = {"layer": name, "type": types.get(name, "?"), "top": top,
                   "shape": list(a.shape), "mean": float(a.mean()), "std": float(a.std())}
            if types.get(name) == "ReLU":
                row["zeros"] = float((a == 0).mean())
            out.append(row)
    return out


def param_stats(net, tv, base_lr, decay):
    """[{layer, blob, shape, w_norm, grad_norm, grad_over_w, step_over_w}] per parameter blob."""
    # ParamSpec's lr_mult and decay_mult default to 1, also for blobs without a ParamSpec.
    specs = {l.name: list(l.param) for l in tv.layer}
    out = []
    for name, blobs in net.params.items():
        for i, b in enumerate(blobs):
            spec = specs.get(name, [])
            lr_mult = spec[i].lr_mult if i < len(spec) else 1.0
            decay_mult = spec[i].decay_mult if i < len(spec) else 1.0
            w = float(np.linalg.norm(b.data))
            g = float(np.linalg.norm(b.diff))
            step = base_lr * lr_mult * float(np.linalg.norm(b.diff + decay * decay_mult * b.data))
            out.append({"layer": name, "blob": i, "shape": list(b.data.shape), "w_norm": w,
                        "grad_norm": g, "grad_over_w": g / w if w > 0 else None,
                        "step_over_w": step / w if w > 0 else None, "lr_mult": lr_mult})
    return out


def _spread(a):
    a = a.reshape(a.shape[0], -1)
    return float(a.std(axis=0).mean()), float(np.abs(a).mean())


def fusion_shares(net, tv):
    """Per stream at the fusion layer: per-row spread, mean |F|, |dL/dF|, and spread share."""
    fusion = [l for l in tv.layer if l.name == "fusion"]
    if not fusion:
        return None
    out = []
    for bottom in fusion[0].bottom:
        spread, mag = _spread(net.blobs[bottom].data)
        out.append({"stream": "spatial" if "spatial" in bottom else "temporal", "blob": bottom,
                    "row_spread": spread, "mean_abs": mag,
                    "grad_mean_abs": float(np.abs(net.blobs[bottom].diff).mean())})
    total = sum(s["row_spread"] for s in out)
    for s in out:
        s["spread_share"] = s["row_spread"] / total if total > 0 else None
    return out


def _tpu_layer(tv):
    for l in tv.layer:
        if l.type == "TPU" or (l.type == "Python" and l.python_param.module == "psn_layers.tpu"):
            return l
    return None


def _temporal_scale(tv):
    for l in tv.layer:
        if l.name == "temporal_in":
            return l.power_param.scale
    return 1.0


def clip_tp(data_dir, fold, clip=None, first_tp="zero"):
    """(manifest row of the clip, tp in gray levels (16,)) for a clip of the fold's test shard:
    `clip` is a manifest index or clip name; None takes the test shard's first clip."""
    import h5py

    from psn_layers.tpu import temporal_perception
    from preprocessing.layout import DataFolder

    _, test_list = check_data(data_dir, fold)
    rows = DataFolder(data_dir).manifest_rows()
    with open(test_list) as f:
        shards = [line.strip() for line in f if line.strip()]
    for shard in shards:
        with h5py.File(shard, "r") as h:
            index = h["clip_index"][:]
            if clip is None:
                k = 0
            else:
                wanted = [i for i, r in enumerate(rows)
                          if str(clip) in (r["index"], r["clip"])]
                hits = [k for k, i in enumerate(index) if i in wanted]
                if not hits:
                    continue
                k = hits[0]
            raw = h["raw"][k].astype(np.float64)       # (16, 3, 112, 112) gray levels
        tp = temporal_perception(raw[:, None], np.r_[0, np.ones(raw.shape[0] - 1)][:, None],
                                 first_tp)[:, 0]
        return rows[int(index[k])], tp
    raise HealthError("clip %s is not in fold %d's test shard of %s: pick --clip from its "
                      "manifest.csv (index or clip name)" % (clip, fold, data_dir))


def tp_figure(tp, scale, path, title):
    """tp against the sampled frame numbers (Fig. 5's layout)."""
    from psn.plots import plt, save
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    ax.plot(FRAME_NUMBERS[:len(tp)], tp, "o-", color="#C44E52")
    ax.set_xlabel("frame (of the 150 after normalisation)")
    ax.set_ylabel("tp = std(x_t - x_{t-1}), gray levels")
    if scale != 1.0:
        sec = ax.secondary_yaxis("right", functions=(lambda v: v * scale, lambda v: v / scale))
        sec.set_ylabel("in the net's input units (x %.4g)" % scale)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return save(fig, path)


# ------------------------------------------------------------------ report

def inspect(model, data_dir, fold=1, width=DEMO_WIDTH, weights=None, clip=None, out=None, seed=0):
    """Run the checks; returns the report dict (and writes OUT/health.json, the tp figure)."""
    import caffe
    caffe.set_mode_cpu()
    caffe.set_random_seed(seed)
    net, tv, base_lr, decay = load_train_net(model, data_dir, fold, width, weights)
    net.forward()
    for b in net.params.values():
        for blob in b:
            blob.diff[...] = 0
    net.backward()
    tpu = _tpu_layer(tv)
    first = "zero"
    if tpu is not None and tpu.type == "TPU":
        first = ["zero", "one", "next"][tpu.tpu_param.first_tp]
    from psn import nets
    flow_net = model in nets.MODELS and nets.reads_flow(nets.MODELS[model])
    # A flow net sees no frames, so there is no tp to show.
    row, tp = (None, None) if flow_net else clip_tp(data_dir, fold, clip, first)
    report = {"model": model, "weights": weights, "data": os.path.abspath(data_dir),
              "fold": fold, "width": width, "base_lr": base_lr,
              "loss": float(net.blobs["loss"].data) if "loss" in net.blobs else None,
              "layers": layer_stats(net, tv), "params": param_stats(net, tv, base_lr, decay),
              "fusion": fusion_shares(net, tv),
              "tp": None if flow_net else {
                  "clip": row["clip"], "index": int(row["index"]), "first_tp": first,
                  "gray_levels": [float(v) for v in tp], "net_scale": _temporal_scale(tv),
                  "frames": list(FRAME_NUMBERS)}}
    if out and flow_net:
        os.makedirs(out, exist_ok=True)
        write_atomic(os.path.join(out, "health.json"), json.dumps(report, indent=1) + "\n")
    elif out:
        os.makedirs(out, exist_ok=True)
        write_atomic(os.path.join(out, "health.json"), json.dumps(report, indent=1) + "\n")
        name = "tp_%s.png" % "".join(c if c.isalnum() or c in "-_" else "_" for c in row["clip"])
        report["tp"]["figure"] = tp_figure(
            tp, report["tp"]["net_scale"], os.path.join(out, name),
            "tp over the sampled frames of %s (cf. Fig. 5)" % row["clip"])
    return report


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "%.3g" % v if v == v else "nan"
    return str(v)


def render(report):
    """The report as text tables."""
    lines = ["model %s, fold %d, width %g%s; loss %s" % (
        report["model"], report["fold"], report["width"],
        ", weights " + report["weights"] if report["weights"] else " (initial weights)",
        _fmt(report["loss"])), "", "activations (top of each layer):",
        "  %-22s %-14s %-18s %11s %11s %7s" % ("layer", "type", "shape", "mean", "std", "zeros")]
    for r in report["layers"]:
        if r["type"] in ("Slice", "Concat", "Reshape", "Silence", "Split") and \
                r["layer"] not in ("fusion",):
            continue
        lines.append("  %-22s %-14s %-18s %11s %11s %7s" % (
            r["layer"], r["type"], "x".join(map(str, r["shape"])), _fmt(r["mean"]),
            _fmt(r["std"]), "%.1f%%" % (100 * r["zeros"]) if "zeros" in r else ""))
    lines += ["", "parameters (one SGD step at base_lr %g):" % report["base_lr"],
              "  %-16s %4s %-14s %11s %11s %11s" % ("layer", "blob", "shape", "|w|",
                                                     "|grad|/|w|", "|dW|/|W|")]
    for p in report["params"]:
        lines.append("  %-16s %4d %-14s %11s %11s %11s" % (
            p["layer"], p["blob"], "x".join(map(str, p["shape"])), _fmt(p["w_norm"]),
            _fmt(p["grad_over_w"]) if p["grad_over_w"] is not None else
            "|g| " + _fmt(p["grad_norm"]), _fmt(p["step_over_w"])))
    if report["fusion"]:
        lines += ["", "streams at the fusion (per-row spread = std over rows, mean over features):"]
        for s in report["fusion"]:
            lines.append("  %-9s %-16s spread %10s  share %5.1f%%  mean|F| %10s  mean|dL/dF| %s"
                         % (s["stream"], s["blob"], _fmt(s["row_spread"]),
                            100 * (s["spread_share"] or 0), _fmt(s["mean_abs"]),
                            _fmt(s["grad_mean_abs"])))
        if len(report["fusion"]) == 2:
            sp = {s["stream"]: s["row_spread"] for s in report["fusion"]}
            if sp.get("spatial"):
                lines.append("  temporal / spatial spread: %s" % _fmt(sp["temporal"] / sp["spatial"]))
    tp = report["tp"]
    if tp is None:
        return "\n".join(lines)
    lines += ["", "tp of clip %s (first_tp %s), gray levels: %s" % (
        tp["clip"], tp["first_tp"], " ".join("%.2f" % v for v in tp["gray_levels"]))]
    if tp.get("figure"):
        lines.append("  figure: %s" % tp["figure"])
    return "\n".join(lines)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="inspect_net.py", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True,
                    help="a model of prototxt/ (psn, psn_temporal, ...) or a train_val.prototxt")
    ap.add_argument("--data", required=True, help="the --out folder of tools/preprocess.py run")
    ap.add_argument("--weights", help="a .caffemodel (default: the initial weights)")
    ap.add_argument("--fold", type=int, default=1)
    ap.add_argument("--width", type=float, default=DEMO_WIDTH,
                    help="channel multiplier for a model name (default %g, the demo's)" % DEMO_WIDTH)
    ap.add_argument("--clip", help="clip for the tp plot: manifest index or clip name "
                                   "(default: the first of the fold's test shard)")
    ap.add_argument("--out", default="health", help="folder for health.json and the tp figure")
    ap.add_argument("--seed", type=int, default=0, help="Caffe's random seed (fillers, dropout)")
    args = ap.parse_args(argv)
    from preprocessing.errors import fail, missing_caffe_line
    try:
        import caffe  # noqa: F401  (checked before any file is read)
    except ImportError as e:
        return fail("inspect_net: ", missing_caffe_line(e))
    try:
        report = inspect(args.model, args.data, args.fold, args.width, args.weights, args.clip,
                         args.out, args.seed)
    except (HealthError, OSError) as e:
        return fail("inspect_net: ", e)
    print(render(report))
    print("\nwrote %s" % os.path.join(args.out, "health.json"))
    return 0
