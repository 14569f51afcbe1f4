"""Operating-system errors end in one line naming the file and the fix, exit code 2."""
import errno
import os
import shutil
import subprocess
import sys

import pytest

from preprocessing.errors import os_error_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_os_error_line_names_file_and_fix():
    line = os_error_line(OSError(errno.ENOSPC, "No space left on device", "/out/shards/g.h5"))
    assert line.startswith("No space left on device: /out/shards/g.h5 (free some space")
    assert "what was finished is kept" in line
    assert os_error_line(OSError(errno.EROFS, "Read-only file system", "/ro")).endswith(
        "choose an output folder you can write)")


def test_preprocess_disk_full_is_one_line(monkeypatch, capsys, tmp_path):
    from preprocessing import cli, pipeline
    import fake_databases as fd
    root = fd.make_casme2(tmp_path / "db")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x.h5"))

    monkeypatch.setattr(pipeline, "run", full)
    assert cli.main(["run", "--casme2", root, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "x.h5" in err[0]


def test_report_on_a_binary_file_is_one_line(tmp_path):
    bad = tmp_path / "predictions.csv"
    bad.write_bytes(bytes(range(256)) * 4)
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "report.py"), str(bad),
                          "--out", str(tmp_path / "rep")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "not text" in lines[0], res.stderr


MEGC_PREDICTIONS = ("database,subject,clip,fold,label,pred,prob_0,prob_1,prob_2\n"
                    "samm,samm/006,a,1,0,0,0.8,0.1,0.1\n"
                    "samm,samm/007,b,2,1,1,0.1,0.8,0.1\n")


def _tool(name, *args, env=None):
    """(exit code, non-empty stderr lines) of tools/<name>; no traceback allowed."""
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", name)] + [str(a) for a in args],
                         capture_output=True, text=True, timeout=120, env=env)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, [l for l in res.stderr.splitlines() if l.strip()]


def _erofs(path, *a, **k):
    raise OSError(errno.EROFS, "Read-only file system", path)


def test_report_megc2019_on_a_binary_file_is_one_line(tmp_path):
    bad = tmp_path / "predictions.csv"
    bad.write_bytes(bytes(range(256)) * 4)
    rc, lines = _tool("report.py", bad, "--protocol", "megc2019", "--out", tmp_path / "rep")
    assert rc == 2 and len(lines) == 1, lines
    assert str(bad) in lines[0] and "is not text" in lines[0] and "run_folds wrote" in lines[0]


def test_report_megc2019_into_an_out_it_cannot_write_is_one_line(tmp_path, monkeypatch, capsys):
    """A --out under a regular file cannot be made (root included), and a read-only file
    system (EROFS, simulated: root writes into a chmod 555 folder) refuses the first file."""
    preds = tmp_path / "predictions.csv"
    preds.write_text(MEGC_PREDICTIONS)
    (tmp_path / "a_file").write_text("")
    for protocol in ("megc2019", "paper"):
        rc, lines = _tool("report.py", preds, "--protocol", protocol, "--out", tmp_path / "a_file" / "rep")
        assert rc == 2 and len(lines) == 1, lines
        if protocol == "megc2019":
            assert lines[0] == ("error: Not a directory: %s (a part of the path is a file, not a "
                                "folder)" % (tmp_path / "a_file" / "rep"))
    from psn import report
    from psn.report import megc
    monkeypatch.setattr(megc, "write_atomic", _erofs)
    out = tmp_path / "ro"
    assert report.main([str(preds), "--protocol", "megc2019", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: Read-only file system: %s (that file system is read-only: choose an "
                   "output folder you can write)" % (out / "megc2019.md")]


def test_parse_log_into_a_folder_it_cannot_write_is_one_line(tmp_path, monkeypatch, capsys):
    log = tmp_path / "train.log"
    log.write_text("I1125 07:40:01.123456 1 solver.cpp:1] Solving psn\n"
                   "I1125 07:40:02.123456 1 solver.cpp:2] Iteration 0, loss = 1.38\n"
                   "I1125 07:40:02.123456 1 solver.cpp:3]     Train net output #0: loss = 1.38\n")
    (tmp_path / "a_file").write_text("")
    rc, lines = _tool("parse_log.py", log, tmp_path / "a_file" / "out")
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: Not a directory: %s" % (tmp_path / "a_file" / "out"))
    from psn import caffe_log
    monkeypatch.setattr(caffe_log, "write_atomic", _erofs)
    assert caffe_log.main([str(log), str(tmp_path / "ro")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: Read-only file system: %s (that file system is read-only: choose an "
                   "output folder you can write)" % (tmp_path / "ro" / "train.log.train")]


def test_inspect_net_without_pycaffe_is_one_line(tmp_path):
    """pycaffe not importable (a `caffe` that fails to import stands in for a missing one), or
    Caffe not built at all (no .venv for build_caffe.sh --print-env): one line naming
    tools/build_caffe.sh, exit 2, before any file is read."""
    blocker = tmp_path / "no_pycaffe"
    blocker.mkdir()
    (blocker / "caffe.py").write_text("raise ImportError(\"No module named 'caffe'\")\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PSN_CAFFE_HOME")}
    args = ("--model", "psn", "--data", tmp_path / "no_data", "--out", tmp_path / "o")
    rc, lines = _tool("inspect_net.py", *args,
                      env=dict(env, PYTHONPATH=str(blocker), PSN_CAFFE_HOME=str(tmp_path)))
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith("inspect_net: pycaffe cannot be imported (No module named 'caffe')")
    assert "build it with tools/build_caffe.sh" in lines[0]
    rc, lines = _tool("inspect_net.py", *args, env=dict(env, PSN_VENV=str(tmp_path / "no_venv")))
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith("inspect_net: Caffe is not built for this checkout ([build_caffe] "
                               "error: no Python environment at %s" % (tmp_path / "no_venv"))
    assert "build it with tools/build_caffe.sh" in lines[0]
    assert not (tmp_path / "o").exists()


def test_slurm_check_without_slurm_is_one_line(tmp_path):
    """tools/check_slurm.sh on a machine without Slurm: one line naming what to install."""
    rc, lines = _run_script("check_slurm.sh", _bin_with(tmp_path, ("bash", "id", "dirname", "python3")))
    assert rc == 2
    if os.geteuid() == 0:
        assert lines == ["check_slurm: no slurmctld: install Slurm and munge first (Debian 12: "
                         "apt-get install slurmctld slurmd slurm-client munge)"]
    else:
        assert lines == ["check_slurm: needs root (slurmd runs the jobs as their user); run it "
                         "with sudo"]


def _bin_with(tmp_path, tools, fakes=None):
    """A PATH folder holding links to `tools` and small fake scripts {name: body}."""
    import shutil
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        os.symlink(shutil.which(tool), str(bin_dir / tool))
    for name, body in (fakes or {}).items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(0o755)
    return str(bin_dir)


def _run_script(name, path_dir, *args, env=None):
    res = subprocess.run([os.path.join(path_dir, "bash"), os.path.join(REPO, "tools", name),
                          *args], capture_output=True, text=True, timeout=60,
                         env=dict(env or {}, PATH=path_dir))
    return res.returncode, [l for l in res.stderr.splitlines() if l.strip()]


BASE_TOOLS = ("bash", "dirname", "id", "mkdir", "df", "awk", "sed", "cat", "date", "grep",
              "head", "tr", "basename")


SOURCED = ("caffe_tree.sh", "header_help.sh", "image_engine.sh")


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(os.path.join(REPO, "tools"))
                                        if n.endswith(".sh") and n not in SOURCED
                                        and n != "run_psn.sh"))
def test_every_shell_tool_answers_help_with_its_header_and_does_nothing_else(tmp_path, name):
    """--help prints the script's header comment and exits 0, on a PATH without the tools
    any real work needs (apt, nvcc, pip, pytest, Slurm): nothing is set up, built or run."""
    with open(os.path.join(REPO, "tools", name)) as f:
        first = f.read().splitlines()[1]
    res = subprocess.run([shutil.which("bash"), os.path.join(REPO, "tools", name), "--help"],
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": _bin_with(tmp_path, BASE_TOOLS + ("nproc",)),
                              "HOME": str(tmp_path)})
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout.splitlines()[0] == first[2:]


def test_run_psn_help_lists_the_options_without_building_caffe(tmp_path):
    """run_psn.sh's options are psn.main's argparse: shown after the .venv is checked, with
    Caffe not built (an empty cache here: a build would take minutes)."""
    res = subprocess.run(["bash", os.path.join(REPO, "tools", "run_psn.sh"), "--help"],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PSN_CACHE=str(tmp_path / "cache")))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: run_psn.sh")
    assert "--experiment" in res.stdout
    assert not (tmp_path / "cache" / "caffe").exists()


def test_image_check_without_an_engine_is_one_line(tmp_path):
    rc, lines = _run_script("check_image.sh", _bin_with(tmp_path, BASE_TOOLS))
    assert rc == 2
    assert lines == ["check_image: no Docker daemon and no buildah: install one (Debian 12: "
                     "apt-get install buildah) or run it where Docker is"]


def test_image_check_with_buildah_but_not_root_is_one_line(tmp_path):
    path = _bin_with(tmp_path, [t for t in BASE_TOOLS if t != "id"],
                     {"buildah": "exit 0", "id": "echo 1000"})
    rc, lines = _run_script("check_image.sh", path)
    assert rc == 2
    assert lines == ["check_image: buildah builds as root here (chroot isolation, vfs storage); "
                     "run it with sudo, or on a machine with a Docker daemon"]


def test_image_check_without_disk_space_is_one_line(tmp_path):
    store = tmp_path / "store"
    path = _bin_with(tmp_path, [t for t in BASE_TOOLS if t != "id"],
                     {"buildah": "echo %s" % store, "id": "echo 0"})
    rc, lines = _run_script("check_image.sh", path, env={"PSN_IMAGE_MIN_FREE_GB": "999999"})
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith("check_image: needs 999999 GB free under %s (the engine's "
                               "storage; vfs copies every layer), has " % store)


def _fake_bundle(tmp_path, cuda_major=13):
    b = tmp_path / "bundle"
    (b / "bin").mkdir(parents=True)
    (b / "bin" / "caffe.bin").write_text("#!/bin/sh\nexit 0\n")
    (b / "bin" / "caffe.bin").chmod(0o755)
    (b / "BUNDLE_INFO").write_text("cuda_major: %d\nhost_libraries: libcublas.so.13\n"
                                   % cuda_major)
    return str(b)


GPU_CHECK_TOOLS = BASE_TOOLS + ("pwd", "tar", "xz", "ldd")


def test_gpu_check_without_a_gpu_is_one_line(tmp_path):
    rc, lines = _run_script("gpu_check.sh", _bin_with(tmp_path, GPU_CHECK_TOOLS),
                            _fake_bundle(tmp_path), "--out", str(tmp_path / "out"))
    assert rc == 2
    assert lines == ["gpu_check: no nvidia-smi: this host has no NVIDIA driver (gpu_check.sh "
                     "--cpu checks the bundle without a GPU)"]


def test_gpu_check_with_an_old_driver_is_one_line(tmp_path):
    smi = ('case "$1" in --query-gpu=name*) echo "NVIDIA H100";; --query-gpu=driver*) '
           'echo 535.104;; *) echo "| NVIDIA-SMI 535.104   Driver Version: 535.104   '
           'CUDA Version: 12.2 |";; esac')
    path = _bin_with(tmp_path, GPU_CHECK_TOOLS, {"nvidia-smi": smi})
    rc, lines = _run_script("gpu_check.sh", path, _fake_bundle(tmp_path),
                            "--out", str(tmp_path / "out"))
    assert rc == 2
    assert lines == ["gpu_check: the driver (535.104) supports CUDA 12.2; the bundle is built "
                     "with CUDA 13: update the driver (CUDA 13 needs 580 or newer)"]


def test_gpu_check_asks_nvidia_smi_of_the_gpu_caffe_will_use(tmp_path):
    """Caffe's GPU 0 is the first of CUDA_VISIBLE_DEVICES, counted as nvidia-smi counts."""
    smi = 'case "$*" in *"-i 0"*) echo "NVIDIA H100";; *) exit 6;; esac'
    path = _bin_with(tmp_path, GPU_CHECK_TOOLS, {"nvidia-smi": smi})
    rc, lines = _run_script("gpu_check.sh", path, _fake_bundle(tmp_path),
                            "--out", str(tmp_path / "out"), env={"CUDA_VISIBLE_DEVICES": "3,0"})
    assert rc == 2
    assert lines == ["gpu_check: nvidia-smi lists no GPU 3 on this host (CUDA_VISIBLE_DEVICES: "
                     "3,0)"]


def test_gpu_check_reads_a_uuid_in_cuda_visible_devices_as_cuda_does(tmp_path):
    """A GPU UUID, or its first characters, names the GPU nvidia-smi lists with it; an entry
    that names no single GPU (a MIG device, a prefix of two) is refused in one line."""
    smi = ('case "$*" in *uuid*) printf "0, GPU-0a1b-11\\n3, GPU-3c4d-22\\n7, GPU-3c4e-33\\n";; '
           '*"-i 3"*) echo "NVIDIA H200";; *"-i "*) exit 6;; esac')
    path = _bin_with(tmp_path, GPU_CHECK_TOOLS, {"nvidia-smi": smi})
    bundle = _fake_bundle(tmp_path)
    for visible in ("GPU-3c4d-22,GPU-0a1b", " GPU-3c4d", "3 ,0"):
        rc, lines = _run_script("gpu_check.sh", path, bundle,
                                "--out", str(tmp_path / "out"),
                                env={"CUDA_VISIBLE_DEVICES": visible})
        # GPU 3 named: past its name to the driver's CUDA version, which this fake lacks
        assert (rc, lines) == (2, ["gpu_check: nvidia-smi does not say which CUDA version the "
                                   "driver supports"]), visible
    for visible in ("GPU-3c4", "MIG-5a1e2f3c", ""):
        rc, lines = _run_script("gpu_check.sh", path, bundle,
                                "--out", str(tmp_path / "out"),
                                env={"CUDA_VISIBLE_DEVICES": visible})
        assert (rc, lines) == (2, [
            "gpu_check: CUDA_VISIBLE_DEVICES (%s) starts with '%s', which names no single GPU "
            "that nvidia-smi lists: give that GPU's index or UUID (nvidia-smi -L; a MIG device "
            "is not checked)" % (visible, visible.split(",")[0])]), visible


def test_gpu_check_without_cublas_is_one_line(tmp_path):
    rc, lines = _run_script("gpu_check.sh", _bin_with(tmp_path, GPU_CHECK_TOOLS), "--cpu",
                            _fake_bundle(tmp_path), "--out", str(tmp_path / "out"))
    assert rc == 2
    assert lines == ["gpu_check: no libcublas.so.13 on this host: install NVIDIA's wheel (pip "
                     "install nvidia-cublas nvidia-curand nvidia-cudnn-cu13) or set CUDA_LIBS "
                     "to the folders holding it"]


def test_gpu_check_with_an_unknown_engine_is_one_line(tmp_path):
    rc, lines = _run_script("gpu_check.sh", _bin_with(tmp_path, GPU_CHECK_TOOLS),
                            _fake_bundle(tmp_path), "--engine", "cuda")
    assert rc == 2
    assert lines == ["gpu_check: --engine takes caffe or cudnn, not 'cuda'"]


def test_gpu_check_on_a_folder_that_is_no_bundle_is_one_line(tmp_path):
    rc, lines = _run_script("gpu_check.sh", _bin_with(tmp_path, GPU_CHECK_TOOLS),
                            str(tmp_path), "--out", str(tmp_path / "out"))
    assert rc == 2
    assert lines == ["gpu_check: %s is not a psn-caffe GPU bundle (no bin/caffe.bin or "
                     "BUNDLE_INFO): make one with tools/gpu_bundle.sh" % tmp_path]
