"""The Python side of the GPU bundle that tools/gpu_bundle.sh packs for tools/gpu_check.sh.

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

Beside the run folder (BUNDLE/run), the bundle carries what runs the project's own tools on
a GPU host that has Python but neither pycaffe nor anything installable:

    data/          the preprocessing folder (manifest, folds, shards; not its clip cache): the
                   ten leave-one-subject-out folds that gpu_check.sh trains with
                   tools/run_folds.py, K at once on the GPU, then tools/report.py
    project/       psn/, preprocessing/, prototxt/, layers/psn_layers/ and those tools
    python/caffe/  pycaffe's plain-Python caffe_pb2.py and net_spec.py, without its
                   __init__ (psn.caffe_proto loads them on their own: the host has no
                   Boost.Python, so the folds train with the caffe binary and predict through
                   onnxruntime, the path run_folds takes wherever pycaffe does not import)
    python/psn_tpu_fallback.py   the Python TPU, for the CPU-vs-GPU comparison

run/data is a link to data/shards (one copy of the shards in the bundle).

    python -m psn.gpu_bundle DATA BUNDLE [--fold 1] [--model psn]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

from preprocessing.atomic import write_atomic
from preprocessing.layout import DataFolder
from psn.engines import caffe_engines
from psn.nets import DATA_LAYERS

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
        if layer.type in DATA_LAYERS + ("Input", "Data"):
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
        if layer.type in DATA_LAYERS:
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


def _ignore(folder, names):
    return [n for n in names if n == "__pycache__" or n.endswith(".pyc") or n.startswith(".lock")
            or n in ("cache", "contact_sheet.png")]


# What the tools that gpu_check.sh runs import from the checkout (psn.gpu_bundle's doc).
PROJECT = ("psn", "preprocessing", "prototxt", os.path.join("layers", "psn_layers"),
           os.path.join("tools", "run_folds.py"), os.path.join("tools", "report.py"),
           os.path.join("tools", "_init_paths.py"))


def write_bundle(data_dir, bundle, fold=1, model="psn"):
    """BUNDLE/run (write_run), data, project and python (the module doc)."""
    from psn.caffe_proto import caffe_python_folders
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = write_run(data_dir, os.path.join(bundle, "run"), fold, model)
    # One fold's GPU memory, estimated here where pycaffe imports (psn.gpu_memory): the GPU
    # host has no pycaffe, so gpu_check.sh sizes K folds at once from this and nvidia-smi.
    from psn import gpu_memory
    from psn.config import RunConfig
    from psn.fold_setup import run_train_net
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig(data=data_dir, out=tmp, model=model, schedule="paper", gpus=(0,))
        shard = DataFolder(data_dir).fold_shards(fold)["train"][0]
        need = gpu_memory.fold_mib(run_train_net(cfg), shard, cfg.solver.get("type", "SGD"))
    info = os.path.join(run, "run.json")
    with open(info) as f:
        record = json.load(f)
    record["fold_mib_estimate"] = round(need)
    write_atomic(info, json.dumps(record, indent=1) + "\n")
    data = os.path.join(bundle, "data")
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(data_dir, data, ignore=_ignore)
    # The run folder's shards are the data folder's: one copy, linked.
    for name in os.listdir(os.path.join(run, "data")):
        if not os.path.isfile(os.path.join(data, "shards", name)):
            raise RuntimeError("%s: the run's shard %s is not in %s/shards" % (run, name, data))
    shutil.rmtree(os.path.join(run, "data"))
    os.symlink(os.path.join("..", "data", "shards"), os.path.join(run, "data"))
    for rel in PROJECT:
        src, dst = os.path.join(root, rel), os.path.join(bundle, "project", rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.isdir(src):
            shutil.copytree(src, dst, ignore=_ignore, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
    folder = next(caffe_python_folders(), None)
    if folder is None:
        raise RuntimeError("no caffe/proto/caffe_pb2.py on sys.path or under $PSN_CAFFE_HOME")
    py = os.path.join(bundle, "python")
    os.makedirs(os.path.join(py, "caffe", "proto"), exist_ok=True)
    for rel in (os.path.join("proto", "__init__.py"), os.path.join("proto", "caffe_pb2.py"),
                "net_spec.py"):
        shutil.copy2(os.path.join(folder, rel), os.path.join(py, "caffe", rel))
    shutil.copy2(os.path.join(root, "layers", "psn_layers", "tpu.py"),
                 os.path.join(py, "psn_tpu_fallback.py"))
    return bundle


def main(argv=None):
    from psn.env import ensure_caffe
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="a tools/preprocess.py run output")
    ap.add_argument("bundle", help="the bundle folder to write into")
    ap.add_argument("--fold", type=int, default=1)
    ap.add_argument("--model", default="psn")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    ensure_caffe()
    write_bundle(args.data, args.bundle, args.fold, args.model)
    print(args.bundle)


if __name__ == "__main__":
    main()
