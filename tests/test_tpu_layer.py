"""The TPU layer: the C++ gtest, the Python fallback, their agreement, RNN equality, bad input."""
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from psn_layers import tpu as tpu_py

T, N, D, H = 5, 3, 12, 6


def _cont(T, N):
    cont = np.ones((T, N), np.float32)
    cont[0] = 0
    cont[2, 0] = 0  # sequence 0 restarts: gating of h and tp both matter
    return cont


def _params(mode, D=D, H=H, seed=0, dtype=np.float64):
    rng = np.random.RandomState(seed)
    shapes = [(H, D), (H,), (H, H), (H, H), (H,), (H, H), (H,)][:tpu_py.num_blobs(mode)]
    return [rng.normal(0, 0.3, s).astype(dtype) for s in shapes]


# ------------------------------------------------------------------ C++ gtest

def _build_info(env):
    with open(os.path.join(env["PSN_CAFFE_HOME"], "BUILD_INFO")) as f:
        return f.read()


def test_cpp_gtest_gradient_checker(caffe_env):
    """Caffe's GradientChecker on every mode, float and double (test_tpu_layer.cpp)."""
    binary = os.path.join(caffe_env["PSN_CAFFE_HOME"], "test", "test_tpu_layer.testbin")
    out = subprocess.run([binary], capture_output=True, text=True, env=caffe_env, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    passed = re.search(r"\[  PASSED  \] (\d+) tests?", out.stdout)
    assert passed and int(passed.group(1)) >= 16, out.stdout[-2000:]
    for case in ("TestGradientTPUParams", "TestGradientTP1", "TestGradientRNNMode",
                 "TestRNNModeEqualsRNNLayer", "TestForwardTPU"):
        assert re.search(r"\[       OK \] TPULayerTest/\d+\.%s" % case, out.stdout), case


def test_cpp_gtest_gpu_cases(caffe_env):
    if "cuda=1" not in _build_info(caffe_env):
        pytest.skip("GPU cases of test_tpu_layer not run: this Caffe is built CPU_ONLY "
                    "(tools/build_caffe.sh --cuda on a CUDA host runs them)")
    binary = os.path.join(caffe_env["PSN_CAFFE_HOME"], "test", "test_tpu_layer.testbin")
    out = subprocess.run([binary, "--gtest_filter=*GPU*"], capture_output=True, text=True,
                         env=caffe_env, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:]
    assert "[  PASSED  ]" in out.stdout


# ------------------------------------------------------------------ Python layer maths

@pytest.mark.parametrize("mode", tpu_py.MODES)
def test_python_numerical_gradient(mode):
    """Central differences in float64, tp held fixed (it is data, by definition)."""
    rng = np.random.RandomState(1)
    x = rng.uniform(-1, 1, (T, N, D))
    cont = _cont(T, N).astype(np.float64)
    params = _params(mode)
    tp = tpu_py.temporal_perception(x, cont)
    w = rng.normal(size=(T, N, H))  # loss = sum(w * y)

    def loss():
        y, _ = tpu_py.forward(x, cont, params, mode, tp=tp)
        return float((w * y).sum())

    y, cache = tpu_py.forward(x, cont, params, mode, tp=tp)
    dx, grads = tpu_py.backward(w, cache, params)
    eps = 1e-6
    for name, arr, analytic in [("x", x, dx.reshape(x.shape))] + \
            [(tpu_py.BLOB_NAMES[i], params[i], grads[i]) for i in range(len(params))]:
        numeric = np.zeros_like(arr)
        it = np.nditer(arr, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            old = arr[i]
            arr[i] = old + eps
            up = loss()
            arr[i] = old - eps
            down = loss()
            arr[i] = old
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def test_temporal_perception_definition():
    rng = np.random.RandomState(2)
    x = rng.normal(size=(4, 2, 3, 5)).astype(np.float32)
    cont = np.array([[0, 0], [1, 1], [1, 0], [1, 1]], np.float32)
    tp = tpu_py.temporal_perception(x, cont)
    assert tp[0].tolist() == [0, 0] and tp[2, 1] == 0
    expected = np.std((x[3, 1] - x[2, 1]).astype(np.float64))  # population std
    assert tp[3, 1] == pytest.approx(expected, rel=1e-6)
    # tp1 ignores the frames
    _, cache = tpu_py.forward(x, cont, _params("tp1", D=15, dtype=np.float32), "tp1")
    assert (cache["tp"] == 1).all()


def test_first_frame_rules():
    """tp at a first frame (t = 0, and the restart of sequence 0 at t = 2): 0, 1 or the next
    frame's tp; a sequence of one frame (sequence 1 at t = 3, the last step) gets 1 under NEXT."""
    rng = np.random.RandomState(5)
    x = rng.normal(size=(4, 2, 6)).astype(np.float64)
    cont = np.array([[0, 0], [1, 1], [0, 1], [1, 0]], np.float32)
    zero = tpu_py.temporal_perception(x, cont, "zero")
    one = tpu_py.temporal_perception(x, cont, "one")
    nxt = tpu_py.temporal_perception(x, cont, "next")
    first = np.array([[1, 1], [0, 0], [1, 0], [0, 1]], bool)
    assert (zero[first] == 0).all() and (one[first] == 1).all()
    assert (zero[~first] == one[~first]).all() and (nxt[~first] == zero[~first]).all()
    assert nxt[0, 0] == zero[1, 0] and nxt[0, 1] == zero[1, 1]
    assert nxt[2, 0] == zero[3, 0]          # the restart takes its successor's tp
    assert nxt[3, 1] == 1                   # no successor: no modulation
    assert zero[1, 0] == pytest.approx(np.std(x[1, 0] - x[0, 0]))
    with pytest.raises(ValueError, match="first_tp"):
        tpu_py.temporal_perception(x, cont, "two")


def test_python_fillers_per_group():
    """The Python layer picks each weight group's filler as the C++ layer does."""
    p = tpu_py.parse_param_str(
        '{"num_output": 4, "weight_filler": {"type": "xavier"}, '
        '"modulation_weight_filler": {"type": "gaussian", "std": 2}, '
        '"bias_filler": {"type": "constant", "value": 0.5}}')
    f = tpu_py.blob_fillers(p)
    assert f[0] == f[2] == f[3] == {"type": "xavier"}
    assert f[5] == {"type": "gaussian", "std": 2}
    assert f[1] == f[4] == f[6] == {"type": "constant", "value": 0.5}
    p = tpu_py.parse_param_str('{"num_output": 4, "input_weight_filler": {"type": "msra"}, '
                               '"hidden_weight_filler": {"type": "uniform"}}')
    f = tpu_py.blob_fillers(p)
    assert f[0] == {"type": "msra"} and f[2] == f[3] == {"type": "uniform"}
    assert f[5] == {"type": "constant"}
    with pytest.raises(ValueError, match="first_tp"):
        tpu_py.parse_param_str('{"num_output": 4, "first_tp": "last"}')


def test_python_param_str_errors():
    with pytest.raises(ValueError, match="num_output"):
        tpu_py.parse_param_str("{}")
    with pytest.raises(ValueError, match="num_output > 0"):
        tpu_py.parse_param_str('{"num_output": 0}')
    p = tpu_py.parse_param_str('{"num_output": 1, "mode": "TP1", "first_tp": "Next"}')
    assert (p["num_output"], p["mode"], p["first_tp"]) == (1, "tp1", "next")
    p = tpu_py.parse_param_str('{"num_output": 2}')
    assert (p["mode"], p["first_tp"]) == ("tpu", "zero")       # the defaults
    with pytest.raises(ValueError, match="mode"):
        tpu_py.parse_param_str('{"num_output": 4, "mode": "lstm"}')
    with pytest.raises(ValueError, match="JSON"):
        tpu_py.parse_param_str("num_output: 4")


# ------------------------------------------------------------------ C++ vs Python vs RNN in Caffe

NET = """
name: "tpu_compare"
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: {T} dim: {N} dim: {D} }} }} }}
layer {{ name: "cont" type: "Input" top: "cont" input_param {{ shape {{ dim: {T} dim: {N} }} }} }}
layer {{ name: "cpp" type: "{cpp_type}" bottom: "x" bottom: "cont" top: "y_cpp"
  recurrent_param {{ num_output: {H}
    weight_filler {{ type: "gaussian" std: 0.1 }} bias_filler {{ type: "gaussian" std: 0.1 }} }}
  {tpu_param} }}
layer {{ name: "py" type: "Python" bottom: "x" bottom: "cont" top: "y_py"
  python_param {{ module: "psn_layers.tpu" layer: "TPULayer"
    param_str: '{{"num_output": {H}, "mode": "{mode}", "first_tp": "{first}"}}' }} }}
force_backward: true
"""


def _compare_net(caffe, tmp_path, mode, cpp_type="TPU", T=T, N=N, D=D, H=H, first="zero"):
    tpu_param = "" if cpp_type == "RNN" else "tpu_param { mode: %s first_tp: %s }" % (
        mode.upper(), first.upper())
    path = tmp_path / ("%s_%s_%s.prototxt" % (cpp_type, mode, first))
    path.write_text(NET.format(T=T, N=N, D=D, H=H, cpp_type=cpp_type, mode=mode,
                               tpu_param=tpu_param, first=first))
    net = caffe.Net(str(path), caffe.TRAIN)
    cpp, py = net.params["cpp"], net.params["py"]
    assert len(cpp) == len(py) == tpu_py.num_blobs(mode)
    for a, b in zip(cpp, py):
        assert a.data.shape == b.data.shape
        b.data[...] = a.data
    rng = np.random.RandomState(3)
    net.blobs["x"].data[...] = rng.uniform(-1, 1, (T, N, D))
    net.blobs["cont"].data[...] = _cont(T, N)
    return net


def _run_both(net, seed=4):
    net.forward()
    rng = np.random.RandomState(seed)
    dy = rng.normal(size=net.blobs["y_cpp"].data.shape).astype(np.float32)
    net.blobs["y_cpp"].diff[...] = dy
    net.blobs["y_py"].diff[...] = dy
    for layer in ("cpp", "py"):
        for p in net.params[layer]:
            p.diff[...] = 0
    # Backward of each layer alone, so that x's diff is each layer's own.
    # Backward of each layer alone; x reaches each through its own split blob.
    net.backward(start="cpp", end="cpp")
    dx_cpp = net.blobs[net.bottom_names["cpp"][0]].diff.copy()
    net.backward(start="py", end="py")
    dx_py = net.blobs[net.bottom_names["py"][0]].diff.copy()
    assert net.bottom_names["cpp"][0] != net.bottom_names["py"][0]
    return dx_cpp, dx_py


def _assert_rel(a, b, rtol=1e-5, what=""):
    scale = max(np.abs(a).max(), np.abs(b).max(), 1e-12)
    err = np.abs(a - b).max() / scale
    assert err <= rtol, "%s: relative error %.3g" % (what, err)


def _assert_layers_agree(net, rtol=1e-5):
    """Layer "cpp" and layer "py" agree on y, dx and every parameter gradient."""
    dx_cpp, dx_py = _run_both(net)
    _assert_rel(net.blobs["y_cpp"].data, net.blobs["y_py"].data, rtol, what="forward")
    _assert_rel(dx_cpp, dx_py, rtol, what="dx")
    for i, (a, b) in enumerate(zip(net.params["cpp"], net.params["py"])):
        _assert_rel(a.diff, b.diff, rtol, what=tpu_py.BLOB_NAMES[i])


@pytest.mark.parametrize("mode", tpu_py.MODES)
def test_cpp_and_python_layers_agree(caffe, tmp_path, mode):
    _assert_layers_agree(_compare_net(caffe, tmp_path, mode))


@pytest.mark.parametrize("first", ["one", "next"])
def test_cpp_and_python_agree_on_first_frame_rules(caffe, tmp_path, first):
    net = _compare_net(caffe, tmp_path, "tpu", first=first)
    _assert_layers_agree(net)
    zero = _compare_net(caffe, tmp_path, "tpu", first="zero")
    for n in (net, zero):
        n.forward()
    # The rule changes the output (frame 0 is no longer erased).
    assert np.abs(net.blobs["y_cpp"].data[0] - zero.blobs["y_cpp"].data[0]).max() > 1e-3


def test_cpp_and_python_agree_at_paper_width(caffe, tmp_path):
    """D = 37632 (3x112x112): the long reductions of tp and W_I x stay within 1e-5."""
    # float32 sums over 37632 inputs: their order (BLAS threads) moves b_I's gradient by
    # 1.1e-5 relative (measured with one OpenBLAS thread), so 1e-5 is too tight here.
    _assert_layers_agree(_compare_net(caffe, tmp_path, "tpu", T=16, N=2, D=37632, H=8),
                         rtol=5e-5)


def test_rnn_mode_equals_caffe_rnn_layer(caffe, tmp_path):
    """Caffe's own RNN layer vs TPU mode rnn, given the same five blobs."""
    text = NET.format(T=T, N=N, D=D, H=H, cpp_type="RNN", mode="rnn", tpu_param="",
                      first="zero")
    text = text.replace('type: "Python" bottom: "x" bottom: "cont" top: "y_py"\n'
                        '  python_param { module: "psn_layers.tpu" layer: "TPULayer"\n'
                        '    param_str: \'{"num_output": %d, "mode": "rnn", "first_tp": "zero"}\' }'
                        % H,
                        'type: "TPU" bottom: "x" bottom: "cont" top: "y_py"\n'
                        '  recurrent_param { num_output: %d } tpu_param { mode: RNN }' % H)
    assert 'type: "TPU"' in text
    path = tmp_path / "rnn_vs_tpu.prototxt"
    path.write_text(text)
    net = caffe.Net(str(path), caffe.TRAIN)
    for a, b in zip(net.params["cpp"], net.params["py"]):
        b.data[...] = a.data
    rng = np.random.RandomState(3)
    net.blobs["x"].data[...] = rng.uniform(-1, 1, (T, N, D))
    net.blobs["cont"].data[...] = _cont(T, N)
    _assert_layers_agree(net)  # here "cpp" is Caffe's RNN and "py" the TPU in mode rnn


def test_swapping_rnn_for_tpu_is_the_only_edit(caffe, tmp_path):
    rnn_net = textwrap.dedent("""
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 4 dim: 2 dim: 3 dim: 5 } } }
        layer { name: "cont" type: "Input" top: "cont" input_param { shape { dim: 4 dim: 2 } } }
        layer { name: "rec" type: "RNN" bottom: "x" bottom: "cont" top: "h"
          recurrent_param { num_output: 7 weight_filler { type: "xavier" } } }
        """)
    for kind in ("RNN", "TPU"):
        path = tmp_path / ("%s.prototxt" % kind)
        path.write_text(rnn_net.replace('type: "RNN"', 'type: "%s"' % kind))
        net = caffe.Net(str(path), caffe.TEST)
        net.blobs["x"].data[...] = 0.5
        net.blobs["cont"].data[...] = _cont(4, 2)
        net.forward()
        assert net.blobs["h"].data.shape == (4, 2, 7)
        assert net.params["rec"][0].data.shape == (7, 15)


# ------------------------------------------------------------------ bad parameters

BAD = """
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 4 dim: 2 dim: 6 }} }} }}
layer {{ name: "cont" type: "Input" top: "cont" input_param {{ shape {{ {cont_dims} }} }} }}
layer {{ name: "tpu" type: "TPU" {bottoms} top: "y" {param} }}
"""


@pytest.mark.parametrize("case,cont_dims,bottoms,param,message", [
    ("no num_output", "dim: 4 dim: 2", 'bottom: "x" bottom: "cont"', "",
     "recurrent_param { num_output } must be set"),
    ("cont shape", "dim: 4 dim: 3", 'bottom: "x" bottom: "cont"',
     "recurrent_param { num_output: 3 }", "(cont) must be T x N = 4 x 2"),
    ("three bottoms", "dim: 4 dim: 2", 'bottom: "x" bottom: "cont" bottom: "x"',
     "recurrent_param { num_output: 3 }", "TPU Layer takes 2 bottom blob(s)"),
    ("one bottom", "dim: 4 dim: 2", 'bottom: "x"',
     "recurrent_param { num_output: 3 }", "TPU Layer takes 2 bottom blob(s)"),
])
def test_bad_parameters_give_caffe_errors(caffe_env, tmp_path, case, cont_dims, bottoms, param,
                                          message):
    path = tmp_path / "bad.prototxt"
    path.write_text(BAD.format(cont_dims=cont_dims, bottoms=bottoms, param=param))
    code = "import caffe; caffe.Net(%r, caffe.TEST)" % str(path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(caffe_env, GLOG_minloglevel="0"), timeout=120)
    assert out.returncode != 0, case
    assert message in out.stderr, out.stderr[-2000:]


def test_input_size_change_is_an_error(caffe_env, tmp_path):
    path = tmp_path / "ok.prototxt"
    path.write_text(BAD.format(cont_dims="dim: 4 dim: 2", bottoms='bottom: "x" bottom: "cont"',
                               param="recurrent_param { num_output: 3 }"))
    code = textwrap.dedent("""
        import caffe
        net = caffe.Net(%r, caffe.TEST)
        net.forward()
        net.blobs["x"].reshape(4, 2, 7)
        net.forward()
        """ % str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(caffe_env, GLOG_minloglevel="0"), timeout=120)
    assert out.returncode != 0
    assert "the input size per row changed from D=6 to D=7" in out.stderr, out.stderr[-2000:]


# ------------------------------------------------------------------ the Python layer's own

@pytest.mark.parametrize("filler, mean, std, low, high", [
    ({"type": "constant", "value": 0.25}, 0.25, 0.0, 0.25, 0.25),
    ({"type": "constant"}, 0.0, 0.0, 0.0, 0.0),
    ({"type": "gaussian", "mean": 1.0, "std": 0.5}, 1.0, 0.5, None, None),
    ({"type": "gaussian"}, 0.0, 1.0, None, None),
    ({"type": "uniform", "min": -2.0, "max": 4.0}, 1.0, 6 / np.sqrt(12), -2.0, 4.0),
    ({"type": "uniform"}, 0.5, 1 / np.sqrt(12), 0.0, 1.0),
    # Caffe's xavier (FAN_IN): uniform(+-sqrt(3 / fan_in)), fan_in = 50 columns.
    ({"type": "xavier"}, 0.0, np.sqrt(3 / 50) / np.sqrt(3), -np.sqrt(3 / 50), np.sqrt(3 / 50)),
    # Caffe's msra (FAN_IN): gaussian with std sqrt(2 / fan_in).
    ({"type": "msra"}, 0.0, np.sqrt(2 / 50), None, None),
])
def test_python_fillers_draw_what_caffes_fillers_draw(filler, mean, std, low, high):
    w = tpu_py.fill((400, 50), filler, np.random.RandomState(0))
    assert w.dtype == np.float32 and w.shape == (400, 50)
    assert abs(w.mean() - mean) <= 0.02 * max(std, 0.1) * 5
    assert w.std() == pytest.approx(std, rel=0.02, abs=1e-7)
    if low is not None:
        assert w.min() >= low and w.max() <= high
        assert w.min() < low + 0.01 * (high - low + 1e-9) + 1e-7 or std == 0
    with pytest.raises(ValueError, match="unsupported filler type 'positive_unitball'"):
        tpu_py.fill((3, 2), {"type": "positive_unitball"}, np.random.RandomState(0))


def test_python_filler_fan_in_of_a_bias_is_its_length():
    b = tpu_py.fill((200,), {"type": "msra"}, np.random.RandomState(1))
    assert b.std() == pytest.approx(np.sqrt(2 / 200), rel=0.15)


PY_NET = """
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 4 dim: 2 dim: 6 }} }} }}
layer {{ name: "cont" type: "Input" top: "cont" input_param {{ shape {{ {cont_dims} }} }} }}
layer {{ name: "py" type: "Python" {bottoms} top: "y"
  python_param {{ module: "psn_layers.tpu" layer: "TPULayer" param_str: '{param}' }} }}
{extra}
"""


def _py_net(caffe, tmp_path, param, cont_dims="dim: 4 dim: 2",
            bottoms='bottom: "x" bottom: "cont"', extra=""):
    path = tmp_path / "py.prototxt"
    path.write_text(PY_NET.format(param=param, cont_dims=cont_dims, bottoms=bottoms,
                                  extra=extra))
    return caffe.Net(str(path), caffe.TRAIN)


def test_python_layer_fills_its_blobs_in_order_from_the_seed(caffe, tmp_path):
    param = ('{"num_output": 3, "seed": 7, "weight_filler": {"type": "gaussian", "std": 0.5}, '
             '"bias_filler": {"type": "constant", "value": 0.1}}')
    net = _py_net(caffe, tmp_path, param)
    rng = np.random.RandomState(7)
    shapes = [(3, 6), (3,), (3, 3), (3, 3), (3,), (3, 3), (3,)]
    fillers = tpu_py.blob_fillers(tpu_py.parse_param_str(param))
    assert len(net.params["py"]) == 7
    for blob, shape, filler in zip(net.params["py"], shapes, fillers):
        np.testing.assert_array_equal(blob.data, tpu_py.fill(shape, filler, rng))
    net = _py_net(caffe, tmp_path, '{"num_output": 3, "mode": "rnn"}')
    assert [b.data.shape for b in net.params["py"]] == shapes[:5]
    assert not any(b.data.any() for b in net.params["py"])   # default fillers: constant 0


@pytest.mark.parametrize("kw, message", [
    (dict(bottoms='bottom: "x"'), "takes 2 bottoms (x, cont) and 1 top, got 1 and 1"),
    (dict(cont_dims="dim: 4 dim: 3"), "bottom[1] (cont) must be T x N = (4, 2), got (4, 3)"),
])
def test_python_layer_refuses_wrong_bottoms(caffe, tmp_path, kw, message):
    with pytest.raises(Exception, match=re.escape(message)):
        _py_net(caffe, tmp_path, '{"num_output": 3}', **kw)


def test_python_layer_refuses_an_input_size_change(caffe, tmp_path):
    net = _py_net(caffe, tmp_path, '{"num_output": 3}')
    net.forward()
    net.blobs["x"].reshape(4, 2, 7)
    with pytest.raises(Exception, match="changed from D=6 to D=7"):
        net.forward()


def test_python_layer_backward_respects_propagate_down(caffe, tmp_path):
    param = '{"num_output": 3, "seed": 1, "weight_filler": {"type": "gaussian", "std": 0.5}}'
    loss = 'layer { name: "loss" type: "Reduction" bottom: "y" top: "loss" loss_weight: 1 }'
    for force in (False, True):
        net = _py_net(caffe, tmp_path, param, extra=loss + ("\nforce_backward: true" * force))
        net.blobs["x"].data[...] = np.random.RandomState(0).normal(size=(4, 2, 6))
        net.blobs["cont"].data[...] = _cont(4, 2)
        net.forward()
        net.blobs["x"].diff[...] = 7
        net.blobs["cont"].diff[...] = 7
        net.backward()                              # d loss / d y = 1 everywhere
        assert any(b.diff.any() for b in net.params["py"])
        if not force:
            # No bottom wants a gradient (Inputs): both diffs are left alone.
            assert (net.blobs["x"].diff == 7).all() and (net.blobs["cont"].diff == 7).all()
            continue
        # force_backward: x gets the layer's gradient, cont (no gradient) gets zero.
        assert not net.blobs["cont"].diff.any()
        params = [b.data for b in net.params["py"]]
        _, cache = tpu_py.forward(net.blobs["x"].data, net.blobs["cont"].data, params)
        dx, _ = tpu_py.backward(np.ones((4, 2, 3), np.float32), cache, params)
        np.testing.assert_allclose(net.blobs["x"].diff.reshape(8, 6), dx, rtol=1e-5, atol=1e-7)


def test_python_layer_refuses_blobs_of_another_mode(caffe, tmp_path):
    """A layer definition may carry its blobs (a NetParameter saved with weights): five RNN
    blobs cannot serve a TPU-mode layer."""
    blob = "blobs { shape { dim: 1 } data: 0 }"
    path = tmp_path / "blobs.prototxt"
    path.write_text(PY_NET.format(param='{"num_output": 3}', cont_dims="dim: 4 dim: 2",
                                  bottoms='bottom: "x" bottom: "cont" ' + blob * 5, extra=""))
    with pytest.raises(Exception, match="expected 7 blobs in mode tpu, got 5"):
        caffe.Net(str(path), caffe.TRAIN)


def test_temporal_perception_edge_cases():
    rng = np.random.RandomState(8)
    x = rng.normal(size=(2, 3, 4))
    # Two steps: the second frame's tp is the std of its difference from the first.
    tp = tpu_py.temporal_perception(x, np.ones((2, 3)), "one")
    assert tp[0].tolist() == [1, 1, 1]           # t = 0 starts a sequence whatever cont says
    np.testing.assert_allclose(tp[1], (x[1] - x[0]).std(axis=1), rtol=1e-12)
    # Under NEXT, a one-frame sequence followed by a restart has no successor: tp = 1.
    x = rng.normal(size=(4, 1, 5))
    cont = np.array([[0], [0], [1], [1]], np.float32)
    nxt = tpu_py.temporal_perception(x, cont, "next")
    assert nxt[0, 0] == 1.0
    assert nxt[1, 0] == pytest.approx(np.std(x[2, 0] - x[1, 0]))
    with pytest.raises(ValueError, match="TPU mode must be one of"):
        tpu_py.forward(x, cont, _params("tpu", D=5), mode="lstm")


def test_python_layer_input_needs_time_and_batch_axes(caffe, tmp_path):
    net_text = PY_NET.replace("dim: 4 dim: 2 dim: 6", "{x_dims}")
    path = tmp_path / "dims.prototxt"
    # (T, N): one feature per row is a valid input.
    path.write_text(net_text.format(x_dims="dim: 4 dim: 2", param='{"num_output": 3}',
                                    cont_dims="dim: 4 dim: 2",
                                    bottoms='bottom: "x" bottom: "cont"', extra=""))
    net = caffe.Net(str(path), caffe.TRAIN)
    assert net.params["py"][0].data.shape == (3, 1)
    path.write_text(net_text.format(x_dims="dim: 4", param='{"num_output": 3}',
                                    cont_dims="dim: 4 dim: 2",
                                    bottoms='bottom: "x" bottom: "cont"', extra=""))
    with pytest.raises(Exception, match=re.escape("bottom[0] must be (T, N, ...), got (4,)")):
        caffe.Net(str(path), caffe.TRAIN)


def test_python_layer_gives_x_its_gradient_and_leaves_cont_alone(caffe, tmp_path):
    """x computed by a layer with weights wants a gradient, cont (an Input) does not: the
    propagate_down Caffe passes is [True, False]."""
    param = '{"num_output": 3, "seed": 1, "weight_filler": {"type": "gaussian", "std": 0.5}}'
    text = PY_NET.replace('top: "x" input_param', 'top: "x0" input_param').format(
        param=param, cont_dims="dim: 4 dim: 2", bottoms='bottom: "x" bottom: "cont"', extra="")
    ip = ('layer { name: "ip" type: "InnerProduct" bottom: "x0" top: "x" inner_product_param '
          '{ num_output: 6 axis: 2 weight_filler { type: "gaussian" std: 0.3 } } }\n')
    text = text.replace('layer { name: "py"', ip + 'layer { name: "py"') + """
layer { name: "loss" type: "Reduction" bottom: "y" top: "loss" loss_weight: 1 }
"""
    path = tmp_path / "ip.prototxt"
    path.write_text(text)
    net = caffe.Net(str(path), caffe.TRAIN)
    net.blobs["x0"].data[...] = np.random.RandomState(0).normal(size=(4, 2, 6))
    net.blobs["cont"].data[...] = _cont(4, 2)
    net.forward()
    net.blobs["cont"].diff[...] = 7
    net.backward()
    assert (net.blobs["cont"].diff == 7).all()
    assert net.blobs["x"].diff.any() and net.params["ip"][0].diff.any()


def test_the_module_names_only_its_layer_class():
    with pytest.raises(AttributeError, match="has no attribute 'LSTMLayer'"):
        tpu_py.LSTMLayer
