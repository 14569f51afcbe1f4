#!/usr/bin/env bash
# Print include directories holding cuBLAS and cuRAND headers, fetching them once.
#
#   tools/fetch_cuda_headers.sh           cuBLAS and cuRAND include dirs
#   tools/fetch_cuda_headers.sh --cudnn   also cuDNN's (for USE_CUDNN sources)
#
# Caffe's headers include cublas_v2.h and curand.h, which a bare nvcc install
# (as on the CI machine) does not ship. NVIDIA publishes them in its PyPI
# wheels; only their include/ folders are kept, under $PSN_CACHE/cuda-headers
# (cuDNN's under $PSN_CACHE/cudnn-headers: its wheel is ~0.5 GB, fetched only
# when asked for). Output: one include directory per line.
set -euo pipefail
WITH_CUDNN=0
[ "${1:-}" = --cudnn ] && WITH_CUDNN=1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${PSN_CACHE:-$HOME/.cache/psn-caffe}
DEST="$CACHE/cuda-headers"
PY=${PSN_VENV:-$ROOT/.venv}/bin/python
[ -x "$PY" ] || PY=python3
# Versions matching CUDA 13 (cuBLAS 13.x, cuRAND 10.4.x, cuDNN 9.x for CUDA 13).
WHEELS="nvidia-cublas==13.* nvidia-curand==10.4.*"
CUDNN_WHEEL=${PSN_CUDNN_WHEEL:-nvidia-cudnn-cu13==9.*}

# fetch DEST WHEEL...: download the wheels once, keep their include/ folders.
fetch() {
  local dest=$1; shift
  [ -f "$dest/.complete" ] && return 0
  local tmp="$dest.tmp"; rm -rf "$tmp"; mkdir -p "$tmp/wheels"
  echo "[fetch_cuda_headers] downloading $* (headers only are kept)" >&2
  "$PY" -m pip download -q --no-cache-dir --no-deps --only-binary=:all: -d "$tmp/wheels" "$@" >&2
  for w in "$tmp"/wheels/*.whl; do
    "$PY" - "$w" "$tmp" <<'PYEOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if "/include/" in name and not name.endswith("/"):
            z.extract(name, dest)
PYEOF
  done
  rm -rf "$tmp/wheels"; touch "$tmp/.complete"
  rm -rf "$dest"; mv "$tmp" "$dest"
}
# shellcheck disable=SC2086
fetch "$DEST" $WHEELS
find "$DEST" -type d -name include | sort
if [ "$WITH_CUDNN" = 1 ]; then
  # Keyed by the requirement, so PSN_CUDNN_WHEEL=nvidia-cudnn-cu12==8.9.* (cuDNN 8) works alongside.
  CUDNN_DEST="$CACHE/cudnn-headers/$(printf %s "$CUDNN_WHEEL" | tr -c 'A-Za-z0-9.=-' _)"
  fetch "$CUDNN_DEST" "$CUDNN_WHEEL"
  find "$CUDNN_DEST" -type d -name include | sort
fi
