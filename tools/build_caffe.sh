#!/usr/bin/env bash
# Build BVLC Caffe with psn-caffe's layers compiled in, and cache the result.
#
#   tools/build_caffe.sh              CPU-only build (default), cached
#   tools/build_caffe.sh --cuda       CUDA build (arch list below), cuDNN if found
#   tools/build_caffe.sh --print-env  print export lines for the cached build
#
# Source, first that works: $CAFFE_SRC (a checkout); a clone of BVLC/caffe pinned
# at 9b89154 (30 s to reach the network); Debian's source package `caffe`
# (BVLC snapshot 99bd997), fetched through a private sources list derived from
# this machine's apt configuration so the system's apt setup is left as it is.
#
# The install lands in $PSN_CACHE/caffe/<key> (default ~/.cache/psn-caffe),
# where <key> hashes everything the build depends on: the source, the patches,
# the layers, the options, the compiler and Python/numpy. A second run with the
# same inputs only prints where the build is. Object files are kept per source
# and options, so changing a layer recompiles that layer alone.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/header_help.sh
. "$ROOT/tools/header_help.sh"
CACHE=${PSN_CACHE:-$HOME/.cache/psn-caffe}
VENV=${PSN_VENV:-$ROOT/.venv}
PINNED_COMMIT=9b89154
DEBIAN_VERSION=1.0.0+git20180821.99bd997
CUDA=0
CUDA_ARCH_DEFAULT="-gencode arch=compute_75,code=sm_75 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_86,code=sm_86 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90"
CUDA_ARCH_GIVEN=${CUDA_ARCH:+1}
CUDA_ARCH=${CUDA_ARCH:-$CUDA_ARCH_DEFAULT}
CUDA_DIR=${CUDA_DIR:-/usr/local/cuda}
CUDNN=auto
PRINT_ENV=0
DEPS_ONLY=0
SKIP_DEPS=${PSN_SKIP_DEPS:-0}
JOBS=${JOBS:-$(nproc)}

usage() {
  header_help "$0"
  cat <<EOF

Options:
  --cuda              build with CUDA (CUDA_DIR=$CUDA_DIR)
  --cuda-arch "..."   nvcc -gencode list (default: sm_75 sm_80 sm_86 sm_90;
                      with CUDA 8: sm_52 sm_60 sm_61 and compute_61 PTX)
  --cudnn / --no-cudnn  force cuDNN on or off (default: on when cudnn.h is found)
  --print-env         print PATH/PYTHONPATH/LD_LIBRARY_PATH exports and exit
  --skip-deps         do not install apt or pip packages
  --deps-only         install apt packages and the .venv, then stop (no Caffe build)
  -j N                parallel make jobs (default: nproc)
Environment: CAFFE_SRC, PSN_CAFFE_CLONE=0 (no clone attempt), PSN_CACHE, PSN_VENV, CUDA_DIR, CUDA_ARCH; PSN_CUDA_INCLUDE_DIRS and
PSN_CUDA_LIBRARY_DIRS (space-separated) add cuBLAS/cuRAND/cuDNN from elsewhere, as
docker/Dockerfile.gpu's wheels base does with NVIDIA's wheels.
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) CUDA=1 ;;
    --cuda-arch) CUDA_ARCH=$2; CUDA_ARCH_GIVEN=1; shift ;;
    --cudnn) CUDNN=1 ;;
    --no-cudnn) CUDNN=0 ;;
    --print-env) PRINT_ENV=1 ;;
    --skip-deps) SKIP_DEPS=1 ;;
    --deps-only) DEPS_ONLY=1 ;;
    -j) JOBS=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build_caffe.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { [ "$PRINT_ENV" = 1 ] || echo "[build_caffe] $*" >&2; }
die() { echo "[build_caffe] error: $*" >&2; exit 1; }
# shellcheck source=tools/caffe_tree.sh
. "$ROOT/tools/caffe_tree.sh"

# ---------------------------------------------------------------- packages
APT_PACKAGES="build-essential dpkg-dev libboost-system-dev libboost-thread-dev
 libboost-filesystem-dev libboost-python-dev libprotobuf-dev protobuf-compiler
 libgoogle-glog-dev libgflags-dev libhdf5-dev libopenblas-dev python3-dev python3-venv"
[ "$CUDA" = 1 ] || true

install_apt() {
  local missing=()
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing apt packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The project's Python environment: a venv on the system interpreter, because
# Debian's Boost.Python is linked against that libpython. A different
# interpreter (pyenv, conda) would load a second libpython into pycaffe.
PYTHON_SYS=${PSN_PYTHON:-/usr/bin/python3}
ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating the project environment $VENV"
    "$PYTHON_SYS" -m venv "$VENV"
  fi
  local stamp="$VENV/.psn-requirements.sha256"
  local want
  want=$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing Python packages into $VENV"
    # opencv-contrib-python-headless replaced the plain wheel: both own cv2/, so the plain one
    # goes first (and the contrib one with it, reinstalled whole below).
    if "$VENV/bin/python" -m pip show -q opencv-python-headless >/dev/null 2>&1; then
      "$VENV/bin/python" -m pip uninstall -q -y opencv-python-headless \
        opencv-contrib-python-headless >&2
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.txt" >&2
    echo "$want" > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
  fi
}


# ---------------------------------------------------------------- source
SRC_CACHE="$CACHE/src"
source_dir() {
  if [ -n "${CAFFE_SRC:-}" ]; then
    [ -f "$CAFFE_SRC/Makefile" ] && [ -d "$CAFFE_SRC/src/caffe" ] || \
      die "CAFFE_SRC=$CAFFE_SRC is not a Caffe source tree (no Makefile or src/caffe)"
    echo "$CAFFE_SRC"; return
  fi
  local git_dir="$SRC_CACHE/bvlc-$PINNED_COMMIT"
  local deb_dir="$SRC_CACHE/debian-$DEBIAN_VERSION"
  for d in "$git_dir" "$deb_dir"; do
    [ -f "$d/.psn-complete" ] && { echo "$d"; return; }
  done
  mkdir -p "$SRC_CACHE"
  # PSN_CAFFE_CLONE=0: straight to Debian's package (the images, after their own clone failed).
  if [ "$PRINT_ENV" = 0 ] && [ "${PSN_CAFFE_CLONE:-1}" != 0 ] && command -v git >/dev/null; then
    log "trying a clone of BVLC/caffe at $PINNED_COMMIT (30 s limit)"
    rm -rf "$git_dir.tmp"
    if timeout 30 git clone -q https://github.com/BVLC/caffe.git "$git_dir.tmp" 2>/dev/null && \
       git -C "$git_dir.tmp" checkout -q "$PINNED_COMMIT" 2>/dev/null; then
      rm -rf "$git_dir.tmp/.git"; touch "$git_dir.tmp/.psn-complete"
      mv "$git_dir.tmp" "$git_dir"; echo "$git_dir"; return
    fi
    rm -rf "$git_dir.tmp"
    log "no clone; using Debian's source package caffe $DEBIAN_VERSION"
  fi
  [ "$PRINT_ENV" = 0 ] || die "Caffe is not built yet: run tools/build_caffe.sh"
  fetch_debian_source "$deb_dir"
  echo "$deb_dir"
}

# apt-get source through a private sources list: the mirror is read from this
# machine's own apt configuration, the suite is bullseye (the last release
# that ships caffe), and nothing under /etc/apt is touched.
fetch_debian_source() {
  local dest=$1 work="$SRC_CACHE/apt"
  rm -rf "$work"; mkdir -p "$work/lists/partial" "$work/dl"
  local uri
  uri=$(debian_mirror)
  [ -n "$uri" ] || die "no Debian mirror found in /etc/apt; set CAFFE_SRC to a Caffe checkout"
  # bullseye lives under /debian on the regular mirrors.
  uri=${uri%/}
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bullseye main" > "$work/sources.list"
  local o=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
           -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root")
  log "fetching Debian source package caffe from $uri (bullseye)"
  apt-get "${o[@]}" update -qq >&2 || die "apt-get update on the private bullseye deb-src list failed"
  (cd "$work/dl" && apt-get "${o[@]}" source --download-only "caffe=$(apt-cache "${o[@]}" showsrc caffe | awk '/^Version:/ {print $2; exit}')" >&2) \
    || die "apt-get source caffe failed"
  local orig
  orig=$(find "$work/dl" -maxdepth 1 -name 'caffe_*.orig.tar.gz' | sort | head -n1)
  [ -n "$orig" ] || die "no caffe orig tarball downloaded"
  # The pristine upstream snapshot, without Debian's packaging patches: the
  # project applies its own, listed in tools/caffe_patches.
  rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
  tar xzf "$orig" -C "$dest.tmp"
  touch "$dest.tmp/.psn-complete"; mv "$dest.tmp" "$dest"; rm -rf "$work"
}

# ---------------------------------------------------------------- keys
# detect_cuda: the arch list for old toolkits, and cuDNN (its header and version).
detect_cuda() {
CUDNN_VER=""
if [ "$CUDA" = 1 ]; then
  [ -x "$CUDA_DIR/bin/nvcc" ] || die "--cuda: no nvcc at $CUDA_DIR/bin/nvcc (set CUDA_DIR to the CUDA toolkit)"
  NVCC_MAJOR=$("$CUDA_DIR/bin/nvcc" --version | sed -n 's/.*release \([0-9][0-9]*\)\..*/\1/p')
  # CUDA 8 (the paper's toolkit) knows no arch above sm_62: the default list is
  # then Pascal's (the paper's GTX 1080 Ti is sm_61) with PTX for later GPUs.
  if [ -z "$CUDA_ARCH_GIVEN" ] && [ "${NVCC_MAJOR:-0}" -lt 9 ]; then
    CUDA_ARCH="-gencode arch=compute_52,code=sm_52 -gencode arch=compute_60,code=sm_60 -gencode arch=compute_61,code=sm_61 -gencode arch=compute_61,code=compute_61"
  fi
  # cuDNN: the toolkit's headers, else the system's (the nvidia/cuda cudnn
  # images install cudnn.h under /usr/include, cuDNN 9's under the multiarch dir).
  CUDNN_H=""
  local extra_h=""
  for d in ${PSN_CUDA_INCLUDE_DIRS:-}; do extra_h="$extra_h $d/cudnn.h"; done
  for h in "$CUDA_DIR/include/cudnn.h" /usr/include/cudnn.h /usr/include/x86_64-linux-gnu/cudnn.h $extra_h; do
    [ -f "$h" ] && { CUDNN_H=$h; break; }
  done
  if [ "$CUDNN" = auto ]; then if [ -n "$CUDNN_H" ]; then CUDNN=1; else CUDNN=0; fi; fi
  [ "$CUDNN" = 0 ] || [ -n "$CUDNN_H" ] || die "--cudnn: no cudnn.h in $CUDA_DIR/include, /usr/include or /usr/include/x86_64-linux-gnu"
  if [ "$CUDNN" = 1 ]; then
    # cuDNN 8 moved the version macros from cudnn.h to cudnn_version.h.
    vh="$(dirname "$CUDNN_H")/cudnn_version.h"; [ -f "$vh" ] || vh=$CUDNN_H
    CUDNN_VER=$(awk '$1 == "#define" && $2 ~ /^CUDNN_(MAJOR|MINOR|PATCHLEVEL)$/ {printf "%s%s", sep, $3; sep = "."}' "$vh")
    log "cuDNN ${CUDNN_VER:-(version unknown)} from $CUDNN_H"
  fi
fi
[ "$CUDA" = 1 ] || CUDNN=0
}

# makefile_config: the Python, BLAS, Boost.Python and HDF5 paths of this machine, and the
# Makefile.config they give (tools/caffe_tree.sh's template).
makefile_config() {
NUMPY_INC=$("$PY" -c 'import numpy; print(numpy.get_include())' 2>/dev/null) || \
  die "numpy is missing from $VENV: run tools/build_caffe.sh without --skip-deps"
PY_VER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PY_NODOT=${PY_VER/./}
NUMPY_VER=$("$PY" -c 'import numpy; print(numpy.__version__)')

BLAS_INC=$(find_blas_include)
BOOST_PYTHON=$(find_boost_python "$PY_NODOT")
[ -n "$BOOST_PYTHON" ] || die "no Boost.Python library for Python $PY_VER (libboost_python$PY_NODOT.so, libboost_python-py$PY_NODOT.so or libboost_python3.so in /usr/local/lib, /usr/lib/x86_64-linux-gnu, /usr/lib): install libboost-python-dev"
PY_INC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
PY_LIB=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
HDF5_INC=/usr/include/hdf5/serial
HDF5_LIB=/usr/lib/x86_64-linux-gnu/hdf5/serial
EXTRA_INCLUDE_DIRS=${PSN_CUDA_INCLUDE_DIRS:-}
EXTRA_LIBRARY_DIRS=${PSN_CUDA_LIBRARY_DIRS:-}
MAKEFILE_CONFIG=$(caffe_makefile_config tools/build_caffe.sh)
}

hash_tree() { (cd "$1" && find . -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16; }
# compute_keys: the build's key (source, patches, options, Makefile.config, layers), and
# from it the install folder and the build tree.
compute_keys() {
SRC_ID=$(basename "$SRC")
[ -n "${CAFFE_SRC:-}" ] && SRC_ID="custom-$(cd "$SRC" && find src include Makefile -type f -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16)"
OPTS="cuda=$CUDA cudnn=$CUDNN arch=$CUDA_ARCH py=$PY_VER numpy=$NUMPY_VER cxx=$(c++ -dumpfullversion 2>/dev/null || echo ?)"
[ "$CUDA" = 1 ] && OPTS="$OPTS nvcc=$("$CUDA_DIR/bin/nvcc" --version 2>/dev/null | tail -n1)"
[ "$CUDNN" = 1 ] && OPTS="$OPTS cudnn_version=$CUDNN_VER"
# The key names numpy by version, not by path: every clone has its own .venv, and the
# same numpy headers give the same build, so clones share one build tree and install.
# Only the patches a variant applies: CUDA-only patches do not touch the CPU build.
PATCH_KEY=$(cat "$ROOT"/tools/caffe_patches/*.patch | sha256sum | cut -c1-16)
if [ "$CUDA" = 1 ] && [ -d "$ROOT/tools/caffe_patches/cuda" ]; then
  PATCH_KEY="$PATCH_KEY-$(hash_tree "$ROOT/tools/caffe_patches/cuda")"
fi
BASE_KEY=$(printf '%s\n%s\n%s\n%s\n' "$SRC_ID" "$PATCH_KEY" "$OPTS" "$(printf %s "${MAKEFILE_CONFIG//$NUMPY_INC/numpy-$NUMPY_VER}" | sha256sum | cut -c1-16)" | sha256sum | cut -c1-12)
LAYER_KEY=$(hash_tree "$ROOT/layers/include")-$(hash_tree "$ROOT/layers/src")
KEY=$(printf '%s\n%s\n' "$BASE_KEY" "$LAYER_KEY" | sha256sum | cut -c1-12)
VARIANT=cpu; [ "$CUDA" = 1 ] && VARIANT=cuda
INSTALL="$CACHE/caffe/$VARIANT-$KEY"
TREE="$CACHE/caffe/tree-$VARIANT-$BASE_KEY"
}

print_env() {
  [ -f "$INSTALL/.psn-complete" ] || die "no $VARIANT build for the current sources: run tools/build_caffe.sh${CUDA:+$( [ "$CUDA" = 1 ] && echo ' --cuda')}"
  echo "export PSN_CAFFE_HOME=\"$INSTALL\""
  echo "export PATH=\"$VENV/bin:$INSTALL/bin:\$PATH\""
  echo "export PYTHONPATH=\"$INSTALL/python:$ROOT/layers:$ROOT\${PYTHONPATH:+:\$PYTHONPATH}\""
  local extra_libs=${EXTRA_LIBRARY_DIRS// /:}
  echo "export LD_LIBRARY_PATH=\"$INSTALL/lib${extra_libs:+:$extra_libs}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
}

# ---------------------------------------------------------------- tree
prepare_tree() {
if [ ! -f "$TREE/.psn-patched" ]; then
  log "preparing $TREE from $SRC"
  copy_tree "$SRC" "$TREE"
  apply_patches "$TREE" "$CUDA" "$SRC_ID"
  touch "$TREE/.psn-patched"
fi
sync_layers "$TREE"
printf '%s\n' "$MAKEFILE_CONFIG" | write_if_changed "$TREE/Makefile.config"
}

# ---------------------------------------------------------------- build
build_tree() {
log "building ($VARIANT, $JOBS jobs) in $TREE; the first build takes several minutes"
local test_bins=(.build_release/test/test_tpu_layer.testbin
                 .build_release/test/test_hdf5_prefetch_data_layer.testbin)
# ld looks for libcaffe's own needs (libcublas.so.13, ...) on LD_LIBRARY_PATH, not on -L.
local extra_libs=${EXTRA_LIBRARY_DIRS// /:}
(cd "$TREE" && export LD_LIBRARY_PATH="$extra_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" && \
 make -j"$JOBS" all pycaffe >&2 && make -j"$JOBS" "${test_bins[@]}" >&2) || \
  die "make failed in $TREE (the log above says where); fix and rerun: finished objects are kept"
}

# ---------------------------------------------------------------- install
install_build() {
log "installing into $INSTALL"
rm -rf "$INSTALL.tmp"; mkdir -p "$INSTALL.tmp"/{bin,lib,test,python,tools}
cp -a "$TREE"/build/tools/*.bin "$INSTALL.tmp/bin/"
for b in "$INSTALL.tmp"/bin/*.bin; do ln -s "$(basename "$b")" "${b%.bin}"; done
cp -a "$TREE"/build/lib/libcaffe.so* "$INSTALL.tmp/lib/"
cp -a "$TREE"/build/test/*.testbin "$INSTALL.tmp/test/"
cp -a "$TREE/include" "$INSTALL.tmp/include"
mkdir -p "$INSTALL.tmp/include/caffe/proto"
cp -a "$TREE"/build/src/caffe/proto/caffe.pb.h "$INSTALL.tmp/include/caffe/proto/"
cp -a "$TREE/src/caffe/proto/caffe.proto" "$INSTALL.tmp/include/caffe/proto/"
cp -a "$TREE/src/gtest" "$INSTALL.tmp/include/gtest-src"
# BVLC's log tools (parse_log.py, extract_seconds.py; Python 3 by the 0004 patch).
cp -a "$TREE/tools/extra" "$INSTALL.tmp/tools/extra"
(cd "$TREE/python" && tar cf - --exclude='*.pyc' --exclude=__pycache__ caffe) | (cd "$INSTALL.tmp/python" && tar xf -)
# _caffe.so carries the rpath $ORIGIN/../../build/lib and the tools $ORIGIN/../lib:
# this link makes both resolve inside the install without LD_LIBRARY_PATH.
ln -s . "$INSTALL.tmp/build"
cat > "$INSTALL.tmp/BUILD_INFO" <<EOF
source: $SRC_ID
options: $OPTS
patches: $(cd "$ROOT/tools/caffe_patches" && printf '%s ' ./*.patch | sed 's|\./||g')
layers: $LAYER_KEY
built: $(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
touch "$INSTALL.tmp/.psn-complete"
rm -rf "$INSTALL"; mv "$INSTALL.tmp" "$INSTALL"
# Keep the three newest installs of this variant (older layer versions are rarely wanted).
# shellcheck disable=SC2012  # newest first by mtime; the names are this script's own hashes
ls -dt "$CACHE/caffe/$VARIANT"-*/ 2>/dev/null | tail -n +4 | while read -r old; do
  [ -f "$old/.psn-complete" ] && rm -rf "$old"
done
log "done: $INSTALL"
log "use it with: eval \"\$(tools/build_caffe.sh --print-env$( [ "$CUDA" = 1 ] && echo ' --cuda'))\""
}

# ---------------------------------------------------------------- main
if [ "$PRINT_ENV" = 0 ] && [ "$SKIP_DEPS" = 0 ]; then
  install_apt
  ensure_venv
fi
[ "$DEPS_ONLY" = 0 ] || { log "dependencies ready (--deps-only: Caffe not built)"; exit 0; }
[ -x "$VENV/bin/python" ] || die "no Python environment at $VENV: run tools/build_caffe.sh without --skip-deps/--print-env first"
PY="$VENV/bin/python"
SRC=$(source_dir)
detect_cuda
makefile_config
compute_keys
if [ "$PRINT_ENV" = 1 ]; then
  print_env
  exit 0
fi
if [ -f "$INSTALL/.psn-complete" ]; then
  log "up to date: $INSTALL"
  exit 0
fi
prepare_tree
build_tree
install_build
