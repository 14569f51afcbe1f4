"""psn.onnx_export, psn.onnx_run, tools/export_onnx.py and tools/predict.py --onnx: the exported
graph gives Caffe's probabilities on preprocessed clips for every kind of net; the recurrent
layers alone equal the numpy reference; bad folds and weights are refused whole; run_folds
predicts through onnxruntime where pycaffe does not import."""
import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from run_folds_helpers import ROOT, run_tool

EXPORT = os.path.join(ROOT, "tools", "export_onnx.py")
PREDICT = os.path.join(ROOT, "tools", "predict.py")
TOL = 1e-4     # absolute, on probabilities (the bar; measured: below 2e-6)


def _export(caffe_env, *args):
    return subprocess.run([sys.executable, EXPORT] + list(args), capture_output=True, text=True,
                          env=caffe_env, timeout=600)


# ------------------------------------------------------------------ the recurrent layers

def _write_step(folder, layer_text, blobs, T, N, D):
    """deploy.prototxt with inputs x (T, N, D), cont (T, N) and one recurrent layer, and its
    weights as a .caffemodel written with caffe_pb2."""
    from psn.caffe_proto import caffe_pb2
    deploy = os.path.join(folder, "deploy.prototxt")
    with open(deploy, "w") as f:
        f.write(textwrap.dedent("""\
            name: "step"
            layer { name: "x" type: "Input" top: "x"
                    input_param { shape { dim: %d dim: %d dim: %d } } }
            layer { name: "cont" type: "Input" top: "cont"
                    input_param { shape { dim: %d dim: %d } } }
            """) % (T, N, D, T, N) + layer_text)
    net = caffe_pb2.NetParameter()
    layer = net.layer.add()
    layer.name = "rec"
    for b in blobs:
        blob = layer.blobs.add()
        blob.shape.dim.extend(b.shape)
        blob.data.extend(b.ravel().tolist())
    weights = os.path.join(folder, "w.caffemodel")
    with open(weights, "wb") as f:
        f.write(net.SerializeToString())
    return deploy, weights


RECURRENT = {
    # (layer text, numpy mode, first_tp)
    "tpu_zero": ('layer { name: "rec" type: "TPU" bottom: "x" bottom: "cont" top: "rec" '
                 'recurrent_param { num_output: 5 } tpu_param { mode: TPU first_tp: ZERO } }',
                 "tpu", "zero"),
    "tpu_one": ('layer { name: "rec" type: "TPU" bottom: "x" bottom: "cont" top: "rec" '
                'recurrent_param { num_output: 5 } tpu_param { mode: TPU first_tp: ONE } }',
                "tpu", "one"),
    "tpu_next": ('layer { name: "rec" type: "TPU" bottom: "x" bottom: "cont" top: "rec" '
                 'recurrent_param { num_output: 5 } tpu_param { mode: TPU first_tp: NEXT } }',
                 "tpu", "next"),
    "tp1": ('layer { name: "rec" type: "TPU" bottom: "x" bottom: "cont" top: "rec" '
            'recurrent_param { num_output: 5 } tpu_param { mode: TP1 } }', "tp1", "zero"),
    "caffe_rnn": ('layer { name: "rec" type: "RNN" bottom: "x" bottom: "cont" top: "rec" '
                  'recurrent_param { num_output: 5 } }', "rnn", "zero"),
    "python_tpu": ('layer { name: "rec" type: "Python" bottom: "x" bottom: "cont" top: "rec" '
                   'python_param { module: "psn_layers.tpu" layer: "TPULayer" '
                   'param_str: \'{"num_output": 5, "mode": "tpu", "first_tp": "next"}\' } }',
                   "tpu", "next"),
}


@pytest.mark.parametrize("kind", sorted(RECURRENT))
def test_one_recurrent_layer_equals_the_numpy_reference(caffe_env, tmp_path, kind):
    """The unrolled ONNX TPU (and Caffe's RNN) against psn_layers.tpu.forward, with a clip
    that starts again in the middle (cont 0 at t = 3 for one sequence) and inputs large enough
    to reach tanh's saturation."""
    import onnxruntime as ort

    from psn.onnx_export import export_net
    from psn_layers import tpu
    text, mode, first_tp = RECURRENT[kind]
    T, N, D, H = 5, 3, 6, 5
    rng = np.random.RandomState(1)
    shapes = [(H, D), (H,), (H, H), (H, H), (H,)] + ([] if mode == "rnn" else [(H, H), (H,)])
    params = [rng.normal(0, 0.7, s).astype(np.float32) for s in shapes]
    deploy, weights = _write_step(str(tmp_path), text, params, T, N, D)
    model = export_net(deploy, weights, outputs=["rec"])
    x = rng.normal(0, 2, (T, N, D)).astype(np.float32)
    cont = np.ones((T, N), np.float32)
    cont[0] = 0
    cont[3, 1] = 0
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x, "cont": cont})[0]
    want, _ = tpu.forward(x, cont, params, mode=mode, first_tp=first_tp)
    np.testing.assert_allclose(got, want, atol=1e-5)
    if mode == "tpu":      # the step is not blind to tp: another tp gives another output
        other, _ = tpu.forward(x, cont, params, mode=mode, tp=np.ones((T, N), np.float32))
        assert np.abs(other - want).max() > 1e-2


# ------------------------------------------------------------------ whole nets against Caffe

MODELS = ("psn_tp1", "alexnet_rnn", "resnet10_sum")


@pytest.fixture(scope="module")
def smoke_folds(caffe_env, trained, tmp_path_factory):
    """{model: fold folder}: the session's PSN fold and one smoke-trained fold each of PSN_tp1,
    AlexNet+RNN and ResNet10/SUM on the same data."""
    data, out, _ = trained
    folds = {"psn": os.path.join(out, "fold01")}
    base = tmp_path_factory.mktemp("onnx_runs")
    for model in MODELS:
        run = str(base / model)
        res = run_tool(caffe_env, "--data", data, "--out", run, "--model", model, "--schedule",
                       "smoke", "--width", "0.125", "--folds", "1")
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        folds[model] = os.path.join(run, "fold01")
    return folds


@pytest.fixture(scope="module")
def preprocessed(first):
    """Eight clips of the preprocessing pipeline's output (faces, RPCA's E, cont)."""
    import h5py

    from preprocessing.layout import DataFolder
    out = first[0]
    arrays = {k: [] for k in ("raw", "sparse", "cont")}
    for shard in sorted(os.path.join(DataFolder(out).shard_dir, f)
                        for f in os.listdir(DataFolder(out).shard_dir) if "_aug" not in f):
        with h5py.File(shard, "r") as f:
            for k in arrays:
                arrays[k].append(f[k][:])
    arrays = {k: np.concatenate(v)[:8].astype(np.float32) for k, v in arrays.items()}
    assert len(arrays["raw"]) == 8 and arrays["sparse"].any()
    return arrays


@pytest.mark.parametrize("model", ("psn",) + MODELS)
def test_onnxruntime_gives_caffes_probabilities(caffe, smoke_folds, preprocessed, tmp_path,
                                                model):
    from psn.caffe_train import done_weights
    from psn.onnx_export import export_fold
    from psn.onnx_run import OnnxModel
    from psn.predictions import clip_probabilities
    fold = smoke_folds[model]
    out = str(tmp_path / "m.onnx")
    export_fold(fold, out)
    net = caffe.Net(os.path.join(fold, "deploy.prototxt"), done_weights(fold), caffe.TEST)
    want = clip_probabilities(net, preprocessed["raw"], preprocessed["sparse"],
                              preprocessed["cont"])
    onnx_model = OnnxModel(out)
    got = onnx_model.clip_probabilities(preprocessed["raw"], preprocessed["sparse"],
                                        preprocessed["cont"], batch=3)
    assert got.shape == want.shape == (8, 4)
    assert np.abs(got - want).max() < TOL
    assert (got.argmax(1) == want.argmax(1)).all()
    # Each clip's answer is its own: the clips differ, and Caffe's batch of 5 and ours of 3
    # agree, so nothing leaks between the clips of a batch.
    assert np.abs(want - want[:1]).max() > 1e-6
    assert onnx_model.classes == ["positive", "negative", "surprise", "others"]
    assert onnx_model.metadata["model"]["model"] == model
    assert onnx_model.frames == 16


def test_every_model_of_psn_nets_exports(caffe, tmp_path):
    """Every model name, the VGG16 ones included, exports and runs with Caffe's numbers
    (weights from Caffe's fillers, BatchNorm statistics set to non-trivial values), in
    onnxruntime with a free batch and in OpenCV's ONNX importer (the project's OpenCV 4.x)
    with a fixed one."""
    import cv2
    from google.protobuf import text_format

    from psn import nets
    from psn.onnx_export import export_net
    from psn.onnx_run import OnnxModel
    from psn.predictions import clip_probabilities
    rng = np.random.RandomState(0)
    for model in sorted(nets.MODELS):
        _, dp, _ = nets.build(model, width=0.125)
        deploy = str(tmp_path / (model + ".prototxt"))
        with open(deploy, "w") as f:
            f.write(text_format.MessageToString(dp))
        net = caffe.Net(deploy, caffe.TEST)
        for name, blobs in net.params.items():
            if net.layer_dict[name].type == "BatchNorm":
                blobs[0].data[...] = rng.normal(0, 0.1, blobs[0].data.shape)
                blobs[1].data[...] = rng.uniform(0.5, 2, blobs[1].data.shape)
                blobs[2].data[...] = 2.0
        weights = str(tmp_path / (model + ".caffemodel"))
        net.save(weights)
        if "flow" in net.inputs:       # the optical-flow baselines: u, v, strain in [-1, 1]
            inputs = {"flow": rng.uniform(-1, 1, (6, 3, 28, 28)).astype(np.float32)}
        else:
            T = net.blobs["cont"].data.shape[1]
            cont = np.ones((6, T), np.float32)
            cont[:, 0] = 0
            inputs = {"raw": rng.randint(0, 256, (6, T, 3, 112, 112)).astype(np.float32),
                      "sparse": np.abs(rng.normal(0, 0.05, (6, T, 1, 112, 112))).astype(np.float32),
                      "cont": cont}
        want = clip_probabilities(net, **inputs)
        got = OnnxModel(export_net(deploy, weights).SerializeToString(), name=model) \
            .clip_probabilities(batch=6, **inputs)
        assert np.abs(got - want).max() < TOL, model
        fixed = export_net(deploy, weights, batch=6)
        path = str(tmp_path / (model + ".onnx"))
        with open(path, "wb") as f:
            f.write(fixed.SerializeToString())
        cv_net = cv2.dnn.readNetFromONNX(path)
        for i in fixed.graph.input:
            cv_net.setInput(inputs[i.name], i.name)
        assert np.abs(cv_net.forward("clip_prob") - want).max() < TOL, model
        # The fixed batch in onnxruntime: 4 clips padded to 6, as Caffe pads its last batch.
        np.testing.assert_allclose(OnnxModel(path).clip_probabilities(
            **{k: v[:4] for k, v in inputs.items()}), want[:4],
                                   atol=TOL)


# ------------------------------------------------------------------ bad input

def _write_net(folder, text, shape):
    """deploy.prototxt: one Input x of `shape`, then `text`; an empty .caffemodel."""
    from psn.caffe_proto import caffe_pb2
    deploy = os.path.join(folder, "deploy.prototxt")
    with open(deploy, "w") as f:
        f.write('layer { name: "x" type: "Input" top: "x" input_param { shape { %s } } }\n'
                % " ".join("dim: %d" % d for d in shape) + text)
    weights = os.path.join(folder, "w.caffemodel")
    with open(weights, "wb") as f:
        f.write(caffe_pb2.NetParameter().SerializeToString())
    return deploy, weights


def test_flatten_of_middle_axes_keeps_the_trailing_ones(caffe_env, tmp_path):
    import onnxruntime as ort

    from psn.onnx_export import export_net
    deploy, weights = _write_net(str(tmp_path), 'layer { name: "f" type: "Flatten" bottom: "x" '
                                 'top: "f" flatten_param { axis: 1 end_axis: 2 } }', (2, 3, 4, 5))
    x = np.arange(120, dtype=np.float32).reshape(2, 3, 4, 5)
    got = ort.InferenceSession(export_net(deploy, weights, outputs=["f"]).SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.shape == (2, 12, 5) and (got == x.reshape(2, 12, 5)).all()


@pytest.mark.parametrize("text, said", [
    ('layer { name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param { pool: AVE '
     'kernel_size: 3 stride: 2 pad_h: 1 pad_w: 0 } }', "average pooling whose windows pass"),
    ('layer { name: "bn" type: "BatchNorm" bottom: "x" top: "bn" batch_norm_param { '
     'use_global_stats: false } }', "use_global_stats false"),
    ('layer { name: "t" type: "Python" bottom: "x" bottom: "x" top: "t" python_param { '
     'module: "psn_layers.tpu" layer: "TPULayer" param_str: \'{"num_output": 4, "mode": "gru"}\' '
     '} }', "mode must be one of"),
])
def test_what_an_onnx_graph_cannot_say_as_caffe_does_is_refused(caffe_env, tmp_path, text, said):
    """Average pooling padded on one axis only (ONNX's count_include_pad is for both), batch
    statistics, a Python TPU of an unknown mode: refused naming the layer, not exported wrong."""
    from psn.onnx_export import ExportError, export_net
    deploy, weights = _write_net(str(tmp_path), text, (2, 3, 7, 8))
    with pytest.raises(ExportError, match=said):
        export_net(deploy, weights, outputs=["p" if "Pool" in text else "bn" if "Batch" in text
                                             else "t"])


def test_a_fold_without_weights_is_refused(caffe_env, trained, tmp_path):
    _, out, _ = trained
    fold = str(tmp_path / "fold01")
    shutil.copytree(os.path.join(out, "fold01"), fold)
    os.remove(os.path.join(fold, "DONE"))
    res = _export(caffe_env, fold, "--out", str(tmp_path / "m.onnx"))
    assert res.returncode == 2
    assert "no DONE file" in res.stderr and fold in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == ["fold01"]


def test_weights_of_another_width_are_refused_naming_the_layer(caffe_env, trained, tmp_path):
    """The fold's deploy net written at width 0.25, given the weights trained at 0.125."""
    from google.protobuf import text_format

    from psn import nets
    from psn.caffe_train import done_weights
    _, out, _ = trained
    fold = str(tmp_path / "fold01")
    shutil.copytree(os.path.join(out, "fold01"), fold)
    _, dp, _ = nets.build("psn", width=0.25)
    with open(os.path.join(fold, "deploy.prototxt"), "w") as f:
        f.write(text_format.MessageToString(dp))
    target = str(tmp_path / "m.onnx")
    res = _export(caffe_env, fold, "--weights", done_weights(os.path.join(out, "fold01")),
                  "--out", target)
    assert res.returncode == 2, res.stderr
    assert "layer 'conv1' has weights of shapes" in res.stderr and "another width" in res.stderr
    assert not os.path.exists(target)
    assert [f for f in os.listdir(tmp_path) if f != "fold01"] == []


def test_a_layer_the_exporter_does_not_know_is_named(caffe_env, trained, tmp_path):
    _, out, _ = trained
    fold = str(tmp_path / "fold01")
    shutil.copytree(os.path.join(out, "fold01"), fold)
    deploy = os.path.join(fold, "deploy.prototxt")
    with open(deploy) as f:
        text = f.read()
    with open(deploy, "w") as f:
        f.write(text.replace('name: "relu_conv1"\n  type: "ReLU"',
                             'name: "relu_conv1"\n  type: "LRN"'))
    res = _export(caffe_env, fold, "--out", str(tmp_path / "m.onnx"))
    assert res.returncode == 2
    assert "layer 'relu_conv1' of type LRN has no ONNX export" in res.stderr
    assert not os.path.exists(str(tmp_path / "m.onnx"))


def test_an_export_replaces_a_model_only_whole(caffe_env, trained, tmp_path):
    """A failing export leaves the model written before as it was (atomic write)."""
    _, out, _ = trained
    target = str(tmp_path / "m.onnx")
    assert _export(caffe_env, os.path.join(out, "fold01"), "--out", target).returncode == 0
    before = open(target, "rb").read()
    res = _export(caffe_env, os.path.join(out, "fold01"), "--weights",
                  str(tmp_path / "missing.caffemodel"), "--out", target)
    assert res.returncode == 2 and "missing.caffemodel does not exist" in res.stderr
    assert open(target, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


# ------------------------------------------------------------------ predicting without Caffe

def test_predict_with_onnx_equals_caffe_on_a_clip_folder(caffe_env, trained, clip_dir, tmp_path):
    """tools/predict.py --onnx runs with pycaffe out of reach (no PYTHONPATH to it) and prints
    Caffe's probabilities for the same clip."""
    _, out, _ = trained
    model = str(tmp_path / "psn.onnx")
    assert _export(caffe_env, os.path.join(out, "fold01"), "--out", model).returncode == 0
    via_caffe = subprocess.run([sys.executable, PREDICT, clip_dir, "--model",
                                os.path.join(out, "fold01"), "--json"],
                               capture_output=True, text=True, env=caffe_env, timeout=600)
    assert via_caffe.returncode == 0, via_caffe.stderr
    bare = {k: v for k, v in caffe_env.items() if k not in ("PYTHONPATH", "PSN_CAFFE_HOME")}
    bare["PATH"] = os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin"
    via_onnx = subprocess.run([sys.executable, PREDICT, clip_dir, "--onnx", model, "--json"],
                              capture_output=True, text=True, env=bare, timeout=600)
    assert via_onnx.returncode == 0, via_onnx.stderr
    a, b = json.loads(via_caffe.stdout), json.loads(via_onnx.stdout)
    assert np.abs(np.array(a["probabilities"]) - b["probabilities"]).max() < TOL
    assert a["class"] == b["class"] and b["classes"] == a["classes"]


def test_run_folds_predicts_through_onnxruntime_without_pycaffe(caffe_env, trained, tmp_path):
    """With pycaffe's compiled module unimportable (as on a host without Boost.Python),
    run_folds --predict-only writes the same predictions.csv as with pycaffe."""
    data, out, _ = trained
    run = str(tmp_path / "run")
    shutil.copytree(out, run)
    for fold in ("fold01", "fold02"):
        os.remove(os.path.join(run, fold, "predictions.csv"))
    os.remove(os.path.join(run, "predictions.csv"))
    blocker = textwrap.dedent("""
        import runpy, sys
        class NoBoost:
            def find_spec(self, name, path=None, target=None):
                if name == "caffe._caffe":
                    raise ImportError("No module named 'caffe._caffe'")
        sys.meta_path.insert(0, NoBoost())
        sys.path.insert(0, %r)
        sys.argv = [%r] + sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
    """) % (os.path.join(ROOT, "tools"), os.path.join(ROOT, "tools", "run_folds.py"))
    res = subprocess.run([sys.executable, "-c", blocker, "--data", data, "--out", run,
                          "--model", "psn", "--schedule", "smoke", "--width", "0.125",
                          "--predict-only"], capture_output=True, text=True, env=caffe_env,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "predict through onnxruntime" in res.stdout + res.stderr

    def rows(path):
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    got, want = rows(os.path.join(run, "predictions.csv")), rows(os.path.join(out,
                                                                               "predictions.csv"))
    assert [r["clip"] for r in got] == [r["clip"] for r in want] and len(got) == 10
    for g, w in zip(got, want):
        assert g["pred"] == w["pred"]
        assert max(abs(float(g["prob_%d" % c]) - float(w["prob_%d" % c])) for c in range(4)) < TOL
