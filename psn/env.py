"""Find the Caffe that tools/build_caffe.sh built, for tools run without `eval --print-env`."""
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_caffe(cuda=None, prefix="error: "):
    """Put the built pycaffe and caffe binary on the paths of this process and its children.

    Does nothing when PSN_CAFFE_HOME is already set (the user ran the --print-env exports).
    cuda: True/False picks the build; None takes the CUDA build when there is one. Without a
    build: one line (`prefix`, what build_caffe.sh said, how to build), exit 2.
    """
    if not os.environ.get("PSN_CAFFE_HOME"):
        script = os.path.join(ROOT, "tools", "build_caffe.sh")
        choices = [["--cuda"], []] if cuda is None else ([["--cuda"]] if cuda else [[]])
        out = None
        for extra in choices:
            out = subprocess.run([script, "--print-env"] + extra, capture_output=True, text=True)
            if out.returncode == 0:
                break
        if out.returncode != 0:
            from preprocessing.errors import fail
            said = [line for line in out.stderr.splitlines() if line.strip()]
            raise SystemExit(fail(prefix, "Caffe is not built for this checkout (%s): build it "
                                          "with tools/build_caffe.sh, then eval \"$(tools/"
                                          "build_caffe.sh --print-env)\""
                                  % (said[-1].strip() if said else "build_caffe.sh --print-env "
                                     "failed")))
        for line in out.stdout.splitlines():
            key, _, value = line[len("export "):].partition("=")
            os.environ[key] = os.path.expandvars(value.strip('"'))
    os.environ.setdefault("GLOG_minloglevel", "2")
    for p in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        if p and p not in sys.path:
            sys.path.insert(0, p)
    for p in (os.path.join(ROOT, "layers"), ROOT):
        if p not in sys.path:
            sys.path.insert(1, p)


def one_blas_thread():
    """Hold this process's BLAS to one thread, as the probe grids train; call it before
    anything loads Caffe (psn.caffe_proto imports pycaffe, and with it OpenBLAS).

    OpenBLAS reads its thread count once, when it loads, and a sum over two threads adds in
    another order than over one, so a marginal run can end otherwise: Caffe's RNN on the order
    task at contrast 32, sigma 16, noise 4, seed 1 gave loss 0.40 on two threads and 0.1793 on
    one. The grids run one-thread workers side by side (two single-thread runs beat one run on
    two threads on this project's CPU nets), and a rerun of one of their runs must match it."""
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ.setdefault("GLOG_minloglevel", "2")


def number_gpus_as_nvidia_smi():
    """Make CUDA number the GPUs of this process and its children as nvidia-smi does.

    CUDA puts the fastest GPU first unless CUDA_DEVICE_ORDER says otherwise; nvidia-smi, and the
    user reading it, count in PCI bus order. On a host with GPUs of two kinds `--gpus 1` would
    then train on another card than nvidia-smi's GPU 1, whose free memory `--per-gpu` reads
    (psn.gpu_memory). Called before CUDA starts in this process; set over any value the user
    gave, since the memory check depends on it."""
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"


def cpu_only_caffe():
    """Why the Caffe in use cannot run on a GPU (it is built CPU_ONLY), or None.

    Not asked of pycaffe: its set_device and set_mode_gpu abort the process on such a build.
    tools/build_caffe.sh records its options in PSN_CAFFE_HOME/BUILD_INFO (cuda=0 or 1); a
    Caffe without that record is asked in a child process (`caffe device_query -gpu 0` dies
    saying 'Cannot use GPU in CPU-only Caffe')."""
    home = os.environ.get("PSN_CAFFE_HOME")
    info = os.path.join(home, "BUILD_INFO") if home else None
    if info and os.path.isfile(info):
        with open(info, errors="replace") as f:
            m = re.search(r"^options:.*?\bcuda=(\d)", f.read(), re.M)
        if m:
            return "%s says cuda=0" % info if m.group(1) == "0" else None
    binary = os.path.join(home, "bin", "caffe") if home else None
    if not (binary and os.path.exists(binary)):
        binary = shutil.which("caffe")
    if not binary:
        return None
    try:
        out = subprocess.run([binary, "device_query", "-gpu", "0"], capture_output=True,
                             text=True, timeout=120, env=dict(os.environ, GLOG_logtostderr="1"))
    except (OSError, subprocess.SubprocessError):
        return None
    if "CPU-only Caffe" in out.stdout + out.stderr:
        return "%s device_query says 'Cannot use GPU in CPU-only Caffe'" % binary
    return None


def gpu_refusal(flag):
    """One line refusing `flag` (--gpus, --gpu) on a CPU_ONLY Caffe, or None where it can run."""
    why = cpu_only_caffe()
    if why is None:
        return None
    return ("%s: this Caffe is built CPU_ONLY (%s). Fix: drop %s to run on the CPU, or on a "
            "CUDA host build the GPU Caffe with tools/build_caffe.sh --cuda (see its --help) "
            "and use it: eval \"$(tools/build_caffe.sh --cuda --print-env)\"" % (flag, why, flag))
