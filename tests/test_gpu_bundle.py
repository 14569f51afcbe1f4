"""The GPU check's run folder (psn/gpu_bundle.py) and tools/gpu_check.sh itself, run in its
--cpu mode on a bundle assembled from the CPU build: what the GPU host will run, minus the GPU.

tools/gpu_bundle.sh (which cuts the bundle from the CUDA image) is not run here:
`tools/check_image.sh --gpu` builds that image, cuts the bundle and runs this check in the
image, and `tools/gpu_bundle.sh --verify` checks the bundle in a clean Debian root.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from run_folds_helpers import ROOT, make_data

pytestmark = pytest.mark.caffe


def _net(name):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    with open(os.path.join(ROOT, "prototxt", name, "train_val.prototxt")) as f:
        text_format.Merge(f.read(), net)
    return net


def test_layer_streams_of_psn(caffe_env):
    from psn.gpu_bundle import layer_streams
    s = layer_streams(_net("psn"))
    assert s["data"] == "data" and s["data_test"] == "data"
    assert {s[k] for k in ("conv1", "pool5", "fc_spatial", "sparse_rows")} == {"spatial"}
    assert {s[k] for k in ("tpu", "frames_tnd", "fc_temporal", "raw_rows")} == {"temporal"}
    assert {s[k] for k in ("fusion", "conv_fuse", "fc_cls", "loss", "accuracy")} == {"head"}
    assert s["cont_rows"] == "other" and s["label_rows"] == "other"


def test_layer_streams_of_one_stream_net(caffe_env):
    from psn.gpu_bundle import layer_streams
    s = layer_streams(_net("psn_spatial"))
    # Only the Silence layer that swallows the unused raw frames touches them.
    assert [k for k, v in s.items() if v == "temporal"] == ["silence_unused"]
    assert s["conv1"] == "spatial"


def test_caffe_engines_leave_no_cudnn_choice(caffe_env):
    from psn.engines import ENGINE_PARAMS, caffe_engines
    net = _net("psn")
    cpu = caffe_engines(net)
    typed = [l for l in cpu.layer if l.type in ENGINE_PARAMS]
    assert {l.type for l in typed} >= {"Convolution", "Pooling", "ReLU"}
    assert all(getattr(l, ENGINE_PARAMS[l.type]).engine == 1 for l in typed)
    assert not net.layer[[l.name for l in net.layer].index("conv1")].convolution_param.HasField("engine")


def _bundle_from_cpu_build(caffe_env, tmp_path):
    """The bundle's layout (tools/gpu_bundle.sh's stage), from the CPU build: bin (caffe.bin
    and its caffe link), test, lib, BUILD_INFO, BUNDLE_INFO, and what psn.gpu_bundle writes
    (run, data, project, python)."""
    home = caffe_env["PSN_CAFFE_HOME"]
    b = tmp_path / "psn-gpu-bundle"
    for d in ("bin", "test", "lib"):
        (b / d).mkdir(parents=True)
    shutil.copy(os.path.join(home, "bin", "caffe.bin"), str(b / "bin"))
    os.symlink("caffe.bin", str(b / "bin" / "caffe"))
    for binary in ("test_tpu_layer.testbin", "test_hdf5_prefetch_data_layer.testbin"):
        shutil.copy(os.path.join(home, "test", binary), str(b / "test"))
    shutil.copy(os.path.join(home, "lib", "libcaffe.so.1.0.0"), str(b / "lib"))
    os.symlink("libcaffe.so.1.0.0", str(b / "lib" / "libcaffe.so"))
    shutil.copy(os.path.join(home, "BUILD_INFO"), str(b / "BUILD_INFO"))
    (b / "BUNDLE_INFO").write_text("caffe: cpu build\ncuda_major: 0\nhost_libraries: \n"
                                   "image: localhost/psn-caffe:gpu 0123456789abcdef\n"
                                   "packed: now\n")
    data = str(tmp_path / "data")
    make_data(data, groups=2, per_group=5)
    res = subprocess.run([sys.executable, "-m", "psn.gpu_bundle", data, str(b)],
                         env=caffe_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return b


def test_gpu_check_cpu_mode_measures_every_step(caffe_env, tmp_path):
    b = _bundle_from_cpu_build(caffe_env, tmp_path)
    run = json.loads((b / "run" / "run.json").read_text())
    assert (run["model"], run["width"], run["schedule"], run["max_iter"]) == ("psn", 1.0, "paper", 3000)
    assert (run["train_clips"], run["test_clips"]) == (5, 5)
    from psn.gpu_memory import CONTEXT_MIB
    assert run["fold_mib_estimate"] > CONTEXT_MIB      # for K folds at once on the GPU host
    solver = (b / "run" / "solver.prototxt").read_text()
    assert 'net: "train_val.prototxt"' in solver and "solver_mode: GPU" in solver
    assert "/" not in (b / "run" / "train.txt").read_text().replace("data/", "")
    env = dict(caffe_env, PATH=os.path.dirname(sys.executable) + os.pathsep + caffe_env["PATH"])
    env.pop("LD_LIBRARY_PATH", None)   # the bundle's own lib/ must be enough
    env.pop("PYTHONPATH", None)        # nor pycaffe: the GPU host has no Boost.Python
    out = tmp_path / "out"
    res = subprocess.run(["bash", os.path.join(ROOT, "tools", "gpu_check.sh"), "--cpu", str(b),
                          "--out", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads((out / "gpu_check.json").read_text())
    assert r["mode"] == "cpu" and r["gtest"]["passed"] >= 10 and r["gtest"]["gpu_cases"] == 0
    gtests = (out / "gtest.log").read_text()
    for case in ("TPULayerTest", "HDF5PrefetchDataLayerTest"):     # both binaries, CPU cases
        ran = set(re.findall(r"^\[       OK \] %s/(\d)\." % case, gtests, re.M))
        assert ran == {"0", "1"}, (case, ran)
    # The folds' data layer, timed beside Caffe's own HDF5Data in the same run.
    t = r["psn_time"]
    assert t["data_layer"] == "HDF5PrefetchData"
    assert t["data_layer_forward_ms"] is not None and t["hdf5data_data_layer_forward_ms"] > 0
    assert t["hdf5data_forward_backward_ms"] > 0
    assert r["engine"] == "caffe"      # without a GPU, whatever --engine says
    t = r["psn_time"]
    assert t["forward_ms"] > 0 and t["backward_ms"] > 0
    # The per-stream sums come from the per-layer lines: together they make the forward pass.
    parts = sum(t[k] or 0 for k in ("spatial_forward_ms", "temporal_forward_ms",
                                    "head_forward_ms", "data_forward_ms"))
    assert 0.8 * t["forward_ms"] < parts < 1.2 * t["forward_ms"] + 5
    assert t["spatial_forward_ms"] > t["temporal_forward_ms"] > 0
    assert r["train"]["iterations"] == 2 and r["train"]["ms_per_iteration"] > 0
    assert r["train"]["last_loss"] is not None
    assert r["tpu"]["cpp_cpu_ms"] > 0 and r["tpu"]["python_fallback_ms"] > 0
    assert (out / "run" / "snapshots" / "psn_iter_2.caffemodel").exists()
    # The bundle's folds through the project's tools, with the host's python3: the caffe
    # binary trains, onnxruntime predicts, report.py scores.
    f = r["folds"]
    assert f["ran"] is True and f["folds"] == 2 and f["iterations"] == 2 and f["at_once"] == 2
    assert f["seconds"] > 0 and f["uf1"] is not None and 0 <= f["rr_percent"] <= 100
    assert (out / "folds" / "report" / "report.md").exists()
    log = (out / "folds.log").read_text()
    assert "predict through onnxruntime" in log
    assert os.path.islink(b / "run" / "data")          # one copy of the shards: data/shards
    md = (out / "gpu_check.md").read_text()
    assert "| one 3000-iteration fold, extrapolated, min |" in md
    assert "bundle localhost/psn-caffe:gpu@0123456789ab, caffe engines |" in md.splitlines()[0]
    assert r["bundle"]["image"].startswith("localhost/psn-caffe:gpu ")
