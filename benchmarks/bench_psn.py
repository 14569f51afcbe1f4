"""`caffe time` on PSN at batch 5 x 16: per-layer times, seconds per iteration, stream split.

    .venv/bin/python benchmarks/bench_psn.py [--model psn] [--iterations 3] [--gpu 0] [--width 1.0]
                                             [--data-layer HDF5PrefetchData|HDF5Data]

Feeds the train_val net from a random shard of 10 clips through the data layer a fold trains
with (HDF5PrefetchData, psn.fold_setup.prefetch_data; --data-layer HDF5Data for Caffe's own),
so the timing covers data, both streams, fusion and loss, forward and backward, as in
training.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import _init_paths  # noqa: F401,E402  (the checkout on sys.path)
from psn.nets import HDF5_DATA, PREFETCH_DATA  # noqa: E402


def stream_of(layer):
    if re.match(r"(conv\d|pool\d|relu_conv\d|fc_spatial|relu_fc_spatial|res\d|bn_|scale_|"
                r"relu_res|pool_global|conv\d_\d|relu_conv\d_\d)", layer):
        return "spatial"
    if re.match(r"(frames_tnd|tpu|rnn|fc_temporal|relu_fc_temporal|temporal_rows)", layer):
        return "temporal"
    if re.match(r"(data|raw|sparse|cont|label)", layer):
        return "input (HDF5, time-major reorder)"
    return "fusion + head + loss"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="psn")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--gpu", type=int)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--data-layer", choices=(PREFETCH_DATA, HDF5_DATA),
                    default=PREFETCH_DATA)
    args = ap.parse_args(argv)
    from psn.env import ensure_caffe
    ensure_caffe(cuda=args.gpu is not None)
    import h5py
    import numpy as np
    from google.protobuf import text_format
    from psn import nets
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.RandomState(0)
        shard = os.path.join(tmp, "bench.h5")
        with h5py.File(shard, "w") as f:
            f["raw"] = rng.randint(0, 255, (10, 16, 3, 112, 112)).astype(np.uint8)
            f["sparse"] = rng.normal(0, 0.1, (10, 16, 1, 112, 112)).astype(np.float32)
            f["label"] = np.repeat(np.arange(10)[:, None] % 4, 16, 1).astype(np.float32)
            cont = np.ones((10, 16), np.float32)
            cont[:, 0] = 0
            f["cont"] = cont
        source = os.path.join(tmp, "list.txt")
        with open(source, "w") as f:
            f.write(shard + "\n")
        tv, _, _ = nets.build(args.model, width=args.width, train_source=source,
                              test_source=source)
        if args.data_layer == PREFETCH_DATA:
            from psn.fold_setup import prefetch_data
            prefetch_data(tv)
        model = os.path.join(tmp, "train_val.prototxt")
        with open(model, "w") as f:
            f.write(text_format.MessageToString(tv))
        cmd = [os.path.join(os.environ["PSN_CAFFE_HOME"], "bin", "caffe"), "time", "-model", model,
               "-iterations", str(args.iterations)]
        if args.gpu is not None:
            cmd += ["-gpu", str(args.gpu)]
        env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(out.stderr[-3000:])
        return 1
    fwd, bwd, total = {}, {}, None
    for line in out.stderr.splitlines():
        m = re.search(r"\]\s+(\S+)\s+(forward|backward): ([\d.]+) ms", line)
        if m:
            (fwd if m.group(2) == "forward" else bwd)[m.group(1)] = float(m.group(3))
        m = re.search(r"Average Forward-Backward: ([\d.]+) ms", line)
        if m:
            total = float(m.group(1))
    device = "GPU %d" % args.gpu if args.gpu is not None else "CPU (%d cores)" % os.cpu_count()
    print("caffe time: %s, width %.3g, batch 5 clips x 16 frames = 80 rows, %s, %d iterations, "
          "%s" % (args.model, args.width, device, args.iterations, args.data_layer))
    print("%-26s %10s %10s" % ("layer", "fwd ms", "bwd ms"))
    for name in fwd:
        print("%-26s %10.2f %10.2f" % (name, fwd[name], bwd.get(name, 0.0)))
    split = {}
    for name in fwd:
        split[stream_of(name)] = split.get(stream_of(name), 0.0) + fwd[name] + bwd.get(name, 0.0)
    s = sum(split.values())
    print("\nsplit of forward+backward time:")
    for k, v in sorted(split.items(), key=lambda kv: -kv[1]):
        print("  %-34s %9.1f ms  %5.1f %%" % (k, v, 100 * v / s))
    print("\nseconds per iteration (Average Forward-Backward): %.3f s" % (total / 1000.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
