"""The run folder that tools/gpu_bundle.sh packs for tools/gpu_check.sh.

One fold of a preprocessing folder, written as run_folds writes it (psn.fold_setup.prepare_fold:
the same nets, the paper's schedule, GPU mode) and then made portable: the shards copied in,
every path relative to the folder, since the bundle is unpacked wherever the GPU host puts
it. Beside it:

    train_val_cpu.prototxt  the same net with Caffe's own engines: a cuDNN build picks cuDNN
                   for convolution, pooling, ReLU, ... even in CPU mode, which then fails
                   without a GPU (gpu_check.sh --cpu runs this one)
    streams.json   each layer of train_val.prototxt -> data | spatial | temporal | head |
                   other, so `caffe time`'s per-layer milliseconds add up per stream
    tpu.prototxt   the TPU alone at PSN's size (T x N x D = 16 x 5 x 3*112*112, H 512), with
                   force_backward, for `caffe time` beside the Python fallback's numpy code
    run.json       what was packed (model, width, schedule, fold, clips)

    python -m psn.gpu_bundle DATA OUT [--fold 1] [--model psn]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

from preprocessing.atomic import write_atomic
from psn.engines import caffe_engines

# bench_tpu.py's net: the TPU layer alone on Input blobs.
TPU_NET = """name: "tpu_alone"
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: {T} dim: {N} dim: {D} }} }} }}
layer {{ name: "cont" type: "Input" top: "cont" input_param {{ shape {{ dim: {T} dim: {N} }} }} }}
layer {{ name: "tpu" type: "TPU" bottom: "x" bottom: "cont" top: "y"
  recurrent_param {{ num_output: {H} weight_filler {{ type: "gaussian" std: 0.01 }}
                    bias_filler {{ type: "constant" }} }} }}
force_backward: true
"""


def layer_streams(net):
    """{layer name: stream} of a NetParameter: a layer fed only from the E frames' blob is
    spatial, only from the raw frames' blob temporal, from both (the fusion and all after it)
    head; data layers are data, the rest (label and cont bookkeeping) other."""
    origin = {}
    streams = {}
    for layer in net.layer:
        if layer.type in ("HDF5Data", "Input", "Data"):
            streams[layer.name] = "data"
            for top in layer.top:
                origin[top] = {"sparse": {"spatial"}, "raw": {"temporal"}}.get(top, set())
            continue
        seen = set().union(*(origin.get(b, set()) for b in layer.bottom))
        if {"spatial", "temporal"} <= seen or "head" in seen:
            seen = {"head"}
        streams[layer.name] = next(iter(seen)) if seen else "other"
        for top in layer.top:
            origin[top] = seen
    return streams


def write_run(data_dir, out_dir, fold=1, model="psn"):
    """Write the portable run folder OUT for one fold of DATA (see the module doc)."""
    from psn.caffe_proto import caffe_pb2
    from google.protobuf import text_format
    from psn import nets
    from psn.config import CROP, RunConfig, T
    from psn.fold_setup import count_clips, prepare_fold
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig(data=data_dir, out=tmp, model=model, schedule="paper", gpus=(0,))
        fold_dir = os.path.join(tmp, "fold")
        os.makedirs(fold_dir)
        solver = prepare_fold(cfg, fold, fold_dir)
        lists = {}
        for split in ("train", "test"):
            with open(os.path.join(fold_dir, split + ".txt")) as f:
                shards = [line.strip() for line in f if line.strip()]
            os.makedirs(os.path.join(out_dir, "data"), exist_ok=True)
            rel = []
            for s in shards:
                shutil.copy2(s, os.path.join(out_dir, "data", os.path.basename(s)))
                rel.append("data/" + os.path.basename(s))
            write_atomic(os.path.join(out_dir, split + ".txt"), "".join(r + "\n" for r in rel))
            lists[split] = shards
        tv = caffe_pb2.NetParameter()
        with open(os.path.join(fold_dir, "train_val.prototxt")) as f:
            text_format.Merge(f.read(), tv)
    for layer in tv.layer:
        if layer.type == "HDF5Data":
            train = layer.include[0].phase == caffe_pb2.TRAIN
            layer.hdf5_data_param.source = "train.txt" if train else "test.txt"
    solver.net = "train_val.prototxt"
    solver.snapshot_prefix = "snapshots/" + model
    solver.solver_mode = caffe_pb2.SolverParameter.GPU
    write_atomic(os.path.join(out_dir, "train_val.prototxt"), text_format.MessageToString(tv))
    write_atomic(os.path.join(out_dir, "train_val_cpu.prototxt"),
                 text_format.MessageToString(caffe_engines(tv)))
    write_atomic(os.path.join(out_dir, "solver.prototxt"), text_format.MessageToString(solver))
    write_atomic(os.path.join(out_dir, "streams.json"),
                 json.dumps(layer_streams(tv), indent=1) + "\n")
    # PSN's TPU: T frames of N clips, each a 3-channel CROP x CROP frame, H hidden units.
    tpu = dict(T=T, N=cfg.batch, D=3 * CROP * CROP, H=nets.MODELS[model].hidden)
    write_atomic(os.path.join(out_dir, "tpu.prototxt"), TPU_NET.format(**tpu))
    write_atomic(os.path.join(out_dir, "run.json"), json.dumps(dict(
        model=model, width=1.0, schedule="paper", fold=fold, batch=cfg.batch,
        max_iter=solver.max_iter, test_iter=solver.test_iter[0],
        train_clips=count_clips(lists["train"]), test_clips=count_clips(lists["test"]),
        tpu=tpu), indent=1) + "\n")
    return out_dir


def main(argv=None):
    from psn.env import ensure_caffe
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="a tools/preprocess.py run output")
    ap.add_argument("out", help="the run folder to write")
    ap.add_argument("--fold", type=int, default=1)
    ap.add_argument("--model", default="psn")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    ensure_caffe()
    write_run(args.data, args.out, args.fold, args.model)
    print(args.out)


if __name__ == "__main__":
    main()
