#!/usr/bin/env bash
# Compile every CUDA source of the project's Caffe with nvcc, without a GPU.
#
#   tools/check_cuda_build.sh          compile (or report the cached result)
#   tools/check_cuda_build.sh --force  compile again even if the result is cached
#
# What it compiles, in a copy of the Caffe source patched exactly as
# `tools/build_caffe.sh --cuda` patches it (tools/caffe_patches/*.patch, then
# tools/caffe_patches/cuda/*.patch, then the project's layers/ in-tree), through
# Caffe's own Makefile (so its NVCCFLAGS and our Makefile patch are exercised),
# with CUDA on (no CPU_ONLY) and USE_CUDNN:
#   - every src/**/*.cu: Caffe's kernels, the test kernel and layers/src/**/*.cu;
#   - every .cpp of src/ and tools/ that calls CUDA, cuBLAS, cuRAND or cuDNN
#     (the cudnn_*.cpp layers, common.cpp's device query, the GPU tests, ...)
#     and every .cpp of layers/src (the TPU layer and its GPU test cases).
# Object files only: there is no libcudart/cuBLAS/cuDNN to link and no GPU.
#
# Arch: sm_90 SASS only by default (CHECK_CUDA_ARCH overrides, e.g. to add
# "-gencode arch=compute_80,code=sm_80"). Every arch compiles the same device
# source, so one arch catches the source errors; each extra arch adds about
# 40% to the time (measured: sm_80 + sm_90 vs sm_90). sm_90 is the newest arch
# in the build's list, and CUDA 13 no longer compiles for anything below sm_75.
#
# Headers: the toolkit's own (CUDA_DIR, else /usr/local/cuda, else the toolkit
# of the nvcc on PATH); cuBLAS, cuRAND and cuDNN headers from NVIDIA's PyPI wheels
# via tools/fetch_cuda_headers.sh --cudnn (PSN_CUDNN_WHEEL picks the cuDNN
# release, e.g. nvidia-cudnn-cu12==8.9.* for cuDNN 8).
#
# Cache: $PSN_CACHE/cuda-check/tree-<key>, keyed by the source, the patches,
# nvcc, the host compiler, the headers and the Makefile.config written here
# (arch, include dirs). Objects stay there (Caffe's Makefile tracks header
# dependencies), so a change in layers/ recompiles only what it touches. The
# report is keyed by layers/ and this script as well: with nothing changed a
# run only prints it (well under a second). First run: about 11 CPU-minutes.
# Output: the path of the report (one "ok <source>" or "FAILED <source>" line
# per source, then "objects <dir>") on stdout; progress on stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/header_help.sh
. "$ROOT/tools/header_help.sh"
CACHE=${PSN_CACHE:-$HOME/.cache/psn-caffe}
JOBS=${JOBS:-$(nproc)}
CHECK_CUDA_ARCH=${CHECK_CUDA_ARCH:-"-gencode arch=compute_90,code=sm_90"}
FORCE=0
case "${1:-}" in
  --force) FORCE=1 ;;
  -h|--help) header_help "$0"; exit 0 ;;
  "") ;;
  *) echo "[check_cuda_build] error: unknown option '$1' (--force or --help)" >&2; exit 2 ;;
esac

log() { echo "[check_cuda_build] $*" >&2; }
die() { echo "[check_cuda_build] error: $*" >&2; exit 1; }
# shellcheck source=tools/caffe_tree.sh
. "$ROOT/tools/caffe_tree.sh"

# The toolkit: CUDA_DIR, else /usr/local/cuda (build_caffe.sh's default), else
# the one the nvcc on PATH belongs to (nvcc reports it as TOP; PATH may hold a
# wrapper script). Caffe's Makefile runs $(CUDA_DIR)/bin/nvcc.
if [ -z "${CUDA_DIR:-}" ]; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then CUDA_DIR=/usr/local/cuda
  elif command -v nvcc >/dev/null; then
    top=$(nvcc --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -n1)
    [ -n "$top" ] && CUDA_DIR=$(cd "$top" && pwd)
  fi
fi
NVCC=${CUDA_DIR:-/usr/local/cuda}/bin/nvcc
[ -x "$NVCC" ] || die "nvcc not found (no \$CUDA_DIR/bin/nvcc, no /usr/local/cuda/bin/nvcc, none on PATH): install the CUDA toolkit or set CUDA_DIR"

# The pristine source tools/build_caffe.sh uses (it fetches and caches it).
if [ -n "${CAFFE_SRC:-}" ]; then
  SRC=$CAFFE_SRC; SRC_ID="custom-$(cd "$SRC" && find src include Makefile -type f -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16)"
else
  SRC=""
  for d in "$CACHE"/src/bvlc-* "$CACHE"/src/debian-*; do
    [ -f "$d/.psn-complete" ] && { SRC=$d; break; }
  done
  [ -n "$SRC" ] || die "no Caffe source under $CACHE/src: run tools/build_caffe.sh once (it fetches the source), or set CAFFE_SRC"
  SRC_ID=$(basename "$SRC")
fi
[ -f "$SRC/Makefile" ] && [ -d "$SRC/src/caffe" ] || die "$SRC is not a Caffe source tree (no Makefile or src/caffe)"

PY=${PSN_VENV:-$ROOT/.venv}/bin/python
[ -x "$PY" ] || PY=python3
PY_VER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PY_INC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
PY_LIB=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
NUMPY_INC=$("$PY" -c 'import numpy; print(numpy.get_include())' 2>/dev/null) || \
  die "numpy is missing for $PY (pycaffe's headers need it): run tools/build_caffe.sh once"
# The key names numpy by version, not by its path: every clone has its own .venv, and with
# the path in it each clone's check evicted the other's tree (one tree is kept) and
# recompiled everything.
NUMPY_VER=$("$PY" -c 'import numpy; print(numpy.__version__)')
BLAS_INC=$(find_blas_include)
[ -f "$BLAS_INC/cblas.h" ] || [ -f /usr/include/cblas.h ] || die "no cblas.h: install libopenblas-dev (tools/build_caffe.sh does)"
# Objects only, nothing is linked: the library names need not exist here.
BOOST_PYTHON=$(find_boost_python "${PY_VER/./}")
HDF5_INC=/usr/include/hdf5/serial
HDF5_LIB=/usr/lib/x86_64-linux-gnu/hdf5/serial

HEADER_DIRS=$("$ROOT/tools/fetch_cuda_headers.sh" --cudnn | tr '\n' ' ')
[ -n "$HEADER_DIRS" ] || die "tools/fetch_cuda_headers.sh --cudnn printed no include directory"

# What `tools/build_caffe.sh --cuda` writes (the same template), with cuDNN on, the check's
# arch and the wheels' headers.
MAKEFILE_CONFIG=$(CUDA=1 CUDNN=1 CUDA_ARCH=$CHECK_CUDA_ARCH EXTRA_INCLUDE_DIRS="${HEADER_DIRS% }" \
                  caffe_makefile_config tools/check_cuda_build.sh)

# The tree (and its objects) is keyed by what the objects depend on; the report
# also by the layers and by this script (which decides what goes in it).
# Paths inside the checkout are hashed relative to it, so every clone has the same key (with
# absolute paths each clone evicted the others' tree and recompiled everything).
hash_files() { (cd "$ROOT" && find "${@#"$ROOT"/}" -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16; }
# shellcheck disable=SC2086  # $HEADER_DIRS below: a list of folders, split on purpose
KEY_INPUTS=$(cat <<EOF
source=$SRC_ID
patches=$(hash_files "$ROOT/tools/caffe_patches" -name '*.patch')
nvcc=$("$NVCC" --version | tail -n1)
cxx=$(g++ -dumpfullversion 2>/dev/null || g++ -dumpversion)
config=$(printf '%s\n' "${MAKEFILE_CONFIG//$NUMPY_INC/numpy-$NUMPY_VER}" | sha256sum | cut -c1-16)
headers=$(hash_files $HEADER_DIRS)
EOF
)
KEY=$(printf '%s\n' "$KEY_INPUTS" | sha256sum | cut -c1-12)
REPORT_KEY=$(hash_files "$ROOT/layers/include" "$ROOT/layers/src")-$(sha256sum "$0" | cut -c1-8)
TREE="$CACHE/cuda-check/tree-$KEY"
REPORT="$TREE/report-$REPORT_KEY.txt"

if [ "$FORCE" = 0 ] && [ -f "$REPORT" ] && ! grep -q '^FAILED' "$REPORT"; then
  log "up to date: $(grep -c '^ok' "$REPORT") sources compiled ($REPORT)"
  echo "$REPORT"; exit 0
fi

# ---------------------------------------------------------------- tree
if [ ! -f "$TREE/.psn-patched" ]; then
  log "preparing $TREE from $SRC"
  # One check tree at a time: an older key's tree is only stale objects.
  for old in "$CACHE"/cuda-check/tree-*; do [ -d "$old" ] && [ "$old" != "$TREE" ] && rm -rf "$old"; done
  copy_tree "$SRC" "$TREE"
  apply_patches "$TREE" 1 "$SRC_ID"
  printf '%s\n' "$KEY_INPUTS" > "$TREE/.psn-key"
  touch "$TREE/.psn-patched"
fi
sync_layers "$TREE"
printf '%s\n' "$MAKEFILE_CONFIG" | write_if_changed "$TREE/Makefile.config"

# ---------------------------------------------------------------- compile
cd "$TREE"
CU_SRCS=$(find src -name '*.cu' | sort)
# shellcheck disable=SC2046  # Caffe's source names have no spaces
CPP_SRCS=$( (grep -lE 'cuda[A-Z]|cublas|curand|cudnn|CUDA_CHECK|CUBLAS_CHECK|CURAND_CHECK|USE_CUDNN' \
              $(find src tools -name '*.cpp' ! -path 'src/gtest/*');
            cd "$ROOT/layers" && find src -name '*.cpp') | sort -u)
obj_of() {  # Caffe's Makefile: .cu -> .build_release/cuda/X.o, .cpp -> .build_release/X.o
  case "$1" in *.cu) echo ".build_release/cuda/${1%.cu}.o" ;; *) echo ".build_release/${1%.cpp}.o" ;; esac
}
TARGETS=$(for s in $CU_SRCS $CPP_SRCS; do obj_of "$s"; done)
log "compiling $(echo "$CU_SRCS" | wc -w) .cu and $(echo "$CPP_SRCS" | wc -w) .cpp sources ($CHECK_CUDA_ARCH, $JOBS jobs) in $TREE"
start=$(date +%s)
# Makefile: the .cu rule does not wait for caffe.pb.h, so generate it first.
make -s proto >&2 || die "protoc failed on the patched caffe.proto (is protobuf-compiler installed?)"
# -k: report every source that fails, not just the first. make's "is up to
# date" line per finished object is noise.
set +e
# shellcheck disable=SC2086
make -k -j"$JOBS" $TARGETS 2>&1 | grep -v "' is up to date\.$" >&2
make_rc=${PIPESTATUS[0]}
set -e
secs=$(( $(date +%s) - start ))

# A source failed when make still has its compile to do (an object left from
# an earlier run does not count: make knows it is older than what it depends on).
# shellcheck disable=SC2086
pending=" $( (make -n $TARGETS 2>/dev/null || true) | { grep -oE '(src|tools)/[^ ;]+\.(cu|cpp)' || true; } | sort -u | tr '\n' ' ')"
tmp="$REPORT.tmp"; : > "$tmp"
failed=0
for s in $CU_SRCS $CPP_SRCS; do
  if [ -s "$(obj_of "$s")" ] && [ "${pending#* "$s" }" = "$pending" ]; then echo "ok $s" >> "$tmp"
  else echo "FAILED $s" >> "$tmp"; failed=$((failed + 1)); fi
done
echo "objects $TREE/.build_release" >> "$tmp"
echo "seconds $secs" >> "$tmp"
mv "$tmp" "$REPORT"
for r in report-*.txt; do [ "$r" = "$(basename "$REPORT")" ] || rm -f "$r"; done
if [ "$failed" -gt 0 ] || [ "$make_rc" != 0 ]; then
  grep '^FAILED' "$REPORT" >&2 || true
  die "$failed sources did not compile (make exit $make_rc; the errors are above); report: $REPORT"
fi
log "all $(grep -c '^ok' "$REPORT") sources compiled in ${secs} s"
echo "$REPORT"
