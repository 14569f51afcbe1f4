"""Probe tasks: the order task holds what it promises, and the nets learn what they should.

The learning tests train real nets (width 1/8, 300-600 SGD iterations, a few CPU minutes in
all): both recurrent streams (the TPU of psn_temporal and Caffe's RNN of alexnet_rnn, each with
the project's default input normalisation and initialisation) must learn frame order, which
psn_spatial cannot; the first release's initialisation must not (so the test can tell the two
apart). Corners of the robustness grid (benchmarks/temporal_grid.py: faint and small,
strong and large, noisy, jittered) are trained with the demo schedule, and the shipped
defaults must hold in each; what the previous input scaling (x/8) did wrong is checked where it
is deterministic, at initialisation (saturation, drive). The cells where the TPU still fails
at some batch orders (large bright content without sensor noise: docs/temporal_stream.md) are
not among them: the grid reports them. Each in-process run seeds the C library's rand(), which
Caffe's HDF5Data shuffle uses, so a test's outcome does not depend on the tests before it.
"""
import csv
import json
import os

import h5py
import numpy as np
import pytest

from preprocessing.layout import DataFolder
from psn import probe_tasks


def test_order_task_differs_only_in_order():
    raw, sparse, labels = probe_tasks.make_clips("order", 6, seed=3, noise=2.0)
    assert raw.shape == (6, 16, 3, 112, 112) and raw.dtype == np.uint8
    assert sparse.shape == (6, 16, 1, 112, 112) and labels.tolist() == [0, 1] * 3
    x = raw.astype(float)
    # Frames 0 and 15 are alike in every clip (background + noise only).
    for t in (0, 15):
        assert np.abs(x[:, t] - x[0, 0]).mean() < 4.0
        assert np.abs(sparse[:, t]).max() < 0.05
    # Class 0 shows A in frames 1-7 and B in 8-14; class 1 the reverse: the same frames.
    for t in range(1, 8):
        assert np.abs(x[0, t] - x[1, t + 7]).mean() < 4.0
        assert np.abs(x[0, t + 7] - x[1, t]).mean() < 4.0
        assert np.abs(x[0, t] - x[1, t]).max() > 40        # but not at the same time
    # Noise is fresh in every frame: equal frames are not identical (tp > 0).
    assert np.abs(x[0, 2] - x[0, 3]).mean() > 0.5


def test_blob_size_contrast_and_frame_jitter():
    _, sparse, _ = probe_tasks.make_clips("place", 2, seed=0, noise=0.0, contrast=100, sigma=14)
    assert not sparse[0, 0].any() and not sparse[0, 15].any()    # appears, then goes
    e = sparse[0, 1, 0] * 255
    assert abs(e.max() - 100) < 1
    # sigma 14: the profile falls to exp(-1/2) of the peak 14 px from the centre
    cy, cx = probe_tasks.PLACE_A
    assert abs(e[cy, cx + 14] / e[cy, cx] - np.exp(-0.5)) < 0.02
    _, still, _ = probe_tasks.make_clips("place", 2, seed=0, noise=0.0, frame_jitter=0)
    _, moved, _ = probe_tasks.make_clips("place", 2, seed=0, noise=0.0, frame_jitter=3)
    assert (still[0, 1] == still[0, 2]).all()
    peaks = {np.unravel_index(moved[0, t, 0].argmax(), (112, 112)) for t in range(1, 15)}
    assert len(peaks) > 3 and all(abs(y - cy) <= 3 and abs(x - cx) <= 3 for y, x in peaks)


def test_grid_cells_and_table():
    cells = probe_tasks.grid_cells()
    assert len(cells) == 4 * 4 * 2 * 2 and cells[0] == dict(noise=1, frame_jitter=0, sigma=4,
                                                            contrast=16)
    res = [dict(task="order", model="m", accuracy=a, seed=s, **cells[0])
           for a, s in ((1.0, 1), (0.5, 2))]
    table = probe_tasks.grid_table(res, "m", "order")
    assert "| 1 | 0 | 4 | 0.75 (0.50) | – | – | – |" in table


def test_train_missing_keeps_each_result_as_it_comes_and_retrains_the_stale(tmp_path):
    """The cell runner both grids share: a run made with other settings is trained again, a
    run of another model is left alone, and an interrupted cell keeps the models it finished."""
    d = str(tmp_path / "cell")
    os.makedirs(d)
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump([{"model": "a", "key": "old"}, {"model": "z", "key": "old"}], f)
    made, trained = [], []

    def make_data(folder):
        os.makedirs(folder)
        made.append(folder)
        return folder

    def train_one(model, data, folder):
        assert os.path.isdir(data)
        if model == "c":
            raise KeyboardInterrupt
        trained.append(model)
        return {"model": model, "key": "new"}

    with pytest.raises(KeyboardInterrupt):
        probe_tasks.train_missing(d, ["a", "b", "c"], lambda r: r["key"] == "new", make_data,
                                  train_one)
    assert trained == ["a", "b"] and not os.path.exists(made[0])     # the clips removed
    with open(os.path.join(d, "results.json")) as f:
        assert [(r["model"], r["key"]) for r in json.load(f)] == [
            ("z", "old"), ("a", "new"), ("b", "new")]
    res = probe_tasks.train_missing(d, ["b", "a"], lambda r: r["key"] == "new", make_data,
                                    train_one, keep_data=True)
    assert [r["model"] for r in res] == ["a", "b"] and len(made) == 1    # nothing to train
    trained.clear()
    res = probe_tasks.train_missing(d, ["d"], lambda r: True, make_data, train_one,
                                    keep_data=True)
    assert trained == ["d"] and res[0]["seconds"] >= 0 and os.path.isdir(made[1])


def _hold_then_add(d, ready, release):
    from preprocessing.folder_lock import folder_lock
    with folder_lock(d, "training in"):
        ready.set()
        release.wait(60)
        with open(os.path.join(d, "results.json"), "w") as f:
            json.dump([{"model": "a", "key": "new"}], f)


def test_train_missing_waits_for_a_process_training_in_the_cell(tmp_path, capsys):
    """Two grids over the same cell each wrote back their own list (the later dropped the
    other's run) and the first to end removed the clips the other was scoring: the second now
    says so, waits for the holder, and trains only what the holder left (run "a" is the
    holder's, written two seconds in: a cell entered at once would train both)."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    d = str(tmp_path / "cell")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_then_add, args=(d, ready, release))
    holder.start()
    assert ready.wait(60)
    trained = []

    def train_one(model, data, folder):
        trained.append(model)
        return {"model": model, "key": "new"}

    import threading
    threading.Timer(2.0, release.set).start()     # the holder writes its run, then lets go
    res = probe_tasks.train_missing(d, ["a", "b"], lambda r: r["key"] == "new",
                                    lambda folder: folder, train_one)
    holder.join(60)
    assert trained == ["b"] and [r["model"] for r in res] == ["a", "b"]
    assert "another process is training in this cell; waiting" in capsys.readouterr().err


def test_run_cell_trains_only_what_is_missing(tmp_path, monkeypatch):
    trained = []

    def fake(data, model, workdir, **kw):
        assert os.path.isfile(os.path.join(data, "manifest.csv"))
        trained.append(model)
        return {"accuracy": 0.75, "loss": 0.5}

    monkeypatch.setattr(probe_tasks, "train_and_score", fake)
    from psn import nets
    from dataclasses import replace
    monkeypatch.setitem(nets.MODELS, "a", nets.MODELS["psn_temporal"])
    monkeypatch.setitem(nets.MODELS, "b", replace(nets.MODELS["alexnet_rnn"]))
    cell = dict(contrast=32, sigma=8, noise=1, frame_jitter=0)
    first = probe_tasks.run_cell("order", cell, 2, ["a"], str(tmp_path), n_clips=4)
    both = probe_tasks.run_cell("order", cell, 2, ["a", "b"], str(tmp_path), n_clips=4)
    again = probe_tasks.run_cell("order", cell, 2, ["b", "a"], str(tmp_path), n_clips=4)
    assert trained == ["a", "b"]
    assert [r["model"] for r in first] == ["a"] and [r["model"] for r in both] == ["a", "b"]
    assert {r["model"] for r in again} == {"a", "b"} and again[0]["contrast"] == 32
    d = os.path.join(str(tmp_path), probe_tasks.cell_name("order", cell, 2))
    assert sorted(os.listdir(d)) == [".lock", "results.json"]    # the data is not kept
    # Other settings are never answered from the stored results: retrained.
    probe_tasks.run_cell("order", cell, 2, ["a"], str(tmp_path), n_clips=4, iters=10)
    probe_tasks.run_cell("order", cell, 2, ["a"], str(tmp_path), n_clips=4,
                         net_overrides=dict(temporal_norm="none"))
    assert trained == ["a", "b", "a", "a"]
    assert probe_tasks.run_key("order", "psn", 300, 80) != probe_tasks.run_key("place", "psn",
                                                                              300, 80)
    # Fields only the flow nets read do not touch a PSN-family key (results made before they
    # existed still count); a field of the net does.
    key = probe_tasks.run_key("order", "psn", 300, 80)
    assert probe_tasks.run_key("order", "psn", 300, 80, dict(flow_size=56)) == key
    assert probe_tasks.run_key("order", "psn", 300, 80, dict(dropout=0.1)) != key


def test_place_task_and_options():
    raw, _, labels = probe_tasks.make_clips("place", 4, seed=1, noise=0.0, identities=True,
                                            jitter=2)
    x = raw.astype(float)
    assert (x[0, 3] == x[0, 4]).all()                 # no noise: equal frames
    assert np.abs(x[0] - x[2]).mean() > 3             # another identity behind clip 2
    with pytest.raises(ValueError, match="unknown task"):
        probe_tasks.make_clips("colour", 2)


def test_write_task_is_a_preprocessing_folder(tmp_path):
    out = probe_tasks.write_task(str(tmp_path / "order"), "order", n_clips=8, seed=0)
    with open(os.path.join(out, "manifest.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["label"] for r in rows} == {"0", "1"}
    folder = DataFolder(out)
    for fold in (1, 2):
        # Relative to the folder, as preprocessing writes them (the folder can move).
        listed = open(folder.fold_list(fold, "test")).read().split()
        assert listed == [os.path.join("shards", "group%02d.h5" % fold)]
        lists = folder.fold_shards(fold)
        test, train = lists["test"], lists["train"]
        assert len(test) == 1 and test[0] not in train
        with h5py.File(test[0]) as h:
            assert sorted(np.bincount(h["clip_label"][:]).tolist()) == [2, 2]  # balanced
            assert h["cont"][:, 0].max() == 0 and h["cont"][:, 1:].min() == 1
            assert set(h["clip_index"][:].tolist()) == {
                int(r["index"]) for r in rows if r["group"] == str(fold)}


@pytest.fixture(scope="module")
def order_data(tmp_path_factory):
    return probe_tasks.write_task(str(tmp_path_factory.mktemp("order")), "order", n_clips=80)


@pytest.mark.parametrize("model,overrides,iters,low,high", [
    ("psn_temporal", {}, 600, 0.9, 1.0),                       # the TPU, as shipped
    ("alexnet_rnn", {}, 600, 0.9, 1.0),                        # Caffe's RNN, as shipped
    ("psn_spatial", {}, 300, 0.0, 0.7),                        # frame by frame: chance
    ("psn_temporal", dict(rec_init="tiny", temporal_scale=1.0, first_tp="ZERO",
                          temporal_norm="none"), 600, 0.0, 0.7),
], ids=["tpu", "rnn", "spatial", "tpu_first_release"])
def test_streams_learn_order(caffe, order_data, tmp_path, model, overrides, iters, low, high):
    res = probe_tasks.train_and_score(order_data, model, str(tmp_path), iters=iters, seed=1,
                                      **overrides)
    assert low <= res["accuracy"] <= high, res


def test_a_traced_run_trains_as_an_untraced_one(caffe, order_data, tmp_path, capsys):
    """benchmarks/probe_trace.py's trace (train_and_score stepping in pieces, the batch run
    forward again up to the last ReLU) leaves training as it was, to the last bit; its rows
    come at the iterations asked for, and it reads the ReLUs before the dropout after them."""
    from conftest import load_benchmark
    plain = probe_tasks.train_and_score(order_data, "psn_temporal", str(tmp_path / "a"),
                                        iters=24, seed=3)
    trace = load_benchmark("probe_trace").tracer([("fc_temporal", "ReLU"), ("conv_fuse", "ReLU"),
                                                  ("tpu", "TPU")])
    shares = []

    def watched(net, iteration):        # conv_fuse's live share as training left it, and after
        shares.append([(net.blobs["conv_fuse"].data > 0).mean()])
        trace(net, iteration)
        shares[-1].append((net.blobs["conv_fuse"].data > 0).mean())
    traced = probe_tasks.train_and_score(order_data, "psn_temporal", str(tmp_path / "b"),
                                         iters=24, seed=3, trace_every=10, trace=watched)
    assert traced == plain
    rows = [r.split() for r in capsys.readouterr().out.splitlines()]
    assert rows[0][:4] == ["iter", "loss", "live", "fc_temporal"]
    assert [r[0] for r in rows[1:]] == ["10", "20", "24"]
    # fc_temporal: 512 units, about half live; conv_fuse (4 filters x 4 x 4) read before the
    # head's dropout (ratio 0.5), which zeroes half of what is live.
    assert 0.2 < float(rows[1][2]) < 0.8 and rows[1][3:6] == ["(512", "of", "512)"]
    assert rows[1][9] == "64)"
    for (dropped, own), row in zip(shares, rows[1:]):
        assert own > 1.5 * dropped and float(row[6]) == round(own, 3)


# (task, model, cell, low, high[, seeds]): the grid's corners for the TPU, the two extremes of
# energy for Caffe's RNN (each RNN run takes ~70 s), the place task for both kinds of stream.
# A cell passes as in the grid (benchmarks/temporal_grid.py): its mean over the seeds. One seed
# unless given; the TPU's place task at the faint, small, noisy, jittered corner sits at the
# bar (0.89 / 0.97 / 0.94 held out at seeds 1 / 2 / 3 on this project's machine: noise of 4
# gray levels a frame is memorised), so it is judged over three.
CORNERS = [
    ("order", "psn_temporal", dict(contrast=16, sigma=4, noise=4, frame_jitter=3), 0.9, 1.0),
    # Clean, large and strong: Eq. 9 forgets across its still frames unless W_m's gain comes
    # from the data (psn.tp_gain); at the fixed gain 8 it gave 1.00 / 0.50 / 0.50.
    ("order", "psn_temporal", dict(contrast=128, sigma=24, noise=1, frame_jitter=0), 0.9, 1.0,
     (1, 2, 3)),
    ("order", "psn_temporal", dict(contrast=128, sigma=24, noise=4, frame_jitter=0), 0.9, 1.0),
    ("order", "psn_temporal", dict(contrast=128, sigma=4, noise=4, frame_jitter=0), 0.9, 1.0),
    ("order", "psn_temporal", dict(contrast=16, sigma=24, noise=1, frame_jitter=3), 0.9, 1.0),
    ("order", "alexnet_rnn", dict(contrast=128, sigma=24, noise=1, frame_jitter=0), 0.9, 1.0),
    ("order", "alexnet_rnn", dict(contrast=16, sigma=4, noise=4, frame_jitter=3), 0.9, 1.0),
    ("place", "psn_temporal", dict(contrast=16, sigma=4, noise=4, frame_jitter=3), 0.9, 1.0,
     (1, 2, 3)),
    ("place", "psn_spatial", dict(contrast=16, sigma=4, noise=4, frame_jitter=3), 0.9, 1.0),
]


@pytest.mark.parametrize("task,model,cell,low,high,seeds",
                         [c if len(c) == 6 else c + ((1,),) for c in CORNERS],
                         ids=["%s-%s-c%d-s%d-n%d-j%d" % (c[0], c[1], c[2]["contrast"],
                                                        c[2]["sigma"], c[2]["noise"],
                                                        c[2]["frame_jitter"]) for c in CORNERS])
def test_streams_learn_over_the_grid(caffe, tmp_path, task, model, cell, low, high, seeds):
    res = [probe_tasks.run_cell(task, cell, seed, [model], str(tmp_path), iters=300,
                                n_clips=200)[0] for seed in seeds]
    mean = sum(r["accuracy"] for r in res) / len(res)
    assert low <= mean <= high, res


def test_the_normalisation_removes_saturation_at_a_strong_large_corner():
    """What the normalisation fixed, at initialisation (deterministic, no training): with the
    previous input (x/8) a large bright blob saturates most of h~ and a faint small one gives
    almost no drive; brought to one rms per clip, both have the same moderate drive."""
    from dataclasses import replace
    from conftest import load_benchmark
    from psn.nets import MODELS
    mech = load_benchmark("temporal_mechanism")
    shipped = replace(MODELS["psn_temporal"], width=0.125)
    old = replace(shipped, temporal_norm="none")
    strong, faint = (128, 24, 1), (16, 4, 1)
    for mode in ("tpu", "rnn"):
        o_strong = mech.measure(strong, old, mode, clips=6)
        n_strong = mech.measure(strong, shipped, mode, clips=6)
        o_faint = mech.measure(faint, old, mode, clips=6)
        assert o_strong["sat h~"] > 0.5 and o_strong["W_I x"] > 3, o_strong
        assert n_strong["sat h~"] < 0.01 and 0.15 < n_strong["W_I x"] < 0.35, n_strong
        assert o_strong["W_I x"] > 20 * o_faint["W_I x"]
    # The TPU's memory across a still frame on strong clean content is what remains small
    # (Eq. 9: tp there is noise over the clip's rms); the fixed gain 8 with eps 4 keeps 1.5
    # times what gain 4 with eps 0.5 kept (the data's gain: tests/test_tp_gain.py).
    gain8 = replace(shipped, tp_ref_from_data=False)
    gain4 = replace(gain8, temporal_norm_eps=0.5, tp_ref_rms=1.0)
    assert mech.measure(strong, gain8, "tpu", clips=6)["memory"] > \
        1.5 * mech.measure(strong, gain4, "tpu", clips=6)["memory"]
