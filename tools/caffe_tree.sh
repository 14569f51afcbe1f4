# shellcheck shell=bash
# Shared by tools/build_caffe.sh and tools/check_cuda_build.sh (sourced, not run): the one
# Makefile.config template, and the steps that turn a pristine Caffe source into this
# project's tree (patches, layers copied in-tree). Also the Debian mirror this machine uses,
# which build_caffe.sh fetches Caffe's source package from and tools/check_image.sh and
# tools/gpu_bundle.sh debootstrap their Debian 12 roots from.

# debian_mirror: the mirror this machine's apt uses (deb822 .sources first, then one-line
# .list files); empty when none is configured.
debian_mirror() {
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '$1=="deb" {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
                         /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 || true)
  echo "$uri"
}

# find_blas_include: the folder holding OpenBLAS' cblas.h (Debian's multiarch folder; Ubuntu
# 16.04's OpenBLAS 0.2.18 keeps it in /usr/include/openblas).
find_blas_include() {
  local inc=/usr/include/x86_64-linux-gnu
  [ -f "$inc/cblas.h" ] || [ ! -f /usr/include/openblas/cblas.h ] || inc=/usr/include/openblas
  echo "$inc"
}

# find_boost_python PY_NODOT: Boost.Python's library name for that Python, empty if none.
# It differs by distribution: boost_python311 (Debian 12), boost_python310 (Ubuntu
# 22.04), boost_python-py35 (Ubuntu 16.04), boost_python3 (older Debian). A Boost.Python
# built for another Python (as the paper image does) goes to /usr/local/lib.
find_boost_python() {
  local name d
  for name in "boost_python$1" "boost_python-py$1" boost_python3; do
    for d in /usr/local/lib /usr/lib/x86_64-linux-gnu /usr/lib; do
      [ -e "$d/lib$name.so" ] && { echo "$name"; return 0; }
    done
  done
}

# caffe_makefile_config WRITER: Caffe's Makefile.config from CUDA, CUDNN (0/1), CUDA_DIR,
# CUDA_ARCH, BLAS_INC, BOOST_PYTHON, PY_VER, PY_INC, NUMPY_INC, PY_LIB, HDF5_INC, HDF5_LIB
# EXTRA_INCLUDE_DIRS and EXTRA_LIBRARY_DIRS (optional: CUDA libraries from NVIDIA's wheels).
caffe_makefile_config() {
  cat <<CONFIG
# Written by psn-caffe $1
$( [ "$CUDA" = 1 ] || echo "CPU_ONLY := 1" )
$( [ "$CUDNN" = 1 ] && echo "USE_CUDNN := 1" )
USE_OPENCV := 0
USE_LEVELDB := 0
USE_LMDB := 0
CUDA_DIR := $CUDA_DIR
CUDA_ARCH := $CUDA_ARCH
BLAS := open
BLAS_INCLUDE := $BLAS_INC
PYTHON_LIBRARIES := $BOOST_PYTHON python$PY_VER
PYTHON_INCLUDE := $PY_INC $NUMPY_INC
PYTHON_LIB := $PY_LIB
WITH_PYTHON_LAYER := 1
INCLUDE_DIRS := \$(PYTHON_INCLUDE) /usr/local/include $HDF5_INC $( [ "$CUDA" = 1 ] && echo "$CUDA_DIR/include")${EXTRA_INCLUDE_DIRS:+ $EXTRA_INCLUDE_DIRS}
LIBRARY_DIRS := \$(PYTHON_LIB) /usr/local/lib /usr/lib $HDF5_LIB${EXTRA_LIBRARY_DIRS:+ $EXTRA_LIBRARY_DIRS}
BUILD_DIR := build
DISTRIBUTE_DIR := distribute
Q ?= @
CONFIG
}

# write_if_changed FILE: standard input into FILE, leaving FILE (and its mtime) alone when
# nothing changed, so that make does not rebuild.
write_if_changed() {
  cat > "$1.new"
  if cmp -s "$1.new" "$1"; then rm "$1.new"; else mv "$1.new" "$1"; fi
}

# copy_tree SRC TREE: a fresh copy of the pristine source.
copy_tree() {
  rm -rf "$2"; mkdir -p "$2"
  (cd "$1" && tar cf - --exclude=.git .) | (cd "$2" && tar xf -)
}

# apply_patches TREE CUDA(0/1) WHAT: tools/caffe_patches/*.patch, then with CUDA the
# cuda/*.patch; dies naming the patch that does not apply to WHAT.
apply_patches() {
  local p
  for p in "$ROOT"/tools/caffe_patches/*.patch; do
    [ -f "$p" ] || continue
    log "patch $(basename "$p")"
    patch -s -p1 -N -d "$1" < "$p" || die "patch $(basename "$p") does not apply to $3"
  done
  [ "$2" = 1 ] && [ -d "$ROOT/tools/caffe_patches/cuda" ] || return 0
  for p in "$ROOT"/tools/caffe_patches/cuda/*.patch; do
    [ -f "$p" ] || continue
    log "patch cuda/$(basename "$p")"
    patch -s -p1 -N -d "$1" < "$p" || die "patch cuda/$(basename "$p") does not apply to $3"
  done
}

# sync_layers TREE: the project's layers go in-tree, the way py-faster-rcnn's fork carried
# its ROI pooling layer; only changed files are copied, so make recompiles only those.
sync_layers() {
  (cd "$ROOT/layers" && find include src -type f) | while read -r f; do
    if ! cmp -s "$ROOT/layers/$f" "$1/$f"; then
      mkdir -p "$(dirname "$1/$f")"; cp "$ROOT/layers/$f" "$1/$f"
    fi
  done
}
