#!/usr/bin/env bash
# Build Caffe with CUDA for Hopper (sm_90) here, where there is no GPU, and pack what a bare
# GPU host needs to run tools/gpu_check.sh: no apt, no network, no build tree there.
#
#   tools/gpu_bundle.sh                 build (cached) and pack build/psn-gpu-bundle.tar.xz
#   tools/gpu_bundle.sh --verify        also run the bundle's CPU check in a clean Debian 12
#                                       chroot (root; debootstrap; see below)
#   tools/gpu_bundle.sh --out FILE      another bundle path
#
# The GPU hosts this targets have nvcc 13 and the CUDA 13 driver and runtime, cuBLAS, cuRAND
# and cuDNN 9 only as Python wheels, Python 3.12, no network; at most 64 MiB travel with a
# command. So:
#   - Caffe is built by tools/build_caffe.sh --cuda --cudnn for sm_90 only, against cuBLAS,
#     cuRAND and cuDNN from NVIDIA's PyPI wheels (tools/fetch_cuda_headers.sh --libs): the
#     same libraries, by soname, as the host's wheels.
#   - The bundle holds the caffe tool, libcaffe, the TPU's gtest binary, libcudart (small,
#     from this toolkit) and every non-CUDA shared library they load (Boost, glog, gflags,
#     protobuf, HDF5, OpenBLAS, libpython for the Python-layer hooks, ...), but not glibc or
#     libstdc++ (every host has them, newer than Debian 12's) nor cuBLAS/cuRAND/cuDNN (about
#     1.5 GB; gpu_check.sh finds them in the host's Python packages).
#   - A small data set: the four HDF5 shards (one per subject) of a 20-clip synthetic
#     database, PSN's full-width nets reading them, the paper's solver, a TPU-only net, the
#     layer -> stream map for per-stream times, and the Python TPU fallback for the CPU-vs-GPU
#     comparison.
# --verify copies the bundle into a fresh debootstrap (minbase) root with the wheels'
# libraries mounted read-only and runs `gpu_check.sh --cpu` there: ldd finds every library,
# the TPU's CPU gtests pass and `caffe time` runs PSN on the CPU.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/caffe_tree.sh
. "$ROOT/tools/caffe_tree.sh"   # debian_mirror
CACHE=${PSN_CACHE:-$HOME/.cache/psn-caffe}
OUT=$ROOT/build/psn-gpu-bundle.tar.xz
VERIFY=0
ARCH="-gencode arch=compute_90,code=sm_90"
# The size the device tool carries is 64 MiB with the working tree: keep room for it.
MAX_MIB=60

while [ $# -gt 0 ]; do
  case "$1" in
    --verify) VERIFY=1 ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_bundle.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
log() { echo "[gpu_bundle] $*" >&2; }
die() { echo "[gpu_bundle] error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- build
command -v xz >/dev/null || die "xz is missing: apt-get install xz-utils"
DIRS=$("$ROOT/tools/fetch_cuda_headers.sh" --libs) || die "could not fetch NVIDIA's cuBLAS/cuRAND/cuDNN wheels (pip download failed above)"
INC_DIRS=$(printf '%s\n' "$DIRS" | grep '/include$' | tr '\n' ' ')
LIB_DIRS=$(printf '%s\n' "$DIRS" | grep '/lib$' | tr '\n' ' ')
export PSN_CUDA_INCLUDE_DIRS=${INC_DIRS% } PSN_CUDA_LIBRARY_DIRS=${LIB_DIRS% } CUDA_ARCH=$ARCH
log "building Caffe --cuda --cudnn for sm_90 (cached after the first time)"
"$ROOT/tools/build_caffe.sh" --cuda --cudnn
eval "$("$ROOT/tools/build_caffe.sh" --cuda --cudnn --print-env)"
HOME_CUDA=$PSN_CAFFE_HOME
log "Caffe: $HOME_CUDA"

# ---------------------------------------------------------------- data
# A small synthetic database, preprocessed as a user's would be (4 subjects x 5 clips, leave
# one subject out; fixed RPCA lambda and no augmentation keep it under a minute). The database
# is cached; preprocessing runs every time, so the shards follow the pipeline's current format
# (its clip cache makes a rerun take seconds).
PY=${PSN_VENV:-$ROOT/.venv}/bin/python
DATA_DIR="$CACHE/gpu-bundle-data"
if [ ! -f "$DATA_DIR/.complete" ]; then
  log "making a small synthetic database for the bundle"
  rm -rf "$DATA_DIR"; mkdir -p "$DATA_DIR"
  "$PY" "$ROOT/tools/make_synthetic.py" --out "$DATA_DIR/synth" --subjects 4 --clips-per-subject 5 >&2
  touch "$DATA_DIR/.complete"
fi
log "preprocessing it (~1 min the first time)"
"$PY" "$ROOT/tools/preprocess.py" run --casme2 "$DATA_DIR/synth" --out "$DATA_DIR/prep" --loso \
  --lam standard --augment none --no-progress >&2

# ---------------------------------------------------------------- stage
STAGE=$(mktemp -d /tmp/psn-gpu-bundle.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
B="$STAGE/psn-gpu-bundle"
mkdir -p "$B"/{bin,lib,test,tools,python}
cp -L "$HOME_CUDA/bin/caffe.bin" "$B/bin/caffe.bin"
cp -L "$HOME_CUDA/test/test_tpu_layer.testbin" "$B/test/"
cp -L "$HOME_CUDA/lib/libcaffe.so.1.0.0" "$B/lib/"
ln -s libcaffe.so.1.0.0 "$B/lib/libcaffe.so"
# Every shared library the binaries load, except the C/C++ runtime (the host's own, which its
# CUDA libraries are built against) and the CUDA libraries the host's wheels provide.
HOST_LIBS='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libutil|libstdc\+\+|libgcc_s|libcuda|libcublas|libcublasLt|libcurand|libcudnn[a-z_]*)\.so'
LD_LIBRARY_PATH="$B/lib:$LD_LIBRARY_PATH" ldd "$B/bin/caffe.bin" "$B/test/test_tpu_layer.testbin" "$B/lib/libcaffe.so.1.0.0" \
  | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u | while read -r name path; do
    [[ "$name" =~ $HOST_LIBS ]] && continue
    [ -e "$B/lib/$name" ] || cp -L "$path" "$B/lib/$name"
  done
if LD_LIBRARY_PATH="$B/lib:$LD_LIBRARY_PATH" ldd "$B/bin/caffe.bin" | grep -q "not found"; then
  die "caffe.bin misses libraries here already: $(ldd "$B/bin/caffe.bin" | grep 'not found' | tr '\n' ' ')"
fi
strip --strip-unneeded "$B"/bin/caffe.bin "$B"/test/*.testbin "$B"/lib/*.so* 2>/dev/null || true
log "run folder (PSN at full width, fold 1 of the synthetic set, the paper's schedule)"
GLOG_minloglevel=2 "$PY" -m psn.gpu_bundle "$DATA_DIR/prep" "$B/run" >/dev/null
cp "$ROOT/tools/gpu_check.sh" "$B/"
cp "$ROOT/layers/psn_layers/tpu.py" "$B/python/psn_tpu_fallback.py"
# The sonames the host must provide, and what was built.
{
  echo "caffe: $(sed -n 's/^source: //p' "$HOME_CUDA/BUILD_INFO")"
  echo "options: $(sed -n 's/^options: //p' "$HOME_CUDA/BUILD_INFO")"
  echo "cuda_runtime: $(find "$B/lib" -maxdepth 1 -name 'libcudart.so.*' 2>/dev/null | sort | sed 's/.*libcudart.so.//' | head -n1)"
  echo "cuda_major: $("${CUDA_DIR:-/usr/local/cuda}/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\)\..*/\1/p')"
  echo "host_libraries: $(LD_LIBRARY_PATH="$B/lib:$LD_LIBRARY_PATH" ldd "$B/lib/libcaffe.so.1.0.0" | awk '{print $1}' | grep -E '^lib(cublas|cublasLt|curand|cudnn)\.so' | sort -u | tr '\n' ' ')"
  echo "project: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+changes')"
  echo "packed: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$B/BUNDLE_INFO"
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
