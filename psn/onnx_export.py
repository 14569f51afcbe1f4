"""A trained deploy net as an ONNX graph of standard operators, the TPU and Caffe's RNN included.

    export_fold("runs/psn_w0.125_demo/fold01", "psn.onnx")        # tools/export_onnx.py

The deploy.prototxt and the .caffemodel are read with caffe_pb2 alone (psn.caffe_proto), so a
host without pycaffe exports too. Each Caffe layer becomes the ONNX operators that compute the
same thing (docs/onnx.md has the table); shapes are followed layer by layer, as Caffe's Reshape
does, so that pooling gets Caffe's rounding. The graph keeps the deploy's inputs (raw, sparse,
cont; the batch dimension named N) and gives two outputs: ``prob``, the per-frame softmax rows
(time-major, row t*N + n, as Caffe's), and ``clip_prob``, their mean over the T frames of each
clip (psn.predictions.clip_probabilities), which is what a prediction reads.

The recurrent layers are unrolled over the T = 16 steps rather than written as a Loop or Scan:
T is fixed by the net, an unrolled graph is plain MatMul/Tanh that every runtime and converter
runs (OpenCV's importer and TensorRT handle Loop/Scan partially or not at all), and it costs
16 copies of small nodes. The TPU's temporal perception (Eq. 7) is computed in float32 (the
differences centred before they are squared): TensorRT and OpenCV have no float64.

Opset 13: the newest that OpenCV 4.x's importer, TensorRT 8, onnxruntime >= 1.6 and
onnx2torch all read; it has every operator used here.
"""
import json
import math
import os

import numpy as np


OPSET = 13
BATCH_NAME = "N"      # the symbolic batch dimension of the inputs and outputs
METADATA_PREFIX = "psn."


def _pb2():
    from psn.caffe_proto import caffe_pb2
    return caffe_pb2


class ExportError(Exception):
    """A fold, weights or net this exporter cannot turn into ONNX; the message names the file."""


# ------------------------------------------------------------------ reading Caffe's files

def read_deploy(path):
    from google.protobuf import text_format
    net = _pb2().NetParameter()
    try:
        with open(path) as f:
            text_format.Merge(f.read(), net)
    except (OSError, text_format.ParseError, UnicodeDecodeError) as e:
        raise ExportError("%s is not a readable deploy.prototxt (%s): write it again (tools/"
                          "run_folds.py --predict-only writes a fold's)" % (path, e))
    return net


def _blob_array(blob):
    from psn.net_files import blob_shape
    shape = tuple(blob_shape(blob))
    data = np.asarray(blob.double_data if len(blob.double_data) else blob.data, np.float32)
    if data.size != int(np.prod(shape)):
        raise ValueError("blob holds %d values for shape %s" % (data.size, shape))
    return data.reshape(shape)


def read_weights(path):
    """{layer name: [arrays]} of a .caffemodel (the binary NetParameter caffe snapshots)."""
    net = _pb2().NetParameter()
    try:
        with open(path, "rb") as f:
            net.ParseFromString(f.read())
        layers = list(net.layer) or list(net.layers)
        return {layer.name: [_blob_array(b) for b in layer.blobs] for layer in layers
                if len(layer.blobs)}
    except OSError as e:
        raise ExportError("%s cannot be read: %s" % (path, e))
    except Exception as e:  # protobuf's DecodeError, or a blob whose size and shape disagree
        raise ExportError("%s is not a complete .caffemodel (%s: %s): give a complete copy, or "
                          "the fold folder (its DONE weights)" % (path, type(e).__name__, e))


# ------------------------------------------------------------------ the graph being written

class _Graph:
    def __init__(self):
        from onnx import helper
        self.helper = helper
        self.nodes, self.inits, self.inputs = [], [], []
        self._names = set()

    def fresh(self, hint):
        name, k = hint, 1
        while name in self._names:
            k += 1
            name = "%s_%d" % (hint, k)
        self._names.add(name)
        return name

    def const(self, hint, array):
        from onnx import numpy_helper
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def scalar(self, hint, value):
        """A float constant of shape (1,): broadcasts as a scalar does, and OpenCV's importer
        reads it (a rank-0 initialiser comes out empty there)."""
        return self.const(hint, np.full((1,), value, np.float32))

    def ints(self, hint, values):
        return self.const(hint, np.asarray(values, np.int64))

    def op(self, op_type, inputs, hint, n_out=1, **attrs):
        outs = [self.fresh(hint if n_out == 1 else "%s_%d" % (hint, k)) for k in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs,
                                                name=self.fresh("n_" + outs[0]), **attrs))
        return outs[0] if n_out == 1 else outs


class _Layer:
    """One Caffe layer being converted: its ONNX inputs and their shapes, its weights."""

    def __init__(self, g, layer, bottoms, shapes, blobs):
        self.g, self.layer, self.bottoms, self.shapes, self.blobs = g, layer, bottoms, shapes, blobs
        self.name = layer.name

    def need_blobs(self, expected, weights_path):
        """The layer's weights, checked against the shapes the deploy net gives them."""
        if self.blobs is None:
            raise ExportError("%s holds no weights for layer %r of the deploy net: weights of "
                              "another net; give the fold's own weights" % (weights_path, self.name))
        got = [tuple(b.shape) for b in self.blobs]
        want = [tuple(s) for s in expected]
        if len(got) != len(want) or any(
                int(np.prod(a)) != int(np.prod(b)) or (len(a) == len(b) and a != b)
                for a, b in zip(got, want)):
            raise ExportError(
                "%s: layer %r has weights of shapes %s where the deploy net wants %s: weights "
                "of another width or net; give the weights this fold trained (or its deploy."
                "prototxt)" % (weights_path, self.name, got, want))
        return [b.reshape(s).astype(np.float32) for b, s in zip(self.blobs, want)]


def _pair(values, single_h, single_w, default):
    """Caffe's kernel/stride/pad: a repeated field (one value or h, w) or the _h/_w pair."""
    if single_h or single_w:
        return [int(single_h), int(single_w)]
    values = list(values)
    if not values:
        return [default, default]
    return [int(values[0]), int(values[-1])] if len(values) <= 2 else None


# ------------------------------------------------------------------ one function per layer

def _input(c):
    raise AssertionError("inputs are made by export_net")


def _power(c):
    p = c.layer.power_param
    x = c.bottoms[0]
    if p.scale != 1:
        x = c.g.op("Mul", [x, c.g.scalar(c.name + "_scale", p.scale)], c.name + "_mul")
    if p.shift != 0:
        x = c.g.op("Add", [x, c.g.scalar(c.name + "_shift", p.shift)], c.name + "_add")
    if p.power == 2:
        x = c.g.op("Mul", [x, x], c.name + "_sq")
    elif p.power != 1:
        x = c.g.op("Pow", [x, c.g.scalar(c.name + "_power", p.power)], c.name + "_pow")
    if x == c.bottoms[0]:
        x = c.g.op("Identity", [x], c.name)
    return [(x, c.shapes[0])]


def _relu(c):
    slope = c.layer.relu_param.negative_slope
    if slope:
        return [(c.g.op("LeakyRelu", c.bottoms, c.name, alpha=float(slope)), c.shapes[0])]
    return [(c.g.op("Relu", c.bottoms, c.name), c.shapes[0])]


def _identity(c):
    # Dropout and Split: at test time Caffe's dropout passes its input through.
    return [(c.g.op("Identity", c.bottoms, "%s_%d" % (c.name, k)), c.shapes[0])
            for k in range(len(c.layer.top))]


def _slice(c):
    p = c.layer.slice_param
    shape = c.shapes[0]
    axis = p.axis % len(shape) if p.HasField("axis") or not p.HasField("slice_dim") else p.slice_dim
    n = len(c.layer.top)
    if p.slice_point:
        points = [0] + list(p.slice_point) + [shape[axis]]
    else:
        if shape[axis] % n:
            raise ExportError("layer %r slices %d into %d equal parts" % (c.name, shape[axis], n))
        points = [shape[axis] // n * k for k in range(n + 1)]
    sizes = [b - a for a, b in zip(points, points[1:])]
    outs = c.g.op("Split", [c.bottoms[0], c.g.ints(c.name + "_split", sizes)], c.name,
                  n_out=n, axis=axis)
    outs = [outs] if n == 1 else outs
    return [(o, shape[:axis] + [s] + shape[axis + 1:]) for o, s in zip(outs, sizes)]


def _concat(c):
    p = c.layer.concat_param
    shape = list(c.shapes[0])
    axis = p.axis % len(shape) if not p.HasField("concat_dim") else p.concat_dim
    shape[axis] = sum(s[axis] for s in c.shapes)
    return [(c.g.op("Concat", c.bottoms, c.name, axis=axis), shape)]


def _reshape_shape(name, shape, dims):
    out = [shape[k] if d == 0 else d for k, d in enumerate(dims)]
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        out[out.index(-1)] = int(np.prod(shape)) // known
    if int(np.prod(out)) != int(np.prod(shape)):
        raise ExportError("layer %r reshapes %s into %s" % (name, shape, dims))
    return out


def _reshape(c):
    p = c.layer.reshape_param
    if p.axis != 0 or p.num_axes != -1:
        raise ExportError("layer %r: Reshape with axis/num_axes is not exported" % c.name)
    dims = list(p.shape.dim)
    out = _reshape_shape(c.name, c.shapes[0], dims)
    # Caffe's 0 (copy) and -1 (infer) mean the same in ONNX's Reshape, so the batch stays free.
    return [(c.g.op("Reshape", [c.bottoms[0], c.g.ints(c.name + "_shape", dims)], c.name), out)]


def _flatten(c):
    p = c.layer.flatten_param
    shape = c.shapes[0]
    axis, end = p.axis % len(shape), p.end_axis % len(shape)
    out = shape[:axis] + [int(np.prod(shape[axis:end + 1]))] + shape[end + 1:]
    if axis == 1 and end == len(shape) - 1:
        return [(c.g.op("Flatten", c.bottoms, c.name, axis=1), out)]
    # ONNX's 0 copies the dimension at the same index, so the trailing ones are written out.
    dims = [0] * axis + [-1] + list(shape[end + 1:])
    return [(c.g.op("Reshape", [c.bottoms[0], c.g.ints(c.name + "_shape", dims)], c.name), out)]


def _convolution(c, weights_path):
    p = c.layer.convolution_param
    shape = c.shapes[0]
    if p.axis != 1 or len(shape) != 4:
        raise ExportError("layer %r: only 2-d convolution over axis 1 is exported" % c.name)
    k = _pair(p.kernel_size, p.kernel_h, p.kernel_w, 0)
    s = _pair(p.stride, p.stride_h, p.stride_w, 1)
    pad = _pair(p.pad, p.pad_h, p.pad_w, 0)
    d = _pair(p.dilation, 0, 0, 1)
    group = p.group or 1
    expected = [(p.num_output, shape[1] // group, k[0], k[1])] + (
        [(p.num_output,)] if p.bias_term else [])
    blobs = c.need_blobs(expected, weights_path)
    inputs = [c.bottoms[0], c.g.const(c.name + "_W", blobs[0])]
    if p.bias_term:
        inputs.append(c.g.const(c.name + "_b", blobs[1]))
    out_hw = [(shape[2 + i] + 2 * pad[i] - (d[i] * (k[i] - 1) + 1)) // s[i] + 1 for i in (0, 1)]
    y = c.g.op("Conv", inputs, c.name, kernel_shape=k, strides=s, pads=pad + pad, dilations=d,
               group=group)
    return [(y, [shape[0], p.num_output] + out_hw)]


def _pooling(c):
    p = c.layer.pooling_param
    shape = c.shapes[0]
    kinds = {p.MAX: "Max", p.AVE: "Average"}
    if p.pool not in kinds:
        raise ExportError("layer %r: stochastic pooling has no ONNX operator" % c.name)
    kind = kinds[p.pool]
    if p.global_pooling:
        return [(c.g.op("Global%sPool" % kind, c.bottoms, c.name), shape[:2] + [1, 1])]
    k = _pair([p.kernel_size] if p.HasField("kernel_size") else [], p.kernel_h, p.kernel_w, 0)
    s = _pair([p.stride] if p.HasField("stride") else [], p.stride_h, p.stride_w, 1)
    pad = _pair([p.pad] if p.HasField("pad") else [], p.pad_h, p.pad_w, 0)
    out, end = [], []
    for i in (0, 1):
        size = shape[2 + i]
        # Caffe rounds up, then drops a last window that would start in the padding.
        n = int(math.ceil((size + 2 * pad[i] - k[i]) / float(s[i]))) + 1
        if pad[i] and (n - 1) * s[i] >= size + pad[i]:
            n -= 1
        e = max(0, (n - 1) * s[i] + k[i] - size - pad[i])
        if (size + pad[i] + e - k[i]) // s[i] + 1 != n:
            raise ExportError("layer %r: no ONNX padding gives Caffe's %d outputs" % (c.name, n))
        out.append(n)
        end.append(e)
    if kind == "Average" and any(pad) and any(e > p_ for e, p_ in zip(end, pad)):
        # count_include_pad holds for both axes: a window past the padding on either would be
        # divided by cells Caffe does not count.
        raise ExportError("layer %r: average pooling whose windows pass the padding is not "
                          "exported (Caffe's divisor differs from ONNX's)" % c.name)
    attrs = dict(kernel_shape=k, strides=s, pads=pad + end)
    if kind == "Average":
        # Caffe divides by the window clipped to the padded image: with padding, the pad cells
        # count; without, only the image's cells do.
        attrs["count_include_pad"] = 1 if any(pad) else 0
    return [(c.g.op(kind + "Pool", c.bottoms, c.name, **attrs), shape[:2] + out)]


def _inner_product(c, weights_path):
    p = c.layer.inner_product_param
    shape = c.shapes[0]
    axis = p.axis % len(shape)
    k = int(np.prod(shape[axis:]))
    expected = [(k, p.num_output) if p.transpose else (p.num_output, k)] + (
        [(p.num_output,)] if p.bias_term else [])
    blobs = c.need_blobs(expected, weights_path)
    x = c.bottoms[0]
    if axis == 1:
        # Flatten and Gemm: the form every importer maps to its fully connected layer
        # (OpenCV's cannot follow a Reshape to [0, -1] into a MatMul).
        if len(shape) > 2:
            x = c.g.op("Flatten", [x], c.name + "_in", axis=1)
        inputs = [x, c.g.const(c.name + "_W", blobs[0])]
        if p.bias_term:
            inputs.append(c.g.const(c.name + "_b", blobs[1]))
        return [(c.g.op("Gemm", inputs, c.name, transB=0 if p.transpose else 1),
                 [shape[0], p.num_output])]
    w = blobs[0] if p.transpose else blobs[0].T
    if len(shape) != axis + 1:
        x = c.g.op("Reshape", [x, c.g.ints(c.name + "_rows", [0] * axis + [-1])], c.name + "_in")
    y = c.g.op("MatMul", [x, c.g.const(c.name + "_W", np.ascontiguousarray(w))], c.name + "_mm")
    if p.bias_term:
        y = c.g.op("Add", [y, c.g.const(c.name + "_b", blobs[1])], c.name)
    return [(y, shape[:axis] + [p.num_output])]


def _eltwise(c):
    p = c.layer.eltwise_param
    if p.operation == p.SUM:
        coeffs = list(p.coeff) or [1.0] * len(c.bottoms)
        terms = [b if w == 1 else c.g.op("Mul", [b, c.g.scalar(c.name + "_coeff", w)], c.name + "_term")
                 for b, w in zip(c.bottoms, coeffs)]
        op = "Add"
    else:
        terms, op = c.bottoms, "Mul" if p.operation == p.PROD else "Max"
    y = terms[0]
    for t in terms[1:]:
        y = c.g.op(op, [y, t], c.name)
    return [(y, c.shapes[0])]


def _tile(c):
    p = c.layer.tile_param
    shape = list(c.shapes[0])
    axis = p.axis % len(shape)
    reps = [1] * len(shape)
    reps[axis] = p.tiles
    shape[axis] *= p.tiles
    return [(c.g.op("Tile", [c.bottoms[0], c.g.ints(c.name + "_reps", reps)], c.name), shape)]


def _broadcast(c, scale, scale_ndim, axis, ndim):
    """A scale of shape x.shape[axis:axis+scale_ndim] made to broadcast against x."""
    extra = ndim - axis - scale_ndim
    if extra <= 0:
        return scale
    if isinstance(scale, np.ndarray):
        return scale.reshape(scale.shape + (1,) * extra)
    return c.g.op("Unsqueeze", [scale, c.g.ints(c.name + "_axes",
                                                list(range(scale_ndim, scale_ndim + extra)))],
                  c.name + "_b")


def _scale(c, weights_path):
    p = c.layer.scale_param
    shape = c.shapes[0]
    axis = p.axis % len(shape)
    if len(c.bottoms) == 2:
        ndim = len(c.shapes[1])
        scale = _broadcast(c, c.bottoms[1], ndim, axis, len(shape))
        bias_shape = tuple(c.shapes[1])
        blobs = c.need_blobs([bias_shape], weights_path) if p.bias_term else []
    else:
        ndim = (len(shape) - axis) if p.num_axes == -1 else p.num_axes
        sshape = tuple(shape[axis:axis + ndim])
        blobs = c.need_blobs([sshape] + ([sshape] if p.bias_term else []), weights_path)
        scale = c.g.const(c.name + "_gamma", _broadcast(c, blobs[0], ndim, axis, len(shape)))
        blobs = blobs[1:]
    y = c.g.op("Mul", [c.bottoms[0], scale], c.name + "_mul")
    if p.bias_term:
        y = c.g.op("Add", [y, c.g.const(c.name + "_beta",
                                        _broadcast(c, blobs[0], ndim, axis, len(shape)))], c.name)
    return [(y, shape)]


def _batch_norm(c, weights_path):
    p = c.layer.batch_norm_param
    if p.HasField("use_global_stats") and not p.use_global_stats:
        raise ExportError("layer %r: BatchNorm with use_global_stats false normalises with each "
                          "batch's own statistics, which an exported net cannot" % c.name)
    channels = c.shapes[0][1]
    mean, var, factor = c.need_blobs([(channels,), (channels,), (1,)], weights_path)
    # Caffe keeps running sums and their weight; the statistics are their quotient.
    f = 0.0 if factor[0] == 0 else 1.0 / factor[0]
    eps = p.eps if p.HasField("eps") else 1e-5
    inputs = [c.bottoms[0], c.g.const(c.name + "_one", np.ones(channels, np.float32)),
              c.g.const(c.name + "_zero", np.zeros(channels, np.float32)),
              c.g.const(c.name + "_mean", (mean * f).astype(np.float32)),
              c.g.const(c.name + "_var", (var * f).astype(np.float32))]
    return [(c.g.op("BatchNormalization", inputs, c.name, epsilon=float(eps)), c.shapes[0])]


def _reduction(c):
    p = c.layer.reduction_param
    shape = c.shapes[0]
    axis = p.axis % len(shape)
    axes = list(range(axis, len(shape)))
    ops = {p.SUM: "ReduceSum", p.ASUM: "ReduceL1", p.SUMSQ: "ReduceSumSquare", p.MEAN: "ReduceMean"}
    op = ops[p.operation]
    if op == "ReduceSum":   # opset 13 takes ReduceSum's axes as an input, the others as attribute
        y = c.g.op(op, [c.bottoms[0], c.g.ints(c.name + "_axes", axes)], c.name + "_r", keepdims=0)
    else:
        y = c.g.op(op, c.bottoms, c.name + "_r", axes=axes, keepdims=0)
    if p.coeff != 1:
        y = c.g.op("Mul", [y, c.g.scalar(c.name + "_coeff", p.coeff)], c.name)
    return [(y, shape[:axis])]


def _softmax(c):
    axis = c.layer.softmax_param.axis % len(c.shapes[0])
    return [(c.g.op("Softmax", c.bottoms, c.name, axis=axis), c.shapes[0])]


# ------------------------------------------------------------------ the recurrent layers

def _temporal_perception(g, name, x, cont, T, first_tp):
    """tp (T, N) from x (T, N, D) and cont (T, N), as psn_layers.tpu.temporal_perception: the
    population std over D of x_t - x_{t-1} (centred before squaring, in float32: TensorRT and
    OpenCV have no float64); at a clip's first frame (t = 0 or cont 0) the first_tp rule.

    Written with arithmetic on the 0/1 cont instead of boolean masks, which OpenCV's importer
    does not read: c = cont * [t > 0] is 1 where the frame continues its clip, so
    tp = c * tp_raw + (1 - c) * first_value."""
    ax0 = g.ints(name + "_ax0", [0])
    if T > 1:
        cur = g.op("Slice", [x, g.ints(name + "_s1", [1]), g.ints(name + "_eT", [T]), ax0],
                   name + "_cur")
        prev = g.op("Slice", [x, g.ints(name + "_s0", [0]), g.ints(name + "_eT1", [T - 1]), ax0],
                    name + "_prev")
        d = g.op("Sub", [cur, prev], name + "_diff")
        dc = g.op("Sub", [d, g.op("ReduceMean", [d], name + "_dmean", axes=[2], keepdims=1)],
                  name + "_dc")
        s = g.op("Sqrt", [g.op("ReduceMean", [g.op("Mul", [dc, dc], name + "_dc2")], name + "_var",
                               axes=[2], keepdims=0)], name + "_std")
        # Row 0 is a first frame whatever it holds: any row of the right shape does.
        row0 = g.op("Slice", [s, g.ints(name + "_r0", [0]), g.ints(name + "_r1", [1]), ax0],
                    name + "_row0")
        raw = g.op("Concat", [row0, s], name + "_raw", axis=0)
    else:
        raw = g.op("Mul", [cont, g.scalar(name + "_nil", 0)], name + "_raw")
    later = g.const(name + "_later", (np.arange(T) > 0).astype(np.float32)[:, None])
    c = g.op("Mul", [cont, later], name + "_continues")
    kept = g.op("Mul", [c, raw], name + "_kept")
    if first_tp == "zero":
        return g.op("Identity", [kept], name + "_tp")
    one = g.scalar(name + "_one", 1)
    starts = g.op("Sub", [one, c], name + "_starts")
    if first_tp == "one":
        first_value = starts
    else:   # next: the following frame's tp where that frame continues the clip, else 1
        pads = g.ints(name + "_pads", [0, 0, 1, 0])
        zero = g.const(name + "_zero", np.float32(0))
        nxt = g.op("Pad", [g.op("Slice", [raw, g.ints(name + "_n1", [1]), g.ints(name + "_nT", [T]),
                                          ax0], name + "_raw_later"), pads, zero], name + "_next")
        has_next = g.op("Pad", [g.op("Slice", [cont, g.ints(name + "_m1", [1]),
                                               g.ints(name + "_mT", [T]), ax0],
                                     name + "_cont_later"), pads, zero], name + "_has_next")
        value = g.op("Add", [g.op("Mul", [has_next, nxt], name + "_next_kept"),
                             g.op("Sub", [one, has_next], name + "_no_next")], name + "_first_val")
        first_value = g.op("Mul", [starts, value], name + "_first_part")
    return g.op("Add", [kept, first_value], name + "_tp")


def _recurrent(c, weights_path, mode, first_tp):
    """The TPU (Eq. 8, 9, 4; modes tpu | tp1 | rnn) and Caffe's RNN (= mode rnn), unrolled.

        h~_t = tanh(W_I x_t + b_I + W_H (cont_t h_{t-1}))      (no state before t = 0)
        h_t  = tanh(W_m (tp_t h~_t) + b_m)                      (rnn: h_t = h~_t)
        y_t  = tanh(W_O h_t + b_O)
    """
    g, name = c.g, c.name
    shape = c.shapes[0]
    T, N = shape[0], shape[1]
    D = int(np.prod(shape[2:]))
    H = c.layer.recurrent_param.num_output
    expected = [(H, D), (H,), (H, H), (H, H), (H,)] + ([] if mode == "rnn" else [(H, H), (H,)])
    W_I, b_I, W_H, W_O, b_O = c.need_blobs(expected, weights_path)[:5]
    x = c.g.op("Reshape", [c.bottoms[0], g.ints(name + "_tnd", [0, 0, -1])], name + "_x")
    cont = c.bottoms[1]
    a = g.op("Add", [g.op("MatMul", [x, g.const(name + "_WIt", np.ascontiguousarray(W_I.T))],
                          name + "_xw"), g.const(name + "_bI", b_I)], name + "_a")
    tp = None
    if mode != "rnn":
        W_m, b_m = c.blobs[5].reshape(H, H), c.blobs[6].reshape(H)
        W_mt, bm = g.const(name + "_Wmt", np.ascontiguousarray(W_m.T)), g.const(name + "_bm", b_m)
        if mode == "tpu":
            tp = _temporal_perception(g, name, x, cont, T, first_tp)
    W_Ht = g.const(name + "_WHt", np.ascontiguousarray(W_H.T))

    def per_step(tensor, hint, unsqueeze=False):
        """The T steps of a (T, N[, H]) tensor as (1, N, H or 1) pieces: Split, not Gather
        with a scalar index, which OpenCV's importer does not read."""
        if unsqueeze:
            tensor = g.op("Unsqueeze", [tensor, g.ints(hint + "_ax2", [2])], hint + "_u")
        if T == 1:
            return [tensor]
        return g.op("Split", [tensor, g.ints(hint + "_ones", [1] * T)], hint, n_out=T, axis=0)

    a_steps = per_step(a, name + "_a_t")
    cont_steps = per_step(cont, name + "_cont_t", unsqueeze=True)
    tp_steps = per_step(tp, name + "_tp_t", unsqueeze=True) if tp is not None else None
    steps, h = [], None
    for t in range(T):
        a_t = a_steps[t]
        if t > 0:
            kept = g.op("Mul", [cont_steps[t], h], "%s_kept%02d" % (name, t))
            a_t = g.op("Add", [a_t, g.op("MatMul", [kept, W_Ht], "%s_hw%02d" % (name, t))],
                       "%s_pre%02d" % (name, t))
        ht = g.op("Tanh", [a_t], "%s_htilde%02d" % (name, t))
        if mode == "rnn":
            h = ht
        else:
            if tp_steps is not None:
                ht = g.op("Mul", [tp_steps[t], ht], "%s_scaled%02d" % (name, t))
            h = g.op("Tanh", [g.op("Add", [g.op("MatMul", [ht, W_mt], "%s_mw%02d" % (name, t)),
                                           bm], "%s_mpre%02d" % (name, t))],
                     "%s_h%02d" % (name, t))
        steps.append(h)
    hs = g.op("Concat", steps, name + "_hidden", axis=0) if T > 1 else steps[0]
    y = g.op("Tanh", [g.op("Add", [g.op("MatMul", [hs, g.const(name + "_WOt",
                                                               np.ascontiguousarray(W_O.T))],
                                        name + "_ow"), g.const(name + "_bO", b_O)],
                           name + "_opre")], name)
    return [(y, [T, N, H])]


def _tpu(c, weights_path):
    p = c.layer.tpu_param
    mode = {p.TPU: "tpu", p.TP1: "tp1", p.RNN: "rnn"}[p.mode]
    first = {p.ZERO: "zero", p.ONE: "one", p.NEXT: "next"}[p.first_tp]
    return _recurrent(c, weights_path, mode, first)


def _rnn(c, weights_path):
    if len(c.bottoms) != 2 or c.layer.recurrent_param.expose_hidden:
        raise ExportError("layer %r: an RNN with a static input or exposed hidden state is not "
                          "exported" % c.name)
    return _recurrent(c, weights_path, "rnn", "zero")


def _python(c, weights_path):
    pp = c.layer.python_param
    if pp.layer != "TPULayer":
        raise ExportError("deploy.prototxt: Python layer %r (%s.%s) has no ONNX export; only "
                          "psn_layers.tpu.TPULayer does" % (c.name, pp.module, pp.layer))
    from psn_layers.tpu import parse_param_str
    try:
        params = parse_param_str(pp.param_str)
    except ValueError as e:
        raise ExportError("layer %r: %s" % (c.name, e))
    c.layer.recurrent_param.num_output = int(params["num_output"])
    return _recurrent(c, weights_path, params["mode"], params["first_tp"])


CONVERTERS = {
    "Power": _power, "ReLU": _relu, "Dropout": _identity, "Split": _identity, "Slice": _slice,
    "Concat": _concat, "Reshape": _reshape, "Flatten": _flatten, "Convolution": _convolution,
    "Pooling": _pooling, "InnerProduct": _inner_product, "Eltwise": _eltwise, "Tile": _tile,
    "Scale": _scale, "BatchNorm": _batch_norm, "Reduction": _reduction, "Softmax": _softmax,
    "TPU": _tpu, "RNN": _rnn, "Python": _python,
}
_WITH_WEIGHTS = {"Convolution", "InnerProduct", "Scale", "BatchNorm", "TPU", "RNN", "Python"}


# ------------------------------------------------------------------ the whole net

def export_net(deploy_path, weights_path, metadata=None, outputs=None, batch=None):
    """The deploy net with the weights as an onnx.ModelProto (checked by onnx.checker).

    outputs: Caffe blob names to output instead of prob and clip_prob (tests read one layer);
    batch: a fixed number of clips per run instead of the free N (OpenCV's importer needs
    one: it cannot follow a free batch through the time-major reshapes)."""
    from onnx import TensorProto, helper
    net = read_deploy(deploy_path)
    weights = read_weights(weights_path)
    g = _Graph()
    g.fresh("prob"), g.fresh("clip_prob")     # the graph's outputs: no layer takes their names
    blobs, inputs = {}, []     # caffe blob name -> (onnx name, shape)
    for layer in net.layer:
        if any(r.phase == _pb2().TEST for r in layer.exclude) or any(
                r.phase == _pb2().TRAIN for r in layer.include):
            continue
        if layer.type == "Input":
            shapes = list(layer.input_param.shape)
            for k, top in enumerate(layer.top):
                dims = list(shapes[k if len(shapes) > 1 else 0].dim)
                g.fresh(top)
                inputs.append(helper.make_tensor_value_info(top, TensorProto.FLOAT,
                                                            [batch or BATCH_NAME] + dims[1:]))
                blobs[top] = (top, dims)
            continue
        if layer.type == "Silence":
            continue
        convert = CONVERTERS.get(layer.type)
        if convert is None:
            raise ExportError("%s: layer %r of type %s has no ONNX export here (exported: %s)"
                              % (deploy_path, layer.name, layer.type,
                                 ", ".join(sorted(CONVERTERS))))
        missing = [b for b in layer.bottom if b not in blobs]
        if missing:
            raise ExportError("%s: layer %r reads %s, which no earlier layer makes"
                              % (deploy_path, layer.name, missing))
        c = _Layer(g, layer, [blobs[b][0] for b in layer.bottom],
                   [list(blobs[b][1]) for b in layer.bottom], weights.get(layer.name))
        outs = convert(c, weights_path) if layer.type in _WITH_WEIGHTS else convert(c)
        for top, out in zip(layer.top, outs):
            blobs[top] = out
    if outputs:
        return _model(g, net, inputs, [_output(g, blobs, name) for name in outputs],
                      deploy_path, weights_path, metadata)
    if "prob" not in blobs:
        raise ExportError("%s has no 'prob' output (a Softmax): not a deploy net of psn.nets"
                          % deploy_path)
    prob, prob_shape = blobs["prob"]
    frames = [blobs[k][1][1] for k in ("raw", "sparse", "cont") if k in blobs]
    T = frames[0] if frames else 1
    C = prob_shape[-1]
    g.nodes.append(helper.make_node("Identity", [prob], ["prob"], name="n_prob_out"))
    by_frame = g.op("Reshape", [prob, g.ints("clip_shape", [T, -1, C])], "prob_tnc")
    g.nodes.append(helper.make_node("ReduceMean", [by_frame], ["clip_prob"], name="n_clip_prob",
                                    axes=[0], keepdims=0))
    outs = [helper.make_tensor_value_info("prob", TensorProto.FLOAT,
                                          [T * batch if batch else "rows", C]),
            helper.make_tensor_value_info("clip_prob", TensorProto.FLOAT, [batch or BATCH_NAME, C])]
    return _model(g, net, inputs, outs, deploy_path, weights_path, metadata)


def _output(g, blobs, name):
    from onnx import TensorProto, helper
    if name not in blobs:
        raise ExportError("the deploy net has no blob %r" % name)
    out = g.fresh("out_" + name)
    g.nodes.append(helper.make_node("Identity", [blobs[name][0]], [out], name="n_" + out))
    return helper.make_tensor_value_info(out, TensorProto.FLOAT,
                                         ["%s_%d" % (name, k) for k in range(len(blobs[name][1]))])


def _model(g, net, inputs, outputs, deploy_path, weights_path, metadata):
    import onnx
    from onnx import helper
    # An input no node reads (PSN_spatial's raw and cont) is left out: some importers
    # (OpenCV's) fail on a dangling input, and a runtime need not be fed it.
    read = {name for node in g.nodes for name in node.input}
    inputs = [i for i in inputs if i.name in read]
    graph = helper.make_graph(g.nodes, net.name or "psn", inputs, outputs, g.inits)
    model = helper.make_model(graph, producer_name="psn-caffe",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 7     # the IR of opset 13 (onnx 1.8): older runtimes read it
    model.doc_string = ("%s exported from %s and %s by psn-caffe (psn/onnx_export.py)"
                        % (net.name, os.path.basename(deploy_path), os.path.basename(weights_path)))
    for key, value in sorted((metadata or {}).items()):
        entry = model.metadata_props.add()
        entry.key = METADATA_PREFIX + key
        entry.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    onnx.checker.check_model(model, full_check=True)
    return model


# ------------------------------------------------------------------ a fold of run_folds

INPUTS = {
    "raw": "N x T x 3 x 112 x 112 float32: the clip's face frames, gray levels 0-255, RGB",
    "sparse": "N x T x 1 x 112 x 112 float32: RPCA's sparse part E of each frame (the HDF5 "
              "shards' 'sparse', gray levels / 255)",
    "cont": "N x T float32: 0 at a clip's first frame, 1 at the others",
    "flow": "N x 3 x 28 x 28 float32: the onset-to-apex TV-L1 flow u, v and its strain, each "
            "divided by its peak in the clip (the flow shards' 'flow'; preprocessing.flow)",
}


def _sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fold_metadata(fold_dir, weights):
    """What a prediction needs besides the graph: the run's class names, the preprocessing its
    data folder was made with, the model and the weights' digest."""
    from preprocessing.layout import DataFolder, RunFolder
    run = RunFolder(os.path.dirname(os.path.abspath(fold_dir)))
    meta = {"weights": {"file": os.path.basename(weights), "sha256": _sha256(weights)},
            "inputs": INPUTS, "opset": OPSET}
    record = {}
    if os.path.exists(run.record):
        with open(run.record) as f:
            record = json.load(f)
        meta["model"] = {k: record.get(k) for k in ("model", "width", "net_overrides", "schedule")}
    data = record.get("data_path")
    found = data and os.path.exists(DataFolder(data).plan) and _same_data(record, data)
    # A run recorded before run.json named its classes takes its data folder's.
    classes = run.classes() or (DataFolder(data).classes() if found else None)
    if classes:
        meta["classes"] = list(classes)
    if found:
        plan = DataFolder(data).read_plan()
        meta["preprocessing"] = {"options": plan.get("options"),
                                 "pipeline_version": plan.get("pipeline_version")}
    return meta


def _same_data(record, data):
    """Whether the data folder holds what the run trained on (its run.json's fingerprint): one
    preprocessed again since must not lend the model its new settings."""
    from psn.run_record import data_fingerprint
    want = record.get("data_sha256")
    try:
        return want in (data_fingerprint(data), data_fingerprint(data, location=True))
    except (OSError, ValueError):
        return False


def fold_files(fold_dir, weights=None):
    """(deploy.prototxt, weights) of a fold folder: weights default to those DONE names."""
    from preprocessing.layout import RunFolder
    if not os.path.isdir(fold_dir):
        raise ExportError("%s is not a fold folder (RUN/foldKK of tools/run_folds.py)" % fold_dir)
    deploy = os.path.join(fold_dir, "deploy.prototxt")
    if not os.path.exists(deploy):
        raise ExportError("%s has no deploy.prototxt: run the run's command (its run.json) with "
                          "--predict-only to write it again" % fold_dir)
    if weights is None:
        if not os.path.exists(os.path.join(fold_dir, RunFolder.DONE)):
            raise ExportError("%s has no weights to export: the fold has not finished training "
                              "(no DONE file); finish it with tools/run_folds.py, or give "
                              "--weights" % fold_dir)
        from psn.caffe_train import done_weights
        weights = done_weights(fold_dir)
    if not os.path.exists(weights):
        raise ExportError("%s does not exist: give --weights, or train the fold again"
                          % weights)
    return deploy, weights


def export_fold(fold_dir, out, weights=None, batch=None):
    """Write fold_dir's net with its weights (default: those DONE names) to `out` as ONNX,
    atomically, with fold_metadata; returns the model. batch: as export_net's."""
    from preprocessing.atomic import write_atomic
    deploy, weights = fold_files(fold_dir, weights)
    model = export_net(deploy, weights, fold_metadata(fold_dir, weights), batch=batch)
    write_atomic(out, model.SerializeToString())
    return model


def main(argv=None):
    import argparse
    import time

    from preprocessing.errors import fail
    ap = argparse.ArgumentParser(prog="export_onnx.py", description=__doc__.splitlines()[0])
    ap.add_argument("fold", help="a fold folder of tools/run_folds.py (RUN/foldKK)")
    ap.add_argument("--weights", help="a .caffemodel of this fold (default: the weights its DONE "
                                      "file names, those run_folds predicts with)")
    ap.add_argument("--out", required=True, help="the .onnx file to write")
    ap.add_argument("--batch", type=int, help="a fixed number of clips per run (OpenCV's ONNX "
                                              "importer needs one); default: any (N)")
    args = ap.parse_args(argv)
    if args.batch is not None and args.batch < 1:
        return fail("export_onnx: error: ", "--batch takes a number of clips >= 1, got %d"
                    % args.batch)
    start = time.time()
    try:
        model = export_fold(args.fold, args.out, args.weights, args.batch)
    except (ExportError, ImportError, OSError, ValueError) as e:
        return fail("export_onnx: error: ", e)
    except Exception as e:  # onnx.checker.ValidationError: a graph this exporter got wrong
        return fail("export_onnx: error: ", "the exported graph does not check (%s: %s): "
                    "please report it with the fold's deploy.prototxt" % (type(e).__name__, e))
    meta = {p.key: p.value for p in model.metadata_props}
    print("export_onnx: wrote %s (%s, opset %d, %.1f MB, %.1f s)%s" % (
        args.out, model.graph.name, OPSET, os.path.getsize(args.out) / 1e6, time.time() - start,
        "" if METADATA_PREFIX + "preprocessing" in meta else
        "; the run's data folder was not found or was preprocessed again since the run, so the "
        "model records no preprocessing settings and tools/predict.py cannot check a clip "
        "against them"))
    return 0
