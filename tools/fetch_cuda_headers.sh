#!/usr/bin/env bash
# Print include directories holding cuBLAS and cuRAND headers, fetching them once.
#
#   tools/fetch_cuda_headers.sh           cuBLAS and cuRAND include dirs
#   tools/fetch_cuda_headers.sh --cudnn   also cuDNN's (for USE_CUDNN sources)
#   tools/fetch_cuda_headers.sh --libs    cuBLAS, cuRAND and cuDNN with their libraries:
#                                         include dirs, then lib dirs (for linking)
#
# Caffe's headers include cublas_v2.h and curand.h, which a bare nvcc install
# (as on the CI machine) does not ship. NVIDIA publishes them in its PyPI
# wheels; only their include/ folders are kept, under $PSN_CACHE/cuda-headers
# (cuDNN's under $PSN_CACHE/cudnn-headers: its wheel is ~0.5 GB, fetched only
# when asked for). --libs keeps include/ and lib/ of all three under $PSN_CACHE/cuda-libs
# (~2 GB unpacked) and adds the unversioned names the linker asks for (libcublas.so ->
# libcublas.so.13): tools/gpu_bundle.sh --verify mounts them as a GPU host's. Output: one include
# directory per line (with --libs, then one lib directory per line).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/header_help.sh
. "$ROOT/tools/header_help.sh"
WITH_CUDNN=0
WITH_LIBS=0
case "${1:-}" in
  --cudnn) WITH_CUDNN=1 ;;
  --libs) WITH_LIBS=1 ;;
  -h|--help) header_help "$0"; exit 0 ;;
  "") ;;
  *) echo "fetch_cuda_headers.sh: unknown option '$1' (--cudnn, --libs or --help)" >&2; exit 2 ;;
esac
CACHE=${PSN_CACHE:-$HOME/.cache/psn-caffe}
DEST="$CACHE/cuda-headers"
PY=${PSN_VENV:-$ROOT/.venv}/bin/python
[ -x "$PY" ] || PY=python3
# Versions matching CUDA 13 (cuBLAS 13.x, cuRAND 10.4.x, cuDNN 9.x for CUDA 13).
WHEELS="nvidia-cublas==13.* nvidia-curand==10.4.*"
CUDNN_WHEEL=${PSN_CUDNN_WHEEL:-nvidia-cudnn-cu13==9.*}

# fetch DEST KEEP WHEEL...: download the wheels once, keep the folders named in KEEP
# ("include" or "include lib").
fetch() {
  local dest=$1 keep=$2; shift 2
  [ -f "$dest/.complete" ] && return 0
  local tmp="$dest.tmp"; rm -rf "$tmp"; mkdir -p "$tmp/wheels"
  echo "[fetch_cuda_headers] downloading $* (keeping $keep)" >&2
  "$PY" -m pip download -q --no-cache-dir --no-deps --only-binary=:all: -d "$tmp/wheels" "$@" >&2
  for w in "$tmp"/wheels/*.whl; do
    # shellcheck disable=SC2086  # $keep: a list of path prefixes, split on purpose
    "$PY" - "$w" "$tmp" $keep <<'PYEOF'
import os, sys, zipfile
wheel, dest, keep = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        parts = info.filename.split("/")
        if any(k in parts[:-1] for k in keep) and not info.filename.endswith("/"):
            z.extract(info, dest)
            if "lib" in parts[:-1]:
                os.chmod(os.path.join(dest, info.filename), 0o755)
PYEOF
  done
  rm -rf "$tmp/wheels"
  # The linker's -lcublas wants libcublas.so; the wheels ship only libcublas.so.13.
  find "$tmp" -type f -name 'lib*.so.*' | while read -r f; do
    base=${f%.so.*}.so
    [ -e "$base" ] || ln -s "$(basename "$f")" "$base"
  done
  touch "$tmp/.complete"
  rm -rf "$dest"; mv "$tmp" "$dest"
}
if [ "$WITH_LIBS" = 1 ]; then
  # Keyed by the requirements (a hash: the Makefile.config names these folders).
  # shellcheck disable=SC2086  # $WHEELS: a list of wheel names, split on purpose
  LIBS_DEST="$CACHE/cuda-libs/$(printf '%s\n' $WHEELS "$CUDNN_WHEEL" | sha256sum | cut -c1-12)"
  # shellcheck disable=SC2086
  fetch "$LIBS_DEST" "include lib" $WHEELS "$CUDNN_WHEEL"
  find "$LIBS_DEST" -type d -name include | sort
  find "$LIBS_DEST" -type d -name lib | sort
  exit 0
fi
# shellcheck disable=SC2086
fetch "$DEST" include $WHEELS
find "$DEST" -type d -name include | sort
if [ "$WITH_CUDNN" = 1 ]; then
  # Keyed by the requirement, so PSN_CUDNN_WHEEL=nvidia-cudnn-cu12==8.9.* (cuDNN 8) works alongside.
  CUDNN_DEST="$CACHE/cudnn-headers/$(printf %s "$CUDNN_WHEEL" | tr -c 'A-Za-z0-9.=-' _)"
  fetch "$CUDNN_DEST" include "$CUDNN_WHEEL"
  find "$CUDNN_DEST" -type d -name include | sort
fi
