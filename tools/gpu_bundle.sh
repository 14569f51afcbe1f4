#!/usr/bin/env bash
# The GPU bundle: what a bare GPU host needs to run tools/gpu_check.sh (no apt, no network, no
# Docker, no build tree there), cut from the CUDA image so that the check runs what
# `docker run psn-caffe:gpu` runs: the image's own caffe binary, libcaffe and libraries.
#
#   tools/gpu_bundle.sh [--image TAG]   cut build/psn-gpu-bundle.tar.xz from the image
#                                       (default localhost/psn-caffe:gpu)
#   tools/gpu_bundle.sh --verify        also run the bundle's CPU check in a clean Debian 12
#                                       chroot (root; debootstrap; see below)
#   tools/gpu_bundle.sh --out FILE      another bundle path
#
# The image is docker/Dockerfile.gpu with BASE=wheels (CUDA 13 from NVIDIA's PyPI wheels on
# Debian 12): tools/check_image.sh --gpu builds it (and cuts the bundle), or
#   docker build -f docker/Dockerfile.gpu --build-arg BASE=wheels -t localhost/psn-caffe:gpu .
# The GPU hosts this targets have the CUDA 13 driver, cuBLAS, cuRAND and cuDNN 9 only as
# Python wheels, Python 3.12, no network; at most 64 MiB travel with a command. So, inside the
# image (this script with --stage, run by the engine):
#   - the bundle takes the caffe tool, libcaffe, the TPU's gtest binary, libcudart and every
#     non-CUDA shared library they load there (Boost, glog, gflags, protobuf, HDF5, OpenBLAS,
#     libpython for the Python-layer hooks, ...), but not glibc or libstdc++ (every host has
#     them, newer than Debian 12's) nor cuBLAS/cuRAND/cuDNN (about 1.5 GB; gpu_check.sh finds
#     them in the host's Python packages, by soname);
#   - the image's own Python makes a small data set: the four HDF5 shards (one per subject) of
#     a 20-clip synthetic database, PSN's full-width nets reading them, the paper's solver, a
#     TPU-only net, the layer -> stream map for per-stream times, and the Python TPU fallback
#     for the CPU-vs-GPU comparison.
# --verify copies the bundle into a fresh debootstrap (minbase) root with cuBLAS, cuRAND and
# cuDNN from NVIDIA's wheels mounted read-only (as a GPU host holds them) and runs
# `gpu_check.sh --cpu` there: ldd finds every library, the TPU's CPU gtests pass and
# `caffe time` runs PSN on the CPU.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/header_help.sh
. "$ROOT/tools/header_help.sh"
# shellcheck source=tools/caffe_tree.sh
. "$ROOT/tools/caffe_tree.sh"   # debian_mirror
# shellcheck source=tools/image_engine.sh
. "$ROOT/tools/image_engine.sh"
CACHE=${PSN_CACHE:-$HOME/.cache/psn-caffe}
OUT=$ROOT/build/psn-gpu-bundle.tar.xz
TAG=localhost/psn-caffe:gpu
VERIFY=0
STAGE_DIR=""
# The size the device tool carries is 64 MiB with the working tree: keep room for it.
MAX_MIB=60

while [ $# -gt 0 ]; do
  case "$1" in
    --verify) VERIFY=1 ;;
    --out) OUT=$2; shift ;;
    --image) TAG=$2; shift ;;
    --stage) STAGE_DIR=$2; DATA_DIR=$3; shift 2 ;;
    -h|--help) header_help "$0"; exit 0 ;;
    *) echo "gpu_bundle.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
log() { echo "[gpu_bundle] $*" >&2; }
die() { echo "[gpu_bundle] error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- in the image
# stage B DATA: the bundle's folder B from this image's Caffe; DATA caches the data set.
stage() {
  local B=$1 data=$2 home
  home=$(readlink -f "${PSN_CAFFE_HOME:-/opt/psn/caffe}")
  [ -x "$home/bin/caffe.bin" ] || die "no Caffe build at ${PSN_CAFFE_HOME:-/opt/psn/caffe}: --stage runs inside the CUDA image"
  grep -q "cuda=1" "$home/BUILD_INFO" || die "the Caffe in this image is not a CUDA build ($home/BUILD_INFO)"
  mkdir -p "$B"/{bin,lib,test,python}
  cp -L "$home/bin/caffe.bin" "$B/bin/caffe.bin"
  ln -s caffe.bin "$B/bin/caffe"
  # PSN_CAFFE_HOME=B on the host: the tools find bin/caffe and read the build's options
  # (cuda, cudnn: Caffe's own engines on the CPU, psn.engines).
  cp "$home/BUILD_INFO" "$B/BUILD_INFO"
  cp -L "$home/test/test_tpu_layer.testbin" "$home/test/test_hdf5_prefetch_data_layer.testbin" \
    "$B/test/"
  cp -L "$home/lib/libcaffe.so.1.0.0" "$B/lib/"
  ln -s libcaffe.so.1.0.0 "$B/lib/libcaffe.so"
  # Every shared library the binaries load, except the C/C++ runtime (the host's own, which
  # its CUDA libraries are built against) and the CUDA libraries the host's wheels provide.
  local host_libs='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libutil|libstdc\+\+|libgcc_s|libcuda|libcublas|libcublasLt|libcurand|libcudnn[a-z_]*)\.so'
  LD_LIBRARY_PATH="$B/lib:${LD_LIBRARY_PATH:-}" ldd "$B/bin/caffe.bin" "$B/test/test_tpu_layer.testbin" "$B/lib/libcaffe.so.1.0.0" \
    | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u | while read -r name path; do
      [[ "$name" =~ $host_libs ]] && continue
      [ -e "$B/lib/$name" ] || cp -L "$path" "$B/lib/$name"
    done
  if LD_LIBRARY_PATH="$B/lib:${LD_LIBRARY_PATH:-}" ldd "$B/bin/caffe.bin" | grep -q "not found"; then
    die "caffe.bin misses libraries in the image already: $(ldd "$B/bin/caffe.bin" | grep 'not found' | tr '\n' ' ')"
  fi
  strip --strip-unneeded "$B"/bin/caffe.bin "$B"/test/*.testbin "$B"/lib/*.so* 2>/dev/null || true
  # A small synthetic database, preprocessed as a user's would be (10 subjects x 2 clips, leave
  # one subject out: the paper's ten folds; fixed RPCA lambda and no augmentation keep it under
  # a minute). The database is cached; preprocessing runs every time, so the shards follow the
  # image's pipeline (its clip cache makes a rerun take seconds).
  local py=${PSN_VENV:-$ROOT/.venv}/bin/python
  if [ ! -f "$data/synth10/.complete" ]; then
    log "making a small synthetic database for the bundle"
    rm -rf "$data/synth10"
    "$py" "$ROOT/tools/make_synthetic.py" --out "$data/synth10" --subjects 10 --clips-per-subject 2 >&2
    touch "$data/synth10/.complete"
  fi
  log "preprocessing it (~1 min the first time)"
  "$py" "$ROOT/tools/preprocess.py" run --casme2 "$data/synth10" --out "$data/prep10" --loso \
    --lam standard --augment none --no-progress >&2
  log "run folder (PSN at full width, fold 1, the paper's schedule), the data, the project's tools"
  GLOG_minloglevel=2 "$py" -m psn.gpu_bundle "$data/prep10" "$B" >/dev/null
  cp "$ROOT/tools/gpu_check.sh" "$B/"
  # What the project's tools import beyond what the GPU host has (numpy, h5py, scipy,
  # scikit-learn, matplotlib, OpenCV, protobuf, onnx, onnxruntime): six (pycaffe's
  # net_spec) and jsonschema with its dependencies (the protocol files' schema), pinned at the
  # versions this image runs. The host side downloads them (vendor below): pip in here does
  # not trust a proxy's certificate, which only the image build is given.
  "$py" -c 'from importlib.metadata import version as v
for n in ["six", "jsonschema", "jsonschema-specifications", "referencing", "rpds-py", "attrs", "typing-extensions"]:
    print("%s==%s" % (n, v(n)))' > "$B/python/vendor.txt" || die "the image's Python lacks jsonschema or six"
  # The sonames the host must provide, and what was built.
  {
    echo "caffe: $(sed -n 's/^source: //p' "$home/BUILD_INFO")"
    echo "options: $(sed -n 's/^options: //p' "$home/BUILD_INFO")"
    echo "cuda_runtime: $(find "$B/lib" -maxdepth 1 -name 'libcudart.so.*' 2>/dev/null | sort | sed 's/.*libcudart.so.//' | head -n1)"
    echo "cuda_major: $("${CUDA_DIR:-/usr/local/cuda}/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\)\..*/\1/p')"
    echo "driver_min: ${PSN_CUDA_DRIVER_MIN:-}"
    echo "host_libraries: $(LD_LIBRARY_PATH="$B/lib:${LD_LIBRARY_PATH:-}" ldd "$B/lib/libcaffe.so.1.0.0" | awk '{print $1}' | grep -E '^lib(cublas|cublasLt|curand|cudnn)\.so' | sort -u | tr '\n' ' ')"
  } > "$B/BUNDLE_INFO"
}

if [ -n "$STAGE_DIR" ]; then
  stage "$STAGE_DIR" "$DATA_DIR"
  exit 0
fi

# ---------------------------------------------------------------- cut from the image
command -v xz >/dev/null || die "xz is missing: apt-get install xz-utils"
detect_engine
image_exists "$TAG" || die "no image $TAG in $ENGINE's storage: build it with tools/check_image.sh --gpu (or docker build -f docker/Dockerfile.gpu --build-arg BASE=wheels -t $TAG .), or name another with --image"
if [ "$ENGINE" = docker ]; then IMAGE_ID=$(docker image inspect -f '{{.Id}}' "$TAG")
else IMAGE_ID=$("${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$TAG"); fi
IMAGE_ID=${IMAGE_ID#sha256:}
STAGE=$(mktemp -d /var/tmp/psn-gpu-bundle.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
DATA="$CACHE/gpu-bundle-data"
mkdir -p "$DATA"
chmod 0777 "$STAGE"
log "cutting the bundle from $TAG ($ENGINE, image ${IMAGE_ID:0:12})"
run_image "$TAG" "$(id -u):$(id -g)" "$STAGE:/bundle $DATA:/bundle-data" \
  /opt/psn-caffe/tools/gpu_bundle.sh --stage /bundle/psn-gpu-bundle /bundle-data \
  || die "staging the bundle in the image failed (the log above says where)"
B="$STAGE/psn-gpu-bundle"
# The vendored packages at the image's versions (the stage wrote them to python/vendor.txt);
# rpds-py is compiled, so for CPython 3.11 (the image) and 3.12 (the GPU host).
# gpu_check.sh adds them only where the host lacks six or jsonschema.
HOST_PY=$ROOT/.venv/bin/python; [ -x "$HOST_PY" ] || HOST_PY=python3
WHEELS="$STAGE/wheels"
for pyver in 3.12 3.11; do
  "$HOST_PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$WHEELS" \
    -r "$B/python/vendor.txt" >&2 \
    || die "could not download the vendored wheels ($(tr '\n' ' ' < "$B/python/vendor.txt")) for Python $pyver"
done
"$HOST_PY" - "$WHEELS" "$B/python/vendor" <<'PYEOF'
import glob, sys, zipfile
for w in sorted(glob.glob(sys.argv[1] + "/*.whl")):
    with zipfile.ZipFile(w) as z:
        z.extractall(sys.argv[2])
PYEOF
rm -rf "$WHEELS"
{
  echo "image: $TAG ${IMAGE_ID}"
  echo "packed: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >> "$B/BUNDLE_INFO"
mkdir -p "$(dirname "$OUT")"
tar -C "$STAGE" -cf - psn-gpu-bundle | xz -T1 -6 > "$OUT.tmp"
mib=$(( $(stat -c %s "$OUT.tmp") / 1048576 ))
[ "$mib" -lt "$MAX_MIB" ] || { rm -f "$OUT.tmp"; die "the bundle is ${mib} MiB, over ${MAX_MIB} MiB (the device tool carries 64 MiB with the working tree)"; }
mv "$OUT.tmp" "$OUT"
log "bundle: $OUT (${mib} MiB; $(du -sh "$B" | cut -f1) unpacked)"

# ---------------------------------------------------------------- verify
if [ "$VERIFY" = 1 ]; then
  [ "$(id -u)" = 0 ] || die "--verify needs root (debootstrap, chroot, mount)"
  command -v debootstrap >/dev/null || die "--verify needs debootstrap: apt-get install debootstrap"
  BASE="$CACHE/debootstrap-bookworm"
  if [ ! -f "$BASE/.complete" ]; then
    mirror=$(debian_mirror)
    mirror=${mirror:-http://deb.debian.org/debian}
    log "making a clean Debian 12 root with debootstrap (minbase, $mirror)"
    rm -rf "$BASE"
    debootstrap --variant=minbase bookworm "$BASE" "$mirror" >/dev/null \
      || die "debootstrap failed ($BASE/debootstrap/debootstrap.log)"
    touch "$BASE/.complete"
  fi
  DIRS=$("$ROOT/tools/fetch_cuda_headers.sh" --libs) || die "could not fetch NVIDIA's cuBLAS/cuRAND/cuDNN wheels (pip download failed above)"
  LIB_DIRS=$(printf '%s\n' "$DIRS" | grep '/lib$' | tr '\n' ' ')
  ROOTFS=$(mktemp -d /var/tmp/psn-verify.XXXXXX)
  cp -a "$BASE/." "$ROOTFS/"
  mkdir -p "$ROOTFS/opt/cuda-wheels" "$ROOTFS/work"
  tar -C "$ROOTFS/work" -xJf "$OUT"
  umount_all() { umount "$ROOTFS/opt/cuda-wheels" 2>/dev/null || true; umount "$ROOTFS/proc" 2>/dev/null || true; rm -rf "$ROOTFS"; }
  trap 'umount_all; rm -rf "$STAGE"' EXIT
  # The wheels' libraries where the host's Python keeps them, read-only.
  # shellcheck disable=SC2086  # $LIB_DIRS: a list of folders, split on purpose
  mount --bind -o ro "$(dirname "$(dirname "$(printf '%s\n' $LIB_DIRS | head -n1)")")" "$ROOTFS/opt/cuda-wheels"
  mount -t proc proc "$ROOTFS/proc"
  log "verifying in $ROOTFS (no build tree, no Python, no CUDA toolkit)"
  chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root \
    CUDA_LIBS="$(cd "$ROOTFS/opt/cuda-wheels" && find . -type d -name lib | sed 's|^\.|/opt/cuda-wheels|' | tr '\n' ':')" \
    bash /work/psn-gpu-bundle/gpu_check.sh --cpu /work/psn-gpu-bundle --out /work/out \
    || die "the bundle's CPU check failed in the clean root"
  cp "$ROOTFS/work/out/gpu_check.json" "$(dirname "$OUT")/gpu_check_cpu.json"
  log "verified: $(dirname "$OUT")/gpu_check_cpu.json"
fi
