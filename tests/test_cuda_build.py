"""Every CUDA source of the project's Caffe compiles with nvcc for CUDA builds (no GPU needed).

tools/check_cuda_build.sh patches a copy of the Caffe source as `build_caffe.sh --cuda` does
(the CUDA 12/13 and cuDNN 8/9 patches in tools/caffe_patches/cuda included) and compiles all
its .cu files, the .cpp files that call CUDA/cuBLAS/cuRAND/cuDNN and the project's layers,
objects only. The first run takes minutes (about 10 CPU-minutes); later runs read its cache.
"""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATCH_DIR = os.path.join(ROOT, "tools", "caffe_patches", "cuda")


def _nvcc():
    for cand in (os.path.join(os.environ.get("CUDA_DIR", "/usr/local/cuda"), "bin", "nvcc"),
                 shutil.which("nvcc")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


needs_nvcc = pytest.mark.skipif(_nvcc() is None, reason="nvcc is not installed on this machine "
                                "(set CUDA_DIR or put nvcc on PATH to run the CUDA compile check)")


@pytest.fixture(scope="module")
def report():
    out = subprocess.run([os.path.join(ROOT, "tools", "check_cuda_build.sh")],
                         capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, "check_cuda_build.sh failed:\n" + out.stderr[-6000:]
    path = out.stdout.strip().splitlines()[-1]
    status, info = {}, {}
    with open(path) as f:
        for line in f:
            word, _, rest = line.strip().partition(" ")
            if word in ("ok", "FAILED"):
                status[rest] = word
            else:
                info[word] = rest
    tree = os.path.dirname(info["objects"])
    return status, info, tree


def _sources(top, ext):
    found = set()
    for dirpath, _, files in os.walk(os.path.join(top, "src")):
        for name in files:
            if name.endswith(ext):
                found.add(os.path.relpath(os.path.join(dirpath, name), top))
    return found


@needs_nvcc
def test_every_cu_source_compiled(report):
    status, _, tree = report
    cu = _sources(tree, ".cu")
    assert len(cu) >= 60, f"only {len(cu)} .cu files in {tree}: not a Caffe tree?"
    assert {s for s, v in status.items() if v == "ok" and s.endswith(".cu")} == cu
    assert not [s for s, v in status.items() if v != "ok"]


@needs_nvcc
def test_project_layers_and_patched_cpp_sources_compiled(report):
    status, _, _ = report
    wanted = _sources(os.path.join(ROOT, "layers"), ".cu") | _sources(os.path.join(ROOT, "layers"), ".cpp")
    # The files the CUDA 13 / cuDNN 9 patches touch, compiled with CUDA on and USE_CUDNN.
    wanted |= {"src/caffe/common.cpp", "src/caffe/test/test_platform.cpp",
               "src/caffe/layers/cudnn_conv_layer.cpp", "src/caffe/layers/cudnn_deconv_layer.cpp",
               "src/caffe/layers/cudnn_softmax_layer.cpp", "src/caffe/util/math_functions.cu",
               "src/caffe/util/cudnn.cpp", "tools/caffe.cpp"}
    missing = sorted(s for s in wanted if status.get(s) != "ok")
    assert not missing, f"not compiled: {missing}"


@needs_nvcc
def test_cu_objects_hold_device_code(report):
    status, info, _ = report
    objects = info["objects"]
    empty = []
    for src in (s for s in status if s.endswith(".cu")):
        obj = os.path.join(objects, "cuda", src[:-3] + ".o")
        sections = subprocess.run(["readelf", "-S", "-W", obj], capture_output=True,
                                  text=True, check=True).stdout
        if ".nv_fatbin" not in sections:
            empty.append(src)
    assert not empty, f"objects without device code: {empty}"


@needs_nvcc
def test_check_tree_has_the_cuda_patches(report):
    _, _, tree = report
    with open(os.path.join(tree, "src/caffe/layers/cudnn_conv_layer.cpp")) as f:
        conv = f.read()
    assert "cudnn::getConvolutionForwardAlgorithm(" in conv
    assert "CUDNN_CONVOLUTION_FWD_SPECIFY_WORKSPACE_LIMIT" not in conv
    with open(os.path.join(tree, "Makefile.config")) as f:
        config = f.read()
    assert "USE_CUDNN := 1" in config and "CPU_ONLY" not in config


def test_cuda_patches_say_why_and_keep_old_toolkits():
    patches = sorted(p for p in os.listdir(PATCH_DIR) if p.endswith(".patch"))
    assert patches, "no patches in tools/caffe_patches/cuda"
    for name in patches:
        with open(os.path.join(PATCH_DIR, name)) as f:
            text = f.read()
        assert text.startswith("Why: "), f"{name} does not begin with a 'Why:' paragraph"
        added = "\n".join(line[1:] for line in text.splitlines() if line.startswith("+"))
        # Version-guarded: each change keeps the old toolkit's path (CUDA 8 / cuDNN 6).
        assert any(g in added for g in ("CUDART_VERSION", "CUDNN_VERSION_MIN", "NVCC_MAJOR",
                                        "wildcard")), f"{name} adds no version guard"
