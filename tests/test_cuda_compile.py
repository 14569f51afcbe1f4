"""The CUDA sources of the project's layers compile against Caffe's headers (no GPU needed)."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc"
                                if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
CU_SOURCES = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(ROOT, "layers", "src"))
              for f in fs if f.endswith(".cu")]
# What each source must define (a source compiled to nothing, e.g. without Caffe's USE_HDF5,
# would pass otherwise).
SYMBOLS = {"tpu_layer.cu": ("TPULayer<float>::Forward_gpu", "TPULayer<double>::Backward_gpu"),
           "hdf5_prefetch_data_layer.cu": ("HDF5PrefetchDataLayer<float>::Forward_gpu",
                                           "HDF5PrefetchDataLayer<double>::Forward_gpu")}


def test_every_cuda_source_names_its_symbols():
    assert sorted(os.path.basename(s) for s in CU_SOURCES) == sorted(SYMBOLS)


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed on this machine")
@pytest.mark.parametrize("source", CU_SOURCES, ids=os.path.basename)
def test_cu_source_compiles_for_sm80_sm90(caffe_env, tmp_path, source):
    cuda_inc = subprocess.run([os.path.join(ROOT, "tools", "fetch_cuda_headers.sh")],
                              capture_output=True, text=True, check=True).stdout.split()
    home = caffe_env["PSN_CAFFE_HOME"]
    cmd = [NVCC, "-std=c++17", "-c", source, "-o", str(tmp_path / "out.o"),
           "-I", os.path.join(ROOT, "layers", "include"), "-I", os.path.join(home, "include"),
           "-I", "/usr/include/hdf5/serial", "-DUSE_HDF5",   # as Caffe's Makefile defines it
           "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90"]
    for inc in cuda_inc:
        cmd += ["-I", inc]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    symbols = subprocess.run(["nm", "-C", str(tmp_path / "out.o")], capture_output=True,
                             text=True).stdout
    for symbol in SYMBOLS[os.path.basename(source)]:
        assert symbol in symbols, symbol
