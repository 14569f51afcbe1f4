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


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed on this machine")
@pytest.mark.parametrize("source", CU_SOURCES, ids=os.path.basename)
def test_cu_source_compiles_for_sm80_sm90(caffe_env, tmp_path, source):
    cuda_inc = subprocess.run([os.path.join(ROOT, "tools", "fetch_cuda_headers.sh")],
                              capture_output=True, text=True, check=True).stdout.split()
    home = caffe_env["PSN_CAFFE_HOME"]
    cmd = [NVCC, "-std=c++17", "-c", source, "-o", str(tmp_path / "out.o"),
           "-I", os.path.join(ROOT, "layers", "include"), "-I", os.path.join(home, "include"),
           "-I", "/usr/include/hdf5/serial",
           "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90"]
    for inc in cuda_inc:
        cmd += ["-I", inc]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    symbols = subprocess.run(["nm", "-C", str(tmp_path / "out.o")], capture_output=True,
                             text=True).stdout
    assert "TPULayer<float>::Forward_gpu" in symbols
    assert "TPULayer<double>::Backward_gpu" in symbols
