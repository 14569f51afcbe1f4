"""psn.gpu_memory: several folds on one GPU (run_folds --per-gpu K|auto), sized by the memory
nvidia-smi reports free and a fold's memory estimated from the run's own net; K that do not
fit are refused before any fold starts, in one line."""
import os

import pytest

from psn import gpu_memory
from run_folds_helpers import ROOT
from psn.config import RunConfig, RunError, parse_per_gpu


def uuid(index):
    return "GPU-%d0000000-d72c-4106-c12f-20bd9faed9f6" % index


@pytest.fixture
def smi(tmp_path, monkeypatch):
    """smi(rows): a fake nvidia-smi on PATH answering the memory query with `rows`
    [(index, total MiB, used MiB)] (None: [N/A]), GPU i's UUID GPU-i0000000-...; smi(None): no
    nvidia-smi at all."""
    def put(rows):
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        if rows is None:
            monkeypatch.setenv("PATH", str(bin_dir))
            return
        text = "".join("%d, %s, %s, %s\\n" % (i, uuid(i), "[N/A]" if total is None else total,
                                              "[N/A]" if used is None else used)
                       for i, total, used in rows)
        (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nprintf '%s'\n" % text)
        (bin_dir / "nvidia-smi").chmod(0o755)
        monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return put


def test_free_memory_per_gpu_through_cuda_visible_devices(smi, monkeypatch):
    smi([(0, 81559, 559), (1, 81559, 40559), (2, 16000, 1000)])
    assert gpu_memory.gpu_free_mib([0, 1]) == {0: (81000, 81559), 1: (41000, 81559)}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert gpu_memory.gpu_free_mib([0, 1]) == {0: (15000, 16000), 1: (81000, 81559)}


def test_cuda_visible_devices_read_as_cuda_reads_it(smi, monkeypatch):
    """A list of UUIDs (whole or their first characters) names GPUs as a list of indices does;
    the first entry that names no GPU hides it and every GPU after it; a GPU named twice
    leaves none; a MIG device is not a GPU whose memory nvidia-smi's rows hold."""
    smi([(0, 81559, 559), (1, 81559, 40559), (2, 16000, 1000)])
    for visible in (uuid(2) + "," + uuid(0), "GPU-20000000, GPU-0", "GPU-2,GPU-0,1", " 2 ,0"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert gpu_memory.gpu_free_mib([0, 1]) == {0: (15000, 16000), 1: (81000, 81559)}, visible
    for visible in ("2,7,0", "2,GPU-0", "GPU-2,0", "2,MIG-5a1e2f3c-0000-1111-2222-33334444",
                    "2,-1,0"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert gpu_memory.gpu_free_mib([0, 1]) == {0: (15000, 16000)}, visible
    for visible in ("GPU-", "", "0,0", "GPU-2,GPU-20"):    # "GPU-" is every GPU's prefix
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert gpu_memory.gpu_free_mib([0]) == {}, visible
    said = []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-5a1e2f3c")
    assert gpu_memory.plan_per_gpu(2, (0,), 10, 3000, said.append) == 2
    assert said == ["nvidia-smi does not report GPU 0 (CUDA_VISIBLE_DEVICES: MIG-5a1e2f3c): 2 "
                    "folds at once there, not checked against its memory"]


def test_a_gpu_without_memory_figures_keeps_its_place_in_the_count(smi, monkeypatch):
    """nvidia-smi prints [N/A] for some GPUs' memory; the GPUs after it keep their ids."""
    smi([(0, None, None), (1, 16000, 1000)])
    assert gpu_memory.gpu_free_mib([0, 1]) == {1: (15000, 16000)}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    assert gpu_memory.gpu_free_mib([0, 1]) == {0: (15000, 16000)}


def test_k_that_fits_is_kept(smi):
    smi([(0, 81559, 559)])
    said = []
    assert gpu_memory.plan_per_gpu(4, (0,), 10, 3000, said.append) == 4
    assert said == []


def test_k_that_does_not_fit_is_refused_naming_the_gpu_and_the_largest_k(smi):
    smi([(0, 81559, 559), (1, 16000, 4000)])      # GPU 1: 12000 MiB free, 4 folds of 3000
    with pytest.raises(RunError) as e:
        gpu_memory.plan_per_gpu(5, (0, 1), 10, 3000, print)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("GPU 1 has 11.7 GiB free (of 15.6 GiB); 5 folds at once need about 14.6 GiB")
    assert "give --per-gpu 4 or fewer" in msg


def test_auto_takes_as_many_as_fit_but_no_more_than_the_folds_give_each_gpu(smi):
    smi([(0, 81559, 559), (1, 81559, 559)])
    said = []
    assert gpu_memory.plan_per_gpu(0, (0, 1), 10, 3000, said.append) == 5   # 27 fit; 5 folds each
    assert said and said[0].startswith("--per-gpu auto: 5 folds at once on each GPU")
    smi([(0, 10000, 1000)])
    assert gpu_memory.plan_per_gpu(0, (0,), 10, 3000, said.append) == 3
    smi([(0, 10000, 8000)])
    with pytest.raises(RunError, match="GPU 0 has 2.0 GiB free .* one fold needs about 2.9 GiB"):
        gpu_memory.plan_per_gpu(0, (0,), 10, 3000, said.append)


def test_without_nvidia_smi_k_goes_unchecked_and_auto_is_refused(smi):
    smi(None)
    said = []
    assert gpu_memory.plan_per_gpu(3, (0,), 10, 3000, said.append) == 3
    assert "not checked" in said[0]
    with pytest.raises(RunError, match="--per-gpu auto sizes K"):
        gpu_memory.plan_per_gpu(0, (0,), 10, 3000, said.append)


def test_per_gpu_flag_and_the_settings_it_needs():
    assert parse_per_gpu("auto") == 0 and parse_per_gpu("3") == 3
    with pytest.raises(RunError, match="--per-gpu takes"):
        parse_per_gpu("many")
    assert RunConfig(data="d", out="r", gpus=(0,), per_gpu=4).per_gpu == 4
    for bad in (dict(per_gpu=2), dict(gpus=(0, 1), multi_gpu=True, per_gpu=2),
                dict(gpus=(0,), launcher="slurm", per_gpu=2), dict(gpus=(0,), per_gpu=-1)):
        with pytest.raises(RunError, match="--per-gpu"):
            RunConfig(data="d", out="r", **bad)


def test_a_fold_is_estimated_from_the_run_net(caffe_env, tmp_path, smi):
    """Wider nets need more; the estimate is the CUDA context plus the nets' values; a fold
    that cannot fit is refused by folds_per_gpu before anything trains."""
    from run_folds_helpers import make_data
    from preprocessing.layout import DataFolder
    from psn import training
    from psn.fold_setup import run_train_net
    data = make_data(str(tmp_path / "data"))
    shard = DataFolder(data).fold_shards(1)["train"][0]
    need = {}
    for width in (0.125, 0.5):
        cfg = RunConfig(data=data, out=str(tmp_path / "run"), width=width, gpus=(0,), per_gpu=2)
        need[width] = gpu_memory.fold_mib(run_train_net(cfg), shard)
    assert gpu_memory.CONTEXT_MIB < need[0.125] < need[0.5]
    smi([(0, int(1.5 * need[0.5]), 0)])                 # one fold fits, two do not
    with pytest.raises(RunError, match="GPU 0 has .* 2 folds at once .* give --per-gpu 1 or"):
        training.folds_per_gpu(cfg, run_train_net(cfg), [1, 2], print)
    smi([(0, 81559, 0)])
    assert training.folds_per_gpu(cfg, run_train_net(cfg), [1, 2], print) == 2


def test_without_pycaffe_k_runs_unchecked_and_auto_is_refused(tmp_path, monkeypatch):
    """A GPU bundle's host has a plain-Python caffe/ folder, which imports as an empty
    namespace package: the estimate must say it cannot count, not fail with AttributeError."""
    import psn.caffe_proto
    from psn import training
    from run_folds_helpers import make_data
    monkeypatch.setattr(psn.caffe_proto, "pycaffe", lambda: None)
    with pytest.raises(ImportError, match="pycaffe does not import here"):
        gpu_memory.fold_mib(None, "unused.h5")
    data = make_data(str(tmp_path / "data"))
    said = []
    cfg = RunConfig(data=data, out=str(tmp_path / "run"), width=0.125, gpus=(0,), per_gpu=3)
    assert training.folds_per_gpu(cfg, None, [1, 2], said.append) == 3
    assert "could not be estimated" in said[0] and "not checked" in said[0]
    cfg = RunConfig(data=data, out=str(tmp_path / "run"), width=0.125, gpus=(0,), per_gpu=0)
    with pytest.raises(RunError, match="--per-gpu auto sizes K by a fold's memory"):
        training.folds_per_gpu(cfg, None, [1, 2], said.append)


def test_not_even_one_fold_is_said_so(smi):
    smi([(0, 4000, 2000)])
    with pytest.raises(RunError, match="not even one fold fits"):
        gpu_memory.plan_per_gpu(2, (0,), 10, 3000, print)


def test_the_prefetch_batches_counted_are_the_layers_own():
    """PREFETCH_BATCHES mirrors the C++ layer's kPrefetch (filled ahead) plus the one in use."""
    import re
    header = os.path.join(ROOT, "layers", "include", "caffe", "layers",
                          "hdf5_prefetch_data_layer.hpp")
    with open(header) as f:
        k = int(re.search(r"static const int kPrefetch = (\d+);", f.read()).group(1))
    assert gpu_memory.PREFETCH_BATCHES == k + 1
