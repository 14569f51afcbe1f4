"""The Temporal Perception Unit as a Caffe Python layer.

The fallback for a Caffe built without the C++ ``TPU`` layer: same numerics
and blob order (see layers/include/caffe/layers/tpu_layer.hpp and docs/design.md §2).

    layer {
      name: "tpu" type: "Python" bottom: "x" bottom: "cont" top: "y"
      python_param {
        module: "psn_layers.tpu" layer: "TPULayer"
        param_str: '{"num_output": 512, "mode": "tpu",
                     "weight_filler": {"type": "gaussian", "std": 0.01}}'
      }
    }

``param_str`` is JSON with the fields of ``recurrent_param`` (num_output,
weight_filler, bias_filler) and ``tpu_param`` (mode: tpu | tp1 | rnn;
first_tp: zero | one | next; input_weight_filler, hidden_weight_filler,
modulation_weight_filler), plus an optional ``seed`` for the fillers.

The maths lives in :func:`forward` and :func:`backward`, plain numpy
functions, so that tests can check them without Caffe.
"""
import json

import numpy as np

MODES = ("tpu", "tp1", "rnn")
FIRST_TP = ("zero", "one", "next")   # tpu_param.first_tp: ZERO | ONE | NEXT
# Blob names in order; the first five are the RNN layer's W_xh, b_h, W_hh, W_ho, b_o.
BLOB_NAMES = ("W_I", "b_I", "W_H", "W_O", "b_O", "W_m", "b_m")


def num_blobs(mode):
    return 5 if mode == "rnn" else 7


def temporal_perception(x, cont, first_tp="zero"):
    """tp[t, n] = population std over features of x[t, n] - x[t-1, n] (Eq. 7).

    At a first frame (t = 0 or cont 0: no predecessor) ``first_tp`` decides:
    "zero" (x_{t-1} := x_t), "one", or "next" (the following frame's tp; 1 for
    a one-frame sequence). Accumulated in float64, as the C++ and CUDA code do.
    """
    if first_tp not in FIRST_TP:
        raise ValueError("first_tp must be one of %s, got %r" % (FIRST_TP, first_tp))
    T, N = x.shape[:2]
    flat = x.reshape(T, N, -1).astype(np.float64)
    tp = np.zeros((T, N), dtype=np.float64)
    if T > 1:
        tp[1:] = (flat[1:] - flat[:-1]).std(axis=2)
    first = (np.asarray(cont) == 0)
    first[0] = True
    if first_tp == "zero":
        tp[first] = 0
    else:
        for t, n in zip(*np.nonzero(first)):
            has_next = t + 1 < T and cont[t + 1, n] != 0
            tp[t, n] = tp[t + 1, n] if (first_tp == "next" and has_next) else 1.0
    return tp.astype(x.dtype)


def forward(x, cont, params, mode="tpu", tp=None, first_tp="zero"):
    """Returns (y, cache). x: (T, N, ...), cont: (T, N); params in BLOB_NAMES order.

    ``tp`` overrides the temporal perception (tests use it to hold tp fixed).
    """
    if mode not in MODES:
        raise ValueError("TPU mode must be one of %s, got %r" % (MODES, mode))
    T, N = x.shape[:2]
    xf = x.reshape(T * N, -1)
    W_I, b_I, W_H, W_O, b_O = params[:5]
    H = W_I.shape[0]
    if tp is None:
        tp = (temporal_perception(x, cont, first_tp) if mode == "tpu"
              else np.ones((T, N), x.dtype))
    htilde = (xf @ W_I.T + b_I).reshape(T, N, H)
    hidden = np.zeros_like(htilde)      # no state before t = 0, whatever cont[0] says
    scaled = np.empty_like(htilde)
    for t in range(T):
        if t > 0:
            htilde[t] += (cont[t][:, None] * hidden[t - 1]) @ W_H.T
        np.tanh(htilde[t], out=htilde[t])
        if mode == "rnn":
            hidden[t] = htilde[t]
        else:
            scaled[t] = tp[t][:, None] * htilde[t]
            hidden[t] = np.tanh(scaled[t] @ params[5].T + params[6])
    y = np.tanh(hidden.reshape(T * N, H) @ W_O.T + b_O).reshape(T, N, H)
    cache = dict(x=xf, cont=cont, tp=tp, htilde=htilde, hidden=hidden,
                 scaled=scaled, y=y, mode=mode)
    return y, cache


def backward(dy, cache, params):
    """Returns (dx (T*N, D), [d params in BLOB_NAMES order]); tp is held fixed."""
    mode, cont, tp = cache["mode"], cache["cont"], cache["tp"]
    htilde, hidden, scaled, y = cache["htilde"], cache["hidden"], cache["scaled"], cache["y"]
    T, N, H = y.shape
    W_I, _, W_H, W_O, _ = params[:5]
    d_out = (dy * (1 - y * y)).reshape(T * N, H)
    grads = [None] * len(params)
    grads[3] = d_out.T @ hidden.reshape(T * N, H)
    grads[4] = d_out.sum(axis=0)
    d_hidden = (d_out @ W_O).reshape(T, N, H)
    d_a = np.empty_like(htilde)
    d_m = np.empty_like(htilde)
    for t in range(T - 1, -1, -1):
        if mode == "rnn":
            d_htilde = d_hidden[t]
        else:
            d_m[t] = d_hidden[t] * (1 - hidden[t] * hidden[t])
            d_htilde = tp[t][:, None] * (d_m[t] @ params[5])
        d_a[t] = d_htilde * (1 - htilde[t] * htilde[t])
        if t > 0:
            d_hidden[t - 1] += cont[t][:, None] * (d_a[t] @ W_H)
    d_a2 = d_a.reshape(T * N, H)
    if mode != "rnn":
        d_m2 = d_m.reshape(T * N, H)
        grads[5] = d_m2.T @ scaled.reshape(T * N, H)
        grads[6] = d_m2.sum(axis=0)
    gated = np.zeros_like(hidden)
    gated[1:] = cont[1:, :, None] * hidden[:-1]
    grads[2] = d_a2.T @ gated.reshape(T * N, H)
    grads[0] = d_a2.T @ cache["x"]
    grads[1] = d_a2.sum(axis=0)
    dx = d_a2 @ W_I
    return dx, grads


def fill(shape, filler, rng):
    """Caffe's fillers for the shapes used here (fan_in = shape[1] for weights)."""
    kind = filler.get("type", "constant")
    fan_in = shape[1] if len(shape) > 1 else shape[0]
    if kind == "constant":
        return np.full(shape, filler.get("value", 0.0), np.float32)
    if kind == "gaussian":
        return rng.normal(filler.get("mean", 0.0), filler.get("std", 1.0), shape).astype(np.float32)
    if kind == "uniform":
        return rng.uniform(filler.get("min", 0.0), filler.get("max", 1.0), shape).astype(np.float32)
    if kind == "xavier":
        scale = np.sqrt(3.0 / fan_in)
        return rng.uniform(-scale, scale, shape).astype(np.float32)
    if kind == "msra":
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
    raise ValueError("TPU Python layer: unsupported filler type %r "
                     "(constant, gaussian, uniform, xavier, msra)" % kind)


def parse_param_str(text):
    try:
        p = json.loads(text or "{}")
    except ValueError as e:
        raise ValueError("TPU Python layer: param_str is not JSON (%s): %r" % (e, text))
    if not isinstance(p, dict) or int(p.get("num_output", 0)) <= 0:
        raise ValueError("TPU Python layer: param_str must give num_output > 0 "
                         "(the hidden size H), e.g. '{\"num_output\": 512}'; got %r" % text)
    p["mode"] = str(p.get("mode", "tpu")).lower()
    if p["mode"] not in MODES:
        raise ValueError("TPU Python layer: mode must be one of %s, got %r" % (MODES, p["mode"]))
    p["first_tp"] = str(p.get("first_tp", "zero")).lower()
    if p["first_tp"] not in FIRST_TP:
        raise ValueError("TPU Python layer: first_tp must be one of %s, got %r"
                         % (FIRST_TP, p["first_tp"]))
    return p


def blob_fillers(p):
    """The filler of each blob in BLOB_NAMES order, as the C++ layer picks them:
    a group's own filler (input_/hidden_/modulation_weight_filler) where given,
    else weight_filler; biases take bias_filler."""
    wf = p.get("weight_filler", {"type": "constant"})
    bf = p.get("bias_filler", {"type": "constant"})
    wi = p.get("input_weight_filler", wf)
    wh = p.get("hidden_weight_filler", wf)
    wm = p.get("modulation_weight_filler", wf)
    return [wi, bf, wh, wh, bf, wm, bf]


def _layer_class():
    # Built on first use, so that the numpy functions above import without
    # Caffe and the module still serves Caffe once pycaffe is importable.
    import caffe

    class TPULayer(caffe.Layer):
        """Bottoms x (T x N x ...), cont (T x N); top y (T x N x H)."""

        def setup(self, bottom, top):
            if len(bottom) != 2 or len(top) != 1:
                raise ValueError("TPU Python layer takes 2 bottoms (x, cont) and 1 top, got "
                                 "%d and %d" % (len(bottom), len(top)))
            p = parse_param_str(self.param_str)
            self.mode = p["mode"]
            self.H = int(p["num_output"])
            self.D = int(np.prod(bottom[0].data.shape[2:]))
            self.first_tp = p["first_tp"]
            if len(self.blobs) == 0:
                rng = np.random.RandomState(p.get("seed"))
                shapes = [(self.H, self.D), (self.H,), (self.H, self.H), (self.H, self.H),
                          (self.H,), (self.H, self.H), (self.H,)]
                fillers = blob_fillers(p)
                for i, shape in enumerate(shapes[:num_blobs(self.mode)]):
                    self.blobs.add_blob(*shape)
                    self.blobs[len(self.blobs) - 1].data[...] = fill(shape, fillers[i], rng)
            elif len(self.blobs) != num_blobs(self.mode):
                raise ValueError("TPU Python layer: expected %d blobs in mode %s, got %d"
                                 % (num_blobs(self.mode), self.mode, len(self.blobs)))

        def reshape(self, bottom, top):
            x, cont = bottom[0].data, bottom[1].data
            if x.ndim < 2:
                raise ValueError("TPU Python layer: bottom[0] must be (T, N, ...), got %s"
                                 % (x.shape,))
            D = int(np.prod(x.shape[2:]))
            if D != self.D:
                raise ValueError("TPU Python layer: the input size per row changed from D=%d "
                                 "to D=%d; W_I is H x D" % (self.D, D))
            if cont.shape != x.shape[:2]:
                raise ValueError("TPU Python layer: bottom[1] (cont) must be T x N = %s, got %s"
                                 % (x.shape[:2], cont.shape))
            top[0].reshape(x.shape[0], x.shape[1], self.H)

        def forward(self, bottom, top):
            params = [b.data for b in self.blobs]
            y, self.cache = forward(bottom[0].data, bottom[1].data, params, self.mode,
                                    first_tp=self.first_tp)
            top[0].data[...] = y

        def backward(self, top, propagate_down, bottom):
            # cont carries no gradient. A Python layer cannot refuse force_backward
            # for one bottom as the C++ layer does, so it reports zero instead.
            if propagate_down[1]:                 # setup made sure of two bottoms
                bottom[1].diff[...] = 0
            params = [b.data for b in self.blobs]
            dx, grads = backward(top[0].diff, self.cache, params)
            for blob, g in zip(self.blobs, grads):
                blob.diff[...] += g
            if propagate_down[0]:
                bottom[0].diff[...] = dx.reshape(bottom[0].diff.shape)

    return TPULayer


def __getattr__(name):
    if name == "TPULayer":
        cls = _layer_class()
        globals()["TPULayer"] = cls
        return cls
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
