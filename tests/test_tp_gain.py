"""psn.tp_gain: W_m's initial gain from the training clips' median tp."""
import os
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import load_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "layers"))

from psn import probe_tasks, tp_gain  # noqa: E402
from psn.nets import MODELS, build, tp_unit  # noqa: E402

TPU = replace(MODELS["psn_temporal"], width=0.125)


def _clips(contrast, sigma, noise, frame_jitter=0, n=8):
    raw, _, _ = probe_tasks.make_clips("order", n, seed=0, noise=noise, contrast=contrast,
                                       sigma=sigma, frame_jitter=frame_jitter)
    return raw


def test_frame_tp_is_the_tpus_own_tp():
    """Eq. 7 as the TPU computes it (the layer's numpy reference), on the net's input."""
    from psn_layers import tpu
    raw = _clips(64, 8, 2, 3)
    g = tp_gain.gray_levels(raw, TPU)
    # The net's temporal input as numpy gives it (tests/test_nets.py holds it to Caffe's).
    x = load_benchmark("temporal_mechanism").temporal_input(raw, TPU)
    T, N, D = x.shape
    H = 4
    rng = np.random.default_rng(0)
    p = [rng.normal(size=(H, D)).astype(np.float32) * 1e-3, np.zeros(H, np.float32),
         np.eye(H, dtype=np.float32), np.eye(H, dtype=np.float32), np.zeros(H, np.float32),
         np.eye(H, dtype=np.float32), np.zeros(H, np.float32)]
    cont = np.ones((T, N), np.float32)
    cont[0] = 0
    _, cache = tpu.forward(x.astype(np.float32), cont, p, mode="tpu")
    np.testing.assert_allclose(tp_gain.frame_tp(g, TPU), cache["tp"][1:].T / TPU.temporal_norm_rms,
                               rtol=1e-4, atol=1e-6)


def test_median_tp_separates_clean_strong_from_noise_dominated_clips():
    clean = np.median(tp_gain.frame_tp(tp_gain.gray_levels(_clips(128, 24, 1), TPU), TPU))
    noisy = np.median(tp_gain.frame_tp(tp_gain.gray_levels(_clips(16, 4, 4, 3), TPU), TPU))
    assert clean < 0.08 < 0.9 < noisy, (clean, noisy)
    # The ceiling keeps the data-free gain where the typical frame moves; clean strong
    # content gets the gain that keeps the state across its still frames.
    assert tp_gain.from_median(TPU, noisy) == TPU.tp_ref_rms
    assert tp_gain.from_median(TPU, clean) == pytest.approx(clean)
    assert tp_gain.from_median(TPU, 0.0) == tp_gain.TP_FLOOR   # a still training set


def _tpu_std(tv):
    return [l.tpu_param.modulation_weight_filler.std for l in tv.layer if l.type == "TPU"]


@pytest.mark.parametrize("cell,raised", [((128, 24, 1, 0), True), ((16, 4, 4, 3), False)])
def test_set_from_data_writes_the_gain_where_it_applies(caffe, tmp_path, cell, raised):
    c, s, n, j = cell
    d = probe_tasks.write_task(str(tmp_path / "d"), "order", n_clips=8, contrast=c, sigma=s,
                               noise=n, frame_jitter=j)
    with open(os.path.join(d, "folds", "fold01", "train.txt")) as f:
        shards = [os.path.join(d, line.strip()) for line in f if line.strip()]
    tv, _, _ = build("psn_temporal", width=0.125)
    before = _tpu_std(tv)
    lines = []
    ref, median = tp_gain.set_from_data(tv, TPU, shards, lines.append)
    assert median is not None and len(lines) == 1 and "median tp" in lines[0]
    after = _tpu_std(tv)
    H = [l.recurrent_param.num_output for l in tv.layer if l.type == "TPU"][0]
    assert after[0] == pytest.approx(1.0 / (np.sqrt(H) * ref * TPU.temporal_norm_rms))
    if raised:
        assert after[0] > 4 * before[0] and ref < 0.1
    else:
        assert after[0] == pytest.approx(before[0]) and ref == TPU.tp_ref_rms


@pytest.mark.parametrize("model,overrides", [
    ("alexnet_rnn", {}), ("psn_tp1", {}), ("psn_spatial", {}),
    ("psn_temporal", {"temporal_norm": "none"}), ("psn_temporal", {"tp_ref_from_data": False}),
])
def test_nets_without_a_tp_scaled_wm_are_left_alone(model, overrides):
    cfg = replace(MODELS[model], **overrides)
    assert not tp_gain.applies(cfg)
    assert tp_gain.tp_ref(cfg, ["never read"]) == (cfg.tp_ref_rms, None)


def test_the_gain_keeps_the_state_across_still_frames_on_clean_strong_content():
    """At initialisation (deterministic): on a large bright blob without sensor noise the
    fixed gain of 8 let h fall to tanh(b_m) at every still frame; the data's gain keeps
    several times more of the past."""
    mech = load_benchmark("temporal_mechanism")
    fixed = replace(TPU, tp_ref_from_data=False)
    data = mech.measure((128, 24, 1), TPU, "tpu", clips=6)
    old = mech.measure((128, 24, 1), fixed, "tpu", clips=6)
    assert old["W_m gain"] == pytest.approx(1 / tp_unit(fixed))
    assert data["W_m gain"] > 5 * old["W_m gain"], (data, old)
    assert data["memory"] > 3 * old["memory"], (data, old)
    # On noise-dominated clips nothing changes.
    assert mech.measure((16, 4, 4), TPU, "tpu", clips=6)["W_m gain"] == pytest.approx(1 / tp_unit(TPU))
