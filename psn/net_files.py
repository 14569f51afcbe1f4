"""A deploy net and its weights, checked before pycaffe loads them.

pycaffe ends the whole process (SIGABRT, glog's stack trace, exit 134) on a prototxt it cannot
parse or build, on weights cut short, and on weights of another net ("Cannot copy param 0
weights from layer ...; shape mismatch"). run_folds predicts every fold in one process, so one
edited fold would stop the others. check_net finds these first and raises RunError, one line
naming the file and the fix:

    the prototxt       parsed with protobuf's text_format (the line and column of the fault)
    the net it builds  built by Caffe in a child process (the cause line of its abort); that
                       child also reports the shape of every parameter blob
    the weights        read with caffe_pb2.NetParameter (a file cut short does not parse, or
                       holds fewer values than its shapes), each blob compared with the net's
"""
import importlib.util
import json
import math
import os
import re
import subprocess
import sys

from psn.config import RunError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

__all__ = ["read_weights", "weight_shapes", "deploy_shapes", "check_net", "trained_with"]


def blob_shape(blob):
    """A BlobProto's shape as Caffe's Blob::FromProto reads it: the legacy 4-D fields where
    any is set and there is no shape, else shape.dim ([] for a scalar)."""
    legacy = [int(blob.num), int(blob.channels), int(blob.height), int(blob.width)]
    if not blob.HasField("shape") and any(legacy):
        return legacy
    return [int(d) for d in blob.shape.dim]


def read_weights(path):
    """(NetParameter, None) for a binary .caffemodel whose every blob is whole, else
    (None, why not): 'unreadable (...)', 'empty: ...' or 'cut short: ...'."""
    from google.protobuf.message import DecodeError
    from psn.caffe_proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    try:
        with open(path, "rb") as f:
            net.ParseFromString(f.read())
    except (OSError, DecodeError) as e:
        return None, ("unreadable (%s)" % e.strerror if isinstance(e, OSError) else
                      "unreadable (%s: cut short, or not a .caffemodel)" % e)
    n = 0
    for layer in list(net.layer) + list(net.layers):
        for i, blob in enumerate(layer.blobs):
            n += 1
            want = math.prod(blob_shape(blob))
            have = len(blob.data) or len(blob.double_data)
            if have != want:
                return None, ("cut short: layer %s param %d holds %d of its %d values"
                              % (layer.name, i, have, want))
    if not n:
        return None, "empty: it holds no parameters (cut short)"
    return net, None


def weight_shapes(path):
    """({layer: [shape, ...]}, None) of a .caffemodel (binary, or Caffe's HDF5 .h5), or
    (None, why it cannot be loaded)."""
    if path.endswith(".h5"):
        import h5py
        try:
            with h5py.File(path, "r") as f:
                data = f["data"]
                return {name: [list(data[name][str(i)].shape) for i in range(len(data[name]))]
                        for name in data}, None
        except (OSError, KeyError) as e:
            return None, "unreadable (%s)" % e
    net, why = read_weights(path)
    if net is None:
        return None, why
    return {layer.name: [blob_shape(b) for b in layer.blobs]
            for layer in list(net.layer) + list(net.layers) if layer.blobs}, None


# Run in a child: a net Caffe cannot build aborts that process, not this one.
_SHAPES = """
import json, sys
import caffe
from psn.engines import cpu_net_file   # on a cuDNN build's CPU, not cuDNN's layers
caffe.set_mode_cpu()
with cpu_net_file(sys.argv[1]) as path:
    net = caffe.Net(path, caffe.TEST)
print("PSN_SHAPES " + json.dumps([[k, [list(b.data.shape) for b in v]] for k, v in net.params.items()]))
"""


def _cause(text):
    """The line that says why a child Caffe died: its last glog F/E line without the prefix,
    else the last line that is not part of a stack trace."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    glog = [line for line in lines if re.match(r"[FE]\d{4}", line)]
    if glog:
        return glog[-1].split("] ", 1)[-1]
    rest = [line for line in lines if not line.startswith(("@ 0x", "***"))]
    return rest[-1] if rest else "no message"


def deploy_shapes(deploy, fix):
    """{layer: [shape, ...]} of the parameter blobs of the net deploy.prototxt describes, or
    RunError (naming the file, why, and `fix`) when Caffe cannot read or build it."""
    from google.protobuf import text_format
    from psn.caffe_proto import caffe_pb2
    try:
        with open(deploy) as f:
            text_format.Merge(f.read(), caffe_pb2.NetParameter())
    except OSError as e:
        raise RunError("%s: %s: %s" % (deploy, e.strerror, fix))
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise RunError("%s:%s: Caffe cannot parse it: %s" % (deploy, e, fix))
    caffe_python = os.path.dirname(os.path.dirname(importlib.util.find_spec("caffe").origin))
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="2",
               PYTHONPATH=os.pathsep.join(filter(None, [caffe_python, os.path.join(ROOT, "layers"),
                                                        ROOT, os.environ.get("PYTHONPATH")])))
    try:
        out = subprocess.run([sys.executable, "-c", _SHAPES, deploy], capture_output=True,
                             text=True, env=env, timeout=600)
    except subprocess.TimeoutExpired:
        raise RunError("%s: Caffe took over 10 minutes to build this net: %s" % (deploy, fix))
    for line in out.stdout.splitlines():
        if line.startswith("PSN_SHAPES "):
            return dict((k, v) for k, v in json.loads(line[len("PSN_SHAPES "):]))
    raise RunError("%s: Caffe cannot build this net (%s): %s"
                   % (deploy, _cause(out.stderr + out.stdout), fix))


def trained_with(weights, model=None):
    """'--model psn --width 0.125 (RUN/run.json)' for weights inside a run folder of
    run_folds (a fold folder given as model, or RUN/foldKK/snapshots/X.caffemodel), or None."""
    places = [os.path.dirname(os.path.abspath(model))] if model and os.path.isdir(model) else []
    d = os.path.dirname(os.path.abspath(weights))
    for _ in range(3):
        places.append(d)
        d = os.path.dirname(d)
    from preprocessing.layout import RunFolder
    for place in places:
        path = RunFolder(place).record
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or "width" not in record:
            continue
        flags = "--model %s --width %s" % (record.get("model"), record.get("width"))
        for key, value in sorted((record.get("net_overrides") or {}).items()):
            flags += " --net %s=%s" % (key, value)
        return "%s (%s)" % (flags, path)
    return None


def _legacy_equal(have, want):
    """Caffe's Blob::ShapeEquals for a legacy 4-D blob: num, channels, height, width."""
    return len(want) <= 4 and [1] * (4 - len(want)) + list(want) == list(have)


def check_net(deploy, weights, deploy_fix, weights_fix, mismatch_fix, model=None, net_shapes=None):
    """RunError unless pycaffe can load `weights` into the net `deploy` describes (without
    aborting the process, and with every parameter of the net taken from the weights).
    The fixes are what the message tells the user to do about each kind of fault; model
    (a fold folder) helps to find the run that trained the weights. net_shapes: deploy's
    deploy_shapes, when the caller checks many weights against one net."""
    if not os.path.exists(weights):
        raise RunError("%s does not exist: %s" % (weights, weights_fix))
    have, why = weight_shapes(weights)
    if have is None:
        raise RunError("%s is %s: %s" % (weights, why, weights_fix))
    net = net_shapes if net_shapes is not None else deploy_shapes(deploy, deploy_fix)
    problems = []
    for layer, shapes in net.items():
        if layer not in have:
            problems.append("layer %s has no weights in the file" % layer)
        elif len(have[layer]) != len(shapes):
            problems.append("layer %s has %d parameter blobs in the weights, %d in the net"
                            % (layer, len(have[layer]), len(shapes)))
        else:
            for i, (h, w) in enumerate(zip(have[layer], shapes)):
                if h != w and not _legacy_equal(h, w):
                    problems.append("layer %s param %d is %s in the weights, %s in the net"
                                    % (layer, i, "x".join(map(str, h)), "x".join(map(str, w))))
    if problems:
        origin = trained_with(weights, model)
        raise RunError("%s does not fit %s: %s%s%s; %s"
                       % (weights, deploy, problems[0],
                          " (and %d more)" % (len(problems) - 1) if len(problems) > 1 else "",
                          "; the weights were trained with %s" % origin if origin else "",
                          mismatch_fix))
