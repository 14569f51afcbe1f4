"""Find the Caffe that tools/build_caffe.sh built, for tools run without `eval --print-env`."""
import os
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
