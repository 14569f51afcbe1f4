"""The optical-flow baselines (psn.nets ststnet, off_apexnet): shapes, signal and gradient in
every branch at initialisation, learning psn.flow_probe's direction task, and run_folds on a
data folder preprocessed with --flow (and refused without it)."""
import os

import h5py
import numpy as np
import pytest

from pipeline_helpers import AUGMENT, OPTIONS, copy_run
from psn import nets

FLOW_NETS = ("ststnet", "off_apexnet")
# Each branch's first and last weights, and the layers whose output must carry signal.
BRANCHES = {"ststnet": [("conv_a", "pool_a"), ("conv_b", "pool_b"), ("conv_c", "pool_c")],
            "off_apexnet": [("conv1_u", "pool2_u"), ("conv1_v", "pool2_v")]}


def test_flow_nets_are_flow_nets():
    from preprocessing.flow import FLOW_SIZE
    for model in FLOW_NETS:
        cfg = nets.MODELS[model]
        assert nets.reads_flow(cfg) and cfg.flow_size == FLOW_SIZE
        assert nets.own_schedule(model, "paper") == model
    assert not any(nets.reads_flow(c) for m, c in nets.MODELS.items() if m not in FLOW_NETS)


def test_flow_grid_trains_at_least_one_step_an_epoch():
    """benchmarks/flow_grid: 500 epochs of 100 clips are 500 steps for STSTNet (batch 256 > the
    clips: its authors' loader steps every epoch) and 782 full batches of 64 for OFF-ApexNet."""
    from conftest import load_benchmark
    iterations = load_benchmark("flow_grid").iterations
    assert iterations("ststnet", 100, 500) == 500
    assert iterations("off_apexnet", 100, 500) == 782
    assert iterations("ststnet", 1024, 10) == 40
    with pytest.raises(ValueError, match="frames=1"):
        nets.check_config(nets.NetConfig(arch="ststnet"))


@pytest.fixture(scope="module")
def direction(tmp_path_factory):
    """The direction task at a clear setting (2 px, radius 12 px, little noise): 40 clips."""
    from psn import flow_probe
    out = str(tmp_path_factory.mktemp("flow_probe") / "data")
    return flow_probe.write_task(out, n_clips=40, seed=3, shift=2.0, sigma=12, noise=1.0, drift=0)


@pytest.mark.parametrize("model", FLOW_NETS)
def test_every_branch_carries_signal_and_gradient_at_init(caffe, direction, model):
    from psn import net_health
    rep = net_health.inspect(model, direction, width=1.0)
    assert rep["tp"] is None and 1.0 < rep["loss"] < 2.0          # about ln 4 at the start
    layers = {r["layer"]: r for r in rep["layers"]}
    params = {(p["layer"], p["blob"]): p for p in rep["params"]}
    for first, last in BRANCHES[model]:
        assert layers[last]["std"] > 1e-4, (model, last, layers[last])
        p = params[(first, 0)]
        assert p["grad_norm"] > 0 and p["step_over_w"] > 1e-7, (model, p)
    assert params[("fc_cls", 0)]["grad_norm"] > 0
    assert "tp of clip" not in net_health.render(rep)


@pytest.mark.parametrize("model,iters", [("ststnet", 150), ("off_apexnet", 300)])
def test_flow_nets_learn_the_direction_task(caffe, direction, tmp_path, model, iters):
    """Only the flow's sign tells the classes apart (the strain is the same in both): each net,
    with its own optimiser, learns it on 20 clips and is right on the 20 held out."""
    from psn.probe_tasks import train_and_score
    r = train_and_score(direction, model, str(tmp_path / model), iters=iters, seed=1)
    assert r["accuracy"] >= 0.9, r


def test_direction_task_strain_is_blind_to_the_class(direction):
    """The task is what it says: the two classes' strain maps have the same mean, their v
    maps opposite signs at the patch."""
    with h5py.File(os.path.join(direction, "shards", "group01_flow.h5"), "r") as f:
        flow, labels = f["flow"][()], f["clip_label"][()]
    v = flow[:, 1, 6:14, 10:18].mean(axis=(1, 2))
    assert (v[labels == 0] < 0).all() and (v[labels == 1] > 0).all()
    s0, s1 = flow[labels == 0, 2].mean(), flow[labels == 1, 2].mean()
    assert abs(s0 - s1) < 0.2 * max(s0, s1)


def test_run_folds_trains_a_flow_net_on_flow_shards(caffe_env, roots, first, tmp_path):
    """run_folds refuses ststnet on a folder without flow shards (naming --flow), then, after
    `preprocess run --flow`, trains it on the same folds and predicts every held-out clip."""
    from run_folds_helpers import run_tool
    from preprocessing.flow import FlowParams
    from preprocessing.layout import DataFolder
    from preprocessing.pipeline import run
    data = copy_run(first, tmp_path)
    out = str(tmp_path / "runs" / "ststnet")
    refused = run_tool(caffe_env, "--data", data, "--model", "ststnet", "--out", out,
                       "--max-iter", "4", "--folds", "1")
    assert refused.returncode != 0 and "--flow" in refused.stdout + refused.stderr
    run(roots[0], data, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=1,
        progress=False, log=lambda *_: None, flow=FlowParams())
    # A new --out: the refused run's run.json records the data without flow shards, and a
    # run folder whose record differs is refused whole (it may be in use by another run).
    out = str(tmp_path / "runs" / "ststnet_flow")
    done = run_tool(caffe_env, "--data", data, "--model", "ststnet", "--out", out,
                    "--max-iter", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    with open(os.path.join(out, "fold01", "train.txt")) as f:
        listed = [line.strip() for line in f if line.strip()]
    assert listed and all(p.endswith("_flow.h5") for p in listed)
    with open(os.path.join(out, "fold01", "solver.prototxt")) as f:
        solver = f.read()
    assert 'type: "Adam"' in solver and "base_lr: 5e-05" in solver
    import csv
    with open(os.path.join(out, "predictions.csv")) as f:
        rows = list(csv.DictReader(f))
    included = sum(1 for r in DataFolder(data).manifest_rows() if r["included"] == "1")
    assert len(rows) == included
    probs = np.array([[float(r[k]) for k in r if k.startswith("prob_")] for r in rows])
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)


def test_predict_refuses_a_flow_net_by_name(caffe_env, tmp_path, capsys):
    """tools/predict.py feeds a clip's frames: a flow net's deploy is refused in one line that
    says where flow nets are scored, before any preprocessing."""
    from google.protobuf import text_format
    from psn import predict
    _, dp, _ = nets.build("ststnet")
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(text_format.MessageToString(dp))
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"")
    assert predict.reads_flow_input(str(deploy))
    rc = predict.main([str(tmp_path), "--model", str(weights), "--deploy", str(deploy)])
    err = capsys.readouterr().err
    assert rc != 0 and "optical-flow baseline" in err and "--flow" in err


def test_flow_shards_must_be_the_ones_folds_json_recorded(roots, first, tmp_path):
    """A flow shard rewritten by another run (its key no longer the one folds.json holds), a
    group without any flow, and a folder without --flow are each refused with their fix."""
    from types import SimpleNamespace
    from preprocessing.flow import FlowParams
    from preprocessing.hdf5_shards import write_flow_shard
    from preprocessing.layout import DataFolder
    from preprocessing.pipeline import run
    from psn.config import RunError
    from psn.fold_setup import flow_shards
    data = copy_run(first, tmp_path)
    cfg = SimpleNamespace(data=data, model="ststnet")
    folder = DataFolder(data)
    shards = folder.fold_shards(1)["train"]
    with pytest.raises(RunError, match="no flow shards: run tools/preprocess.py run"):
        flow_shards(cfg, shards)
    run(roots[0], data, n_folds=2, seed=0, options=OPTIONS, augment=AUGMENT, workers=1,
        progress=False, log=lambda *_: None, flow=FlowParams())
    got = flow_shards(cfg, shards)
    assert got and all(p.endswith("_flow.h5") for p in got)
    with h5py.File(got[0], "r") as f:
        rows = [(int(i), int(lab), m[::-1].copy()) for i, lab, m in
                zip(f["clip_index"][()], f["clip_label"][()], f["flow"][()])]
    write_flow_shard(got[0], rows, key="written by another run")
    with pytest.raises(RunError, match="not the flow shard .*folds.json recorded"):
        flow_shards(cfg, shards)
    plan = folder.read_plan()
    plan["flow"]["shards"] = []
    folder.write_plan(plan)
    with pytest.raises(RunError, match="no clip of its group has a flow"):
        flow_shards(cfg, shards)
