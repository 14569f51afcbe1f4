"""TPU forward+backward at the paper's size: C++ layer vs Python fallback vs Caffe's RNN.

T=16, N=5, D=37632 (3x112x112), H=512, as in PSN's temporal stream. Prints
milliseconds per forward+backward and the ratios. Run after tools/build_caffe.sh:

    .venv/bin/python benchmarks/bench_tpu.py [--iters 5] [--gpu 0]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NET = """
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: {T} dim: {N} dim: {D} }} }} }}
layer {{ name: "cont" type: "Input" top: "cont" input_param {{ shape {{ dim: {T} dim: {N} }} }} }}
layer {{ name: "rec" bottom: "x" bottom: "cont" top: "y" {body} }}
force_backward: true
"""
FILLERS = 'weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" }'
VARIANTS = [
    ("C++ TPU (mode tpu)", 'type: "TPU" recurrent_param { num_output: %(H)d %(F)s }'),
    ("C++ TPU (mode rnn)", 'type: "TPU" recurrent_param { num_output: %(H)d %(F)s } '
                           'tpu_param { mode: RNN }'),
    ("Caffe RNN", 'type: "RNN" recurrent_param { num_output: %(H)d %(F)s }'),
    ("Python TPU (mode tpu)", 'type: "Python" python_param { module: "psn_layers.tpu" '
                              'layer: "TPULayer" param_str: \'{"num_output": %(H)d, '
                              '"weight_filler": {"type": "gaussian", "std": 0.01}}\' }'),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--gpu", type=int, default=None, help="GPU id (default: CPU)")
    ap.add_argument("-T", type=int, default=16)
    ap.add_argument("-N", type=int, default=5)
    ap.add_argument("-D", type=int, default=37632)
    ap.add_argument("-H", type=int, default=512)
    args = ap.parse_args(argv)
    env = subprocess.run([os.path.join(ROOT, "tools", "build_caffe.sh"), "--print-env"]
                         + (["--cuda"] if args.gpu is not None else []),
                         capture_output=True, text=True, check=True).stdout
    for line in env.splitlines():
        key, _, value = line[len("export "):].partition("=")
        value = os.path.expandvars(value.strip('"'))
        os.environ[key] = value
        if key == "PYTHONPATH":
            sys.path[:0] = value.split(":")
    os.environ.setdefault("GLOG_minloglevel", "2")
    import numpy as np
    import caffe
    if args.gpu is None:
        caffe.set_mode_cpu()
        device = "CPU (%d cores)" % os.cpu_count()
    else:
        caffe.set_device(args.gpu)
        caffe.set_mode_gpu()
        device = "GPU %d" % args.gpu
    print("TPU benchmark: T=%d N=%d D=%d H=%d, forward+backward, %d timed iterations, %s"
          % (args.T, args.N, args.D, args.H, args.iters, device))
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (args.T, args.N, args.D)).astype(np.float32)
    cont = np.ones((args.T, args.N), np.float32)
    cont[0] = 0
    dy = rng.normal(size=(args.T, args.N, args.H)).astype(np.float32)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, body in VARIANTS:
            path = os.path.join(tmp, "net.prototxt")
            with open(path, "w") as f:
                f.write(NET.format(T=args.T, N=args.N, D=args.D,
                                   body=body % {"H": args.H, "F": FILLERS}))
            net = caffe.Net(path, caffe.TRAIN)
            net.blobs["x"].data[...] = x
            net.blobs["cont"].data[...] = cont
            times = []
            for i in range(args.iters + 1):  # the first is a warm-up
                t0 = time.perf_counter()
                net.forward()
                net.blobs["y"].diff[...] = dy
                net.backward()
                times.append(time.perf_counter() - t0)
            results[name] = float(np.median(times[1:])) * 1000
            print("  %-24s %9.1f ms" % (name, results[name]))
            del net
    cpp, py = results["C++ TPU (mode tpu)"], results["Python TPU (mode tpu)"]
    rnn_mode, rnn = results["C++ TPU (mode rnn)"], results["Caffe RNN"]
    print("  C++ TPU vs Python fallback: %.2fx faster (target >= 20x)" % (py / cpp))
    print("  C++ TPU mode rnn vs Caffe RNN: %.2fx the time (target <= 1.5x)" % (rnn_mode / rnn))
    return 0


if __name__ == "__main__":
    sys.exit(main())
