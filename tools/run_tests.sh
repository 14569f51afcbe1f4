#!/usr/bin/env bash
# The test command: sets everything up on a fresh machine, then runs the tests.
#
#   tools/run_tests.sh [pytest args...]
#
# 1. tools/build_caffe.sh: apt packages, the .venv with requirements.txt, Caffe
#    with the TPU layer (cached under ~/.cache/psn-caffe; seconds when cached)
# 2. installs this package into .venv (editable)
# 3. runs pytest on tests/ with the built Caffe on the paths
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
tools/build_caffe.sh
eval "$(tools/build_caffe.sh --print-env)"
VENV=${PSN_VENV:-$ROOT/.venv}
stamp="$VENV/.psn-editable"
if [ "$(cat "$stamp" 2>/dev/null)" != "$ROOT" ]; then
  echo "[run_tests] installing psn-caffe into $VENV (editable)" >&2
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" >&2
  echo "$ROOT" > "$stamp"
fi
export GLOG_minloglevel=${GLOG_minloglevel:-2}
export MPLBACKEND=Agg
exec "$VENV/bin/python" -m pytest tests -q -rs "$@"
