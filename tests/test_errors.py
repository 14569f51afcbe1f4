"""Operating-system errors end in one line naming the file and the fix, exit code 2."""
import errno
import os
import subprocess
import sys


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
