#!/usr/bin/env bash
# The main command: set-up on a fresh machine, then data -> preprocessing -> folds -> report.
#
#   tools/run_psn.sh [options]        (tools/run_psn.sh --help lists them)
#
# 1. tools/build_caffe.sh: apt packages, the .venv, Caffe with the TPU layer (cached)
# 2. installs this package into .venv (editable)
# 3. python -m psn.main: synthetic database (when no database is given), preprocessing,
#    `caffe train` on every fold, predictions and the report under work/
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CUDA_FLAG=""
for a in "$@"; do case "$a" in
  # The options are psn.main's (argparse), which needs the .venv but not Caffe.
  -h|--help) tools/build_caffe.sh --deps-only; exec "${PSN_VENV:-$ROOT/.venv}/bin/python" -m psn.main --help ;;
  --gpus|--gpus=*) CUDA_FLAG="--cuda" ;;
esac; done
tools/build_caffe.sh $CUDA_FLAG
eval "$(tools/build_caffe.sh --print-env $CUDA_FLAG)"
VENV=${PSN_VENV:-$ROOT/.venv}
stamp="$VENV/.psn-editable"
if [ "$(cat "$stamp" 2>/dev/null)" != "$ROOT" ]; then
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" >&2
  echo "$ROOT" > "$stamp"
fi
export MPLBACKEND=Agg
exec "$VENV/bin/python" -m psn.main "$@"
