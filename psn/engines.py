"""Caffe's own layers where cuDNN's cannot run: on the CPU of a Caffe built with cuDNN.

A Caffe built with USE_CUDNN gives convolution, pooling, ReLU, sigmoid, tanh, softmax and LRN
to cuDNN (engine DEFAULT) whatever the mode, and cuDNN's layers create their handles when the
net is set up, which needs a GPU. So on the CPU of such a build (the CUDA image run without
--gpus, the GPU bundle's CPU check) training and prediction aborted at setup ("CUDA driver
version is insufficient", cudnn_conv_layer.cpp). Nets run there are therefore written, or
loaded, with engine CAFFE on those layers; the numbers are the same layers' CPU code, which
the CPU build runs anyway. A run on a GPU keeps cuDNN.

    caffe_engines(net)     a copy of NetParameter `net` on Caffe's own engines
    cudnn_caffe()          whether the Caffe in use (PSN_CAFFE_HOME/BUILD_INFO) has cuDNN
    for_cpu(net)           `net` as it can run on this Caffe's CPU
    cpu_net_file(path)     context: a prototxt path that runs on this Caffe's CPU
"""
import contextlib
import os
import re
import tempfile

# Layer types whose parameter message has an `engine` (DEFAULT = 0, CAFFE = 1, CUDNN = 2).
ENGINE_PARAMS = {"Convolution": "convolution_param", "Pooling": "pooling_param",
                 "ReLU": "relu_param", "Sigmoid": "sigmoid_param", "TanH": "tanh_param",
                 "Softmax": "softmax_param", "SoftmaxWithLoss": "softmax_param",
                 "LRN": "lrn_param"}
CAFFE_ENGINE = 1


def caffe_engines(net):
    """A copy of NetParameter net with every layer on Caffe's own engine (no cuDNN)."""
    cpu = type(net)()
    cpu.CopyFrom(net)
    for layer in cpu.layer:
        if layer.type in ENGINE_PARAMS:
            getattr(layer, ENGINE_PARAMS[layer.type]).engine = CAFFE_ENGINE
    return cpu


def cudnn_caffe():
    """True where PSN_CAFFE_HOME/BUILD_INFO (tools/build_caffe.sh's record) says cudnn=1."""
    home = os.environ.get("PSN_CAFFE_HOME")
    info = os.path.join(home, "BUILD_INFO") if home else None
    if not (info and os.path.isfile(info)):
        return False
    with open(info, errors="replace") as f:
        m = re.search(r"^options:.*?\bcudnn=(\d)", f.read(), re.M)
    return bool(m and m.group(1) == "1")


def for_cpu(net):
    return caffe_engines(net) if cudnn_caffe() else net


@contextlib.contextmanager
def cpu_net_file(path):
    """`path`, or on a cuDNN Caffe a temporary copy of it on Caffe's own engines."""
    if not cudnn_caffe():
        yield path
        return
    from google.protobuf import text_format
    from psn.caffe_proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    with open(path) as f:
        text_format.Merge(f.read(), net)
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", prefix="caffe-engines-") as f:
        f.write(text_format.MessageToString(caffe_engines(net)))
        f.flush()
        yield f.name
