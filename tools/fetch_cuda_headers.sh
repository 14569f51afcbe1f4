#!/usr/bin/env bash
# Print include directories holding cuBLAS and cuRAND headers, fetching them once.
#
# Caffe's headers include cublas_v2.h and curand.h, which a bare nvcc install
# (as on the CI machine) does not ship. NVIDIA publishes them in its PyPI
# wheels; only their include/ folders are kept, under $PSN_CACHE/cuda-headers.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${PSN_CACHE:-$HOME/.cache/psn-caffe}
DEST="$CACHE/cuda-headers"
PY=${PSN_VENV:-$ROOT/.venv}/bin/python
[ -x "$PY" ] || PY=python3
# Versions matching CUDA 13 (cuBLAS 13.x, cuRAND 10.4.x).
WHEELS="nvidia-cublas==13.* nvidia-curand==10.4.*"
if [ ! -f "$DEST/.complete" ]; then
  tmp="$DEST.tmp"; rm -rf "$tmp"; mkdir -p "$tmp/wheels"
  echo "[fetch_cuda_headers] downloading $WHEELS (headers only are kept)" >&2
  # shellcheck disable=SC2086
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$tmp/wheels" $WHEELS >&2
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
  rm -rf "$DEST"; mv "$tmp" "$DEST"
fi
find "$DEST" -type d -name include | sort
