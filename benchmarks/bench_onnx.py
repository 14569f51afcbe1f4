"""Exported nets against Caffe on the CPU: agreement of the clip probabilities and time per clip.

    .venv/bin/python benchmarks/bench_onnx.py [FOLD ...] [--clips 40] [--full-width] [--doc FILE]

FOLD: fold folders of tools/run_folds.py (default: fold 1 of each of the demo's runs under
work/runs that has finished it). Each is exported (psn.onnx_export), and the fold's held-out
clips (up to --clips) go through Caffe (pycaffe, psn.predictions.clip_probabilities) and
through onnxruntime (psn.onnx_run), 5 clips a batch, one thread each (OpenBLAS and
onnxruntime), after one warm-up batch. --full-width adds PSN at the paper's width (1.0) with
Caffe's filler weights, for the time only. --doc writes the table as markdown with the command
and the date (docs/onnx_measurements.md is its output).
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # one thread for Caffe's BLAS, as onnxruntime
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GLOG_minloglevel", "2")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import _init_paths  # noqa: F401,E402  (the checkout on sys.path)
from psn.env import ensure_caffe  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 5


def demo_folds():
    runs = os.path.join(ROOT, "work", "runs")
    if not os.path.isdir(runs):
        return []
    return [os.path.join(runs, r, "fold01") for r in sorted(os.listdir(runs))
            if os.path.exists(os.path.join(runs, r, "fold01", "DONE"))]


def fold_clips(fold, limit):
    """The fold's held-out clips as arrays (raw, sparse, cont), from its run's data folder."""
    import json

    import h5py

    from preprocessing.layout import DataFolder, RunFolder
    with open(RunFolder(os.path.dirname(fold)).record) as f:
        data = json.load(f)["data_path"]
    k = int(os.path.basename(fold)[len("fold"):])
    arrays = {n: [] for n in ("raw", "sparse", "cont")}
    for shard in DataFolder(data).fold_shards(k)["test"]:
        with h5py.File(shard, "r") as f:
            for n in arrays:
                arrays[n].append(f[n][:limit])
    return {n: np.concatenate(v)[:limit].astype(np.float32) for n, v in arrays.items()}


def timed(fn, clips):
    fn({n: a[:BATCH] for n, a in clips.items()})          # warm-up batch
    t0 = time.perf_counter()
    out = fn(clips)
    return out, (time.perf_counter() - t0) / len(clips["raw"])


def measure(caffe, deploy, weights, clips, model_bytes):
    from psn.onnx_run import OnnxModel
    from psn.predictions import clip_probabilities
    net = caffe.Net(deploy, weights, caffe.TEST)
    onnx_model = OnnxModel(model_bytes, name=deploy, threads=1)
    want, t_caffe = timed(lambda c: clip_probabilities(net, c["raw"], c["sparse"], c["cont"]),
                          clips)
    got, t_onnx = timed(lambda c: onnx_model.clip_probabilities(c["raw"], c["sparse"], c["cont"],
                                                                batch=BATCH), clips)
    return dict(diff=float(np.abs(got - want).max()), same=int((got.argmax(1) == want.argmax(1)).sum()),
                n=len(want), caffe_ms=1e3 * t_caffe, onnx_ms=1e3 * t_onnx)


def full_width(caffe, tmp, n):
    from google.protobuf import text_format

    from psn import nets
    from psn.onnx_export import export_net
    _, dp, _ = nets.build("psn", width=1.0)
    deploy = os.path.join(tmp, "psn_full.prototxt")
    with open(deploy, "w") as f:
        f.write(text_format.MessageToString(dp))
    weights = os.path.join(tmp, "psn_full.caffemodel")
    caffe.Net(deploy, caffe.TEST).save(weights)
    rng = np.random.RandomState(0)
    clips = {"raw": rng.randint(0, 256, (n, 16, 3, 112, 112)).astype(np.float32),
             "sparse": np.abs(rng.normal(0, 0.05, (n, 16, 1, 112, 112))).astype(np.float32),
             "cont": np.tile(np.r_[0, np.ones(15)], (n, 1)).astype(np.float32)}
    t0 = time.perf_counter()
    model = export_net(deploy, weights).SerializeToString()
    export_s = time.perf_counter() - t0
    return measure(caffe, deploy, weights, clips, model), export_s, len(model)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folds", nargs="*")
    ap.add_argument("--clips", type=int, default=40, help="held-out clips per fold (default 40)")
    ap.add_argument("--full-width", action="store_true",
                    help="also PSN at width 1.0 (filler weights; time only)")
    ap.add_argument("--doc", help="write the table to this markdown file")
    args = ap.parse_args(argv)
    ensure_caffe()
    import caffe

    from psn.caffe_train import done_weights
    from psn.onnx_export import export_net
    caffe.set_mode_cpu()
    folds = args.folds or demo_folds()
    if not folds and not args.full_width:
        ap.error("no fold folders given and none finished under work/runs (run tools/run_psn.sh)")
    rows = []
    head = ("| run (fold 1) | clips | max abs diff | same class | Caffe ms/clip | onnxruntime "
            "ms/clip | export s | .onnx MB |")
    print(head)
    print("|---|---|---|---|---|---|---|---|")
    for fold in folds:
        deploy, weights = os.path.join(fold, "deploy.prototxt"), done_weights(fold)
        t0 = time.perf_counter()
        model = export_net(deploy, weights).SerializeToString()
        export_s = time.perf_counter() - t0
        r = measure(caffe, deploy, weights, fold_clips(fold, args.clips), model)
        row = "| %s | %d | %.1e | %d/%d | %.1f | %.1f | %.1f | %.1f |" % (
            os.path.basename(os.path.dirname(os.path.abspath(fold))), r["n"], r["diff"], r["same"],
            r["n"], r["caffe_ms"], r["onnx_ms"], export_s, len(model) / 1e6)
        print(row, flush=True)
        rows.append(row)
    if args.full_width:
        with tempfile.TemporaryDirectory() as tmp:
            r, export_s, size = full_width(caffe, tmp, 10)
        row = "| psn at width 1.0 (filler weights, random clips) | %d | %.1e | %d/%d | %.1f | %.1f | %.1f | %.1f |" % (
            r["n"], r["diff"], r["same"], r["n"], r["caffe_ms"], r["onnx_ms"], export_s, size / 1e6)
        print(row, flush=True)
        rows.append(row)
    if args.doc:
        import platform

        import onnxruntime

        from preprocessing.atomic import write_atomic
        text = ["# Exported nets against Caffe: measurements", "",
                "Written by `%s` on %s (%s, %d cores; onnxruntime %s, one thread; Caffe's "
                "CPU build with OpenBLAS on one thread). Each fold's final weights; its "
                "held-out clips, %d a batch; the difference is on clip probabilities (the "
                "softmax averaged over the clip's 16 frames)." % (
                    "python benchmarks/bench_onnx.py " + " ".join(argv if argv is not None else
                                                                  sys.argv[1:]),
                    time.strftime("%Y-%m-%d"), platform.machine(), os.cpu_count(),
                    onnxruntime.__version__, BATCH), "", head,
                "|---|---|---|---|---|---|---|---|"] + rows
        write_atomic(args.doc, "\n".join(text) + "\n")
        print("wrote %s" % args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
