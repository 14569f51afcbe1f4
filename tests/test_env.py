"""psn.env: ensure_caffe taking the Caffe that tools/build_caffe.sh built (the CUDA build
first, the CPU one else, nothing asked when PSN_CAFFE_HOME is already set, one line and exit 2
without a build), and cpu_only_caffe / gpu_refusal telling a CPU_ONLY Caffe from its
BUILD_INFO or, without one, from its binary's `device_query`. A stand-in build_caffe.sh and
caffe binary play the builds, so none of this needs Caffe."""
import os
import stat
import sys

import pytest

from psn import env

# The --print-env of a build: PSN_CAFFE_HOME first, the later exports refer to it.
FAKE_BUILD = """#!/bin/sh
echo "$*" >> "%(calls)s"
case " $* " in
  *" --cuda "*) home="%(cuda)s" ;;
  *) home="%(cpu)s" ;;
esac
if [ -z "$home" ]; then
  echo "building it takes a while" >&2; echo "see --help" >&2; echo "no such build: $*" >&2; echo >&2
  exit 1
fi
echo "export PSN_CAFFE_HOME=\\"$home\\""
echo "export PYTHONPATH=\\"\\$PSN_CAFFE_HOME/python\\""
"""


def executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """make(cuda=HOME or '', cpu=HOME or ''): psn.env.ROOT pointed at a checkout whose
    tools/build_caffe.sh prints the exports of those builds ('' = not built); returns the
    file that lists the arguments of each call. The process environment and sys.path are
    restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for key in ("PSN_CAFFE_HOME", "PYTHONPATH", "GLOG_minloglevel"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(env, "ROOT", str(tmp_path))
    (tmp_path / "tools").mkdir()
    calls = tmp_path / "calls.txt"

    def make(cuda="", cpu=""):
        executable(tmp_path / "tools" / "build_caffe.sh",
                   FAKE_BUILD % {"calls": calls, "cuda": cuda, "cpu": cpu})
        return calls

    return make


def called(calls):
    return calls.read_text().splitlines() if calls.exists() else []


# ---------------------------------------------------------------- ensure_caffe


def test_the_cuda_build_is_taken_when_there_is_one(checkout):
    calls = checkout(cuda="/builds/gpu", cpu="/builds/cpu")
    env.ensure_caffe()
    assert os.environ["PSN_CAFFE_HOME"] == "/builds/gpu"
    # The later exports are expanded with the earlier ones.
    assert os.environ["PYTHONPATH"] == "/builds/gpu/python"
    assert sys.path[0] == "/builds/gpu/python"
    assert os.environ["GLOG_minloglevel"] == "2"
    assert called(calls) == ["--print-env --cuda"]
    # The checkout's own modules stay importable, behind the build's pycaffe.
    assert sys.path.index(env.ROOT) == 1 and os.path.join(env.ROOT, "layers") in sys.path


def test_without_a_cuda_build_the_cpu_one_is_taken(checkout):
    calls = checkout(cpu="/builds/cpu")
    env.ensure_caffe()
    assert os.environ["PSN_CAFFE_HOME"] == "/builds/cpu"
    assert called(calls) == ["--print-env --cuda", "--print-env"]


@pytest.mark.parametrize("cuda,home,asked", [
    (False, "/builds/cpu", ["--print-env"]),
    (True, "/builds/gpu", ["--print-env --cuda"]),
])
def test_cuda_picks_the_build(checkout, cuda, home, asked):
    calls = checkout(cuda="/builds/gpu", cpu="/builds/cpu")
    env.ensure_caffe(cuda=cuda)
    assert os.environ["PSN_CAFFE_HOME"] == home and called(calls) == asked


def test_no_build_is_one_line_and_exit_2(checkout, capsys):
    calls = checkout(cuda="/builds/gpu")
    with pytest.raises(SystemExit) as e:
        env.ensure_caffe(cuda=False, prefix="predict: error: ")
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["predict: error: Caffe is not built for this checkout (no such build: "
                   "--print-env): build it with tools/build_caffe.sh, then eval "
                   "\"$(tools/build_caffe.sh --print-env)\""]
    assert called(calls) == ["--print-env"] and "PSN_CAFFE_HOME" not in os.environ


def test_a_silent_failure_is_still_said(checkout, tmp_path, capsys):
    checkout()
    executable(tmp_path / "tools" / "build_caffe.sh", "#!/bin/sh\nexit 3\n")
    with pytest.raises(SystemExit):
        env.ensure_caffe()
    assert "(build_caffe.sh --print-env failed)" in capsys.readouterr().err


def test_the_exports_already_run_are_used_as_they_are(checkout, monkeypatch, tmp_path):
    """After `eval "$(tools/build_caffe.sh --print-env)"` nothing is asked of the script; its
    PYTHONPATH is put on sys.path in order, and a GLOG level the user set is kept."""
    calls = checkout(cuda="/builds/gpu", cpu="/builds/cpu")
    monkeypatch.setenv("PSN_CAFFE_HOME", "/mine")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/mine/python", "", "/mine/extra"]))
    monkeypatch.setenv("GLOG_minloglevel", "0")
    blanks = sys.path.count("")
    env.ensure_caffe()
    assert called(calls) == []
    assert os.environ["PSN_CAFFE_HOME"] == "/mine" and os.environ["GLOG_minloglevel"] == "0"
    assert sys.path[0] == "/mine/python"
    assert sys.path.index("/mine/python") < sys.path.index("/mine/extra")
    assert sys.path.count("") == blanks
    # Asked again: nothing is added twice.
    before = list(sys.path)
    env.ensure_caffe()
    assert sys.path == before


# ---------------------------------------------------------------- cpu_only_caffe, gpu_refusal


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A PSN_CAFFE_HOME with bin/, and no caffe on PATH."""
    h = tmp_path / "caffe_home"
    (h / "bin").mkdir(parents=True)
    monkeypatch.setenv("PSN_CAFFE_HOME", str(h))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    return h


def fake_caffe(folder, says, name="caffe"):
    """A caffe binary whose device_query prints `says` to stderr (and exits 1 when it does)."""
    return executable(folder / name, "#!/bin/sh\necho \"$*\" > \"%s.args\"\n"
                                     "echo '%s' >&2\n[ -z '%s' ]\n" % (folder / name, says, says))


def test_build_info_says_whether_it_is_cuda(home):
    info = home / "BUILD_INFO"
    # The binary would say CPU-only: BUILD_INFO, when it says, is believed without asking it.
    fake_caffe(home / "bin", "Check failed: Cannot use GPU in CPU-only Caffe")
    info.write_text("source: x\noptions: cuda=0 cudnn=0 arch=sm_90\n")
    assert env.cpu_only_caffe() == "%s says cuda=0" % info
    info.write_text("source: x\noptions: cudnn=1 cuda=1 py=3.11\n")
    assert env.cpu_only_caffe() is None
    assert not (home / "bin" / "caffe.args").exists()


def test_a_caffe_without_build_info_is_asked(home):
    binary = fake_caffe(home / "bin", "F0101 common.cpp:66] Cannot use GPU in CPU-only Caffe: "
                                      "check mode.")
    assert env.cpu_only_caffe() == \
        "%s device_query says 'Cannot use GPU in CPU-only Caffe'" % binary
    assert (home / "bin" / "caffe.args").read_text().split() == ["device_query", "-gpu", "0"]
    # A BUILD_INFO without the options line does not settle it either.
    (home / "BUILD_INFO").write_text("source: x\n")
    assert "device_query says" in env.cpu_only_caffe()


def test_a_caffe_that_can_use_the_gpu_is_not_refused(home):
    fake_caffe(home / "bin", "")
    assert env.cpu_only_caffe() is None and env.gpu_refusal("--gpus") is None


def test_caffe_on_path_is_asked_when_the_home_has_none(home, tmp_path, monkeypatch):
    on_path = tmp_path / "path"
    on_path.mkdir()
    binary = fake_caffe(on_path, "Cannot use GPU in CPU-only Caffe")
    monkeypatch.setenv("PATH", str(on_path))
    assert env.cpu_only_caffe().startswith(binary + " device_query says")
    monkeypatch.delenv("PSN_CAFFE_HOME")
    assert env.cpu_only_caffe().startswith(binary + " device_query says")


def test_no_caffe_at_all_is_not_a_refusal(home, monkeypatch):
    # Without a Caffe to ask, refusing would be a guess: pycaffe's own error says it later.
    assert env.cpu_only_caffe() is None
    monkeypatch.delenv("PSN_CAFFE_HOME")
    assert env.cpu_only_caffe() is None
    # A binary that cannot be run is no answer either.
    (home / "bin" / "caffe").write_text("not a program")
    monkeypatch.setenv("PSN_CAFFE_HOME", str(home))
    assert env.cpu_only_caffe() is None


def test_gpu_refusal_names_the_flag_why_and_the_fix(home):
    (home / "BUILD_INFO").write_text("options: cuda=0\n")
    line = env.gpu_refusal("--gpu")
    assert line.startswith("--gpu: this Caffe is built CPU_ONLY (%s says cuda=0). Fix: drop --gpu "
                           "to run on the CPU" % (home / "BUILD_INFO"))
    assert "tools/build_caffe.sh --cuda (see its --help)" in line
    assert "eval \"$(tools/build_caffe.sh --cuda --print-env)\"" in line and "\n" not in line
    (home / "BUILD_INFO").write_text("options: cuda=1\n")
    assert env.gpu_refusal("--gpu") is None
