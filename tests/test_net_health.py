"""tools/inspect_net.py: per-layer signal, per-blob gradient, stream shares, tp, bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from psn import net_health, probe_tasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "inspect_net.py")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return probe_tasks.write_task(str(tmp_path_factory.mktemp("health")), "order", n_clips=20)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Real-looking input: drawn faces through the whole preprocessing (face, TIM, RPCA)."""
    from preprocessing import cli
    from synthetic import generate
    base = tmp_path_factory.mktemp("faces")
    db = generate(str(base / "db"), n_subjects=2, clips_per_subject=3, seed=0)["out_dir"]
    out = str(base / "prep")
    assert cli.main(["run", "--casme2", db, "--out", out, "--n-folds", "2", "--augment", "none",
                     "--workers", "1", "--no-progress"]) == 0
    return out


def _fusion(report):
    return {s["stream"]: s for s in report["fusion"]}


def _param(report, layer, blob):
    return [p for p in report["params"] if p["layer"] == layer and p["blob"] == blob][0]


def test_psn_at_initialisation_both_streams_carry_signal(caffe, faces, tmp_path):
    rep = net_health.inspect("psn", faces, out=str(tmp_path))
    f = _fusion(rep)
    # The project's requirement: the temporal features' per-row spread at least 1/10 of the
    # spatial ones' at initialisation.
    assert f["temporal"]["row_spread"] >= 0.1 * f["spatial"]["row_spread"], f
    assert abs(f["temporal"]["spread_share"] + f["spatial"]["spread_share"] - 1) < 1e-9
    # Gradient of a useful size reaches the TPU's input weights (the first release: 8e-6,
    # now ~6e-4, above the spatial stream's conv1), and some reaches every TPU blob.
    assert _param(rep, "tpu", 0)["step_over_w"] > 1e-4, _param(rep, "tpu", 0)
    assert _param(rep, "tpu", 0)["step_over_w"] > _param(rep, "conv1", 0)["step_over_w"]
    assert all(_param(rep, "tpu", b)["grad_norm"] > 0 for b in range(7))
    relu = [l for l in rep["layers"] if l["type"] == "ReLU"]
    assert relu and all(0 <= l["zeros"] <= 1 for l in relu)
    assert any(l["layer"] == "tpu" and l["std"] > 0.05 for l in rep["layers"])
    with open(tmp_path / "health.json") as fh:
        saved = json.load(fh)
    assert saved["fusion"] == rep["fusion"]
    png = rep["tp"]["figure"]
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    tp = np.array(rep["tp"]["gray_levels"])
    assert tp.shape == (16,) and tp[0] == 0 and (tp[1:] > 0).all()


def test_tp_follows_the_frames(caffe, data, tmp_path):
    """tp of an order-task clip: noise level inside the runs, large where the blob appears,
    moves (frame 8) and leaves (frame 15); the figure is a PNG."""
    rep = net_health.inspect("psn_temporal", data, out=str(tmp_path))
    tp = np.array(rep["tp"]["gray_levels"])
    quiet = np.median(tp[2:7])
    assert 2.5 < quiet < 3.2                     # 2 * sqrt(2): the difference of two noises
    for t in (1, 8, 15):
        assert tp[t] > 2 * quiet, tp
    assert tp[8] > tp[1]                         # a blob leaves and one comes: two blobs
    from psn import nets
    assert rep["tp"]["net_scale"] == pytest.approx(nets.MODELS["psn_temporal"].temporal_scale)


def test_first_release_initialisation_is_flagged(caffe, faces):
    """The released init (N(0, 1e-4) for every weight) left the temporal stream silent: the
    tool must show it."""
    from psn import nets
    from dataclasses import replace
    cfg = replace(nets.MODELS["psn"], rec_init="tiny", temporal_scale=1.0, first_tp="ZERO")
    nets.MODELS["psn_first_release"] = cfg
    try:
        rep = net_health.inspect("psn_first_release", faces)
    finally:
        del nets.MODELS["psn_first_release"]
    f = _fusion(rep)
    assert f["temporal"]["row_spread"] < 1e-3 * f["spatial"]["row_spread"], f


def test_trained_weights_and_prototxt_path(caffe, data, tmp_path):
    net, tv, _, _ = net_health.load_train_net("psn_temporal", data)
    weights = str(tmp_path / "w.caffemodel")
    net.params["tpu"][0].data[...] *= 2
    net.save(weights)
    from google.protobuf import text_format
    proto = tmp_path / "train_val.prototxt"
    proto.write_text(text_format.MessageToString(tv))
    rep = net_health.inspect(str(proto), data, weights=weights, clip="order_001")
    assert rep["fusion"] is None                     # one stream: no fusion layer
    assert rep["tp"]["clip"] == "order_001"
    w = _param(rep, "tpu", 0)["w_norm"]
    assert w == pytest.approx(float(np.linalg.norm(net.params["tpu"][0].data)), rel=1e-5)
    text = net_health.render(rep)
    assert "tpu" in text and "tp of clip order_001" in text


def _run(*args):
    return subprocess.run([sys.executable, TOOL] + list(args), capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("case", ["model", "data", "weights_missing", "weights_other_model",
                                  "weights_other_width", "prototxt", "clip"])
def test_bad_input_one_line_exit_2(caffe_env, data, tmp_path, case):
    args = ["--model", "psn", "--data", data, "--out", str(tmp_path / "o")]
    expect = None
    if case == "model":
        args[1] = "psn_lstm"
        expect = "psn_lstm not found"
    elif case == "data":
        args[3] = str(tmp_path)
        expect = "manifest.csv not found"
    elif case == "weights_missing":
        args += ["--weights", str(tmp_path / "none.caffemodel")]
        expect = "none.caffemodel not found"
    elif case in ("weights_other_model", "weights_other_width"):
        from psn import net_health as nh
        other = "psn_temporal" if case == "weights_other_model" else "psn"
        net, _, _, _ = nh.load_train_net(other, data,
                                         width=0.125 if case == "weights_other_model" else 0.25)
        w = str(tmp_path / "other.caffemodel")
        net.save(w)
        if case == "weights_other_model":
            args[1] = "psn_spatial"     # shares only the head (conv_fuse, fc_cls)
            expect = "has no weights for layers conv1, conv2"
        else:
            expect = "another model or --width"
        args += ["--weights", w]
    elif case == "prototxt":
        bad = tmp_path / "bad.prototxt"
        bad.write_text("layer { name: 'x' type: \n")
        args[1] = str(bad)
        expect = "is not a Caffe net prototxt"
    elif case == "clip":
        args += ["--clip", "no_such_clip"]
        expect = "clip no_such_clip is not in fold 1"
    out = _run(*args)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("inspect_net: "), out.stderr
    assert expect in lines[0], lines[0]
    assert "Traceback" not in out.stderr


def test_cli_prints_tables(caffe_env, data, tmp_path):
    out = _run("--model", "psn", "--data", data, "--out", str(tmp_path / "o"))
    assert out.returncode == 0, out.stderr[-3000:]
    for text in ("activations", "parameters (one SGD step", "streams at the fusion",
                 "temporal / spatial spread", "tp of clip"):
        assert text in out.stdout
    assert os.path.exists(tmp_path / "o" / "health.json")


TWO_STREAM = ["alexnet_rnn", "psn", "psn_concat", "psn_no_conv", "psn_prod", "psn_swap",
              "psn_tp1", "resnet10_concat", "resnet10_prod", "resnet10_sum", "vgg16_concat",
              "vgg16_prod", "vgg16_sum"]


def test_two_stream_list_is_complete():
    from psn import nets
    single = {m for m, c in nets.MODELS.items() if c.streams != "both" or nets.reads_flow(c)}
    assert sorted(set(nets.MODELS) - single) == TWO_STREAM


@pytest.mark.parametrize("model", TWO_STREAM)
def test_every_two_stream_net_starts_with_both_streams(caffe, faces, model):
    """At initialisation on real-looking input neither stream drowns the other at the fusion
    (spread ratio within 10x either way) and gradient reaches both streams' first weights."""
    rep = net_health.inspect(model, faces)
    f = _fusion(rep)
    ratio = f["temporal"]["row_spread"] / f["spatial"]["row_spread"]
    assert 0.1 <= ratio <= 10, (model, f)
    first_spatial = [p for p in rep["params"] if p["layer"].startswith("conv1")][0]
    rec = [p for p in rep["params"] if p["layer"] in ("tpu", "rnn") and p["blob"] == 0][0]
    for p in (first_spatial, rec):
        assert p["grad_norm"] > 0 and p["step_over_w"] > 1e-6, (model, p)
