#!/usr/bin/env bash
# The test command: sets everything up on a fresh machine, then runs the tests.
#
#   tools/run_tests.sh [pytest args...]     every tier (what CI runs)
#   tools/run_tests.sh --fast [pytest args...]
#       the fast tier only, two tests at a time: no Caffe build, no CUDA compile check, no
#       Dockerfile check, no `slow` test (pure Python: loaders, labels, face, TIM, RPCA,
#       folds, metrics, report, locks)
#   tools/run_tests.sh --slurm [pytest args...]
#       opt-in: run_folds' SLURM job array on a one-node cluster started on this machine
#       (tools/check_slurm.sh; needs root and Debian's slurmctld, slurmd, munge)
#   tools/run_tests.sh --image [check_image.sh options...]
#       opt-in: build docker/Dockerfile.cpu (docker, else buildah as root) and run the fast
#       tier and a smoke pipeline inside it (tools/check_image.sh; ~25 min the first time);
#       --gpu: the CUDA image (BASE=wheels), the GPU bundle cut from it and its CPU check
#   tools/run_tests.sh --mutation [module ...]
#       opt-in: mutation testing of the modules that decide the paper's results
#       (tests/mutation.py; about 25 min on 2 cores; exits 1 under 90 % killed)
#
# Tiers are pytest markers set in tests/conftest.py: caffe (needs the built Caffe), cuda (the
# CUDA compile-all check), docker (the Dockerfile checks); `-m "not cuda"` etc. pick them.
#
# 1. tools/build_caffe.sh: apt packages, the .venv with requirements.txt, Caffe
#    with the TPU layer (cached under ~/.cache/psn-caffe; seconds when cached)
# 2. installs this package into .venv (editable)
# 3. runs pytest on tests/ with the built Caffe on the paths
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/header_help.sh
. "$ROOT/tools/header_help.sh"
cd "$ROOT"
case "${1:-}" in -h|--help) header_help "$0"; exit 0 ;; esac
FAST=0
MUTATION=0
SLURM=0
if [ "${1:-}" = "--fast" ]; then
  FAST=1
  shift
elif [ "${1:-}" = "--mutation" ]; then
  MUTATION=1
  shift
elif [ "${1:-}" = "--slurm" ]; then
  SLURM=1
  shift
elif [ "${1:-}" = "--image" ]; then
  # The image builds its own Caffe and environment: nothing to set up here.
  shift
  exec bash tools/check_image.sh "$@"
fi
VENV=${PSN_VENV:-$ROOT/.venv}
if [ "$FAST" = 1 ]; then
  tools/build_caffe.sh --deps-only
else
  tools/build_caffe.sh
  eval "$(tools/build_caffe.sh --print-env)"
  # The full run built Caffe: a Caffe test that cannot find it is a failure, not a skip.
  export PSN_REQUIRE_CAFFE=1
fi
stamp="$VENV/.psn-editable"
if [ "$(cat "$stamp" 2>/dev/null)" != "$ROOT" ]; then
  echo "[run_tests] installing psn-caffe into $VENV (editable)" >&2
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" >&2
  echo "$ROOT" > "$stamp"
fi
export GLOG_minloglevel=${GLOG_minloglevel:-2}
export MPLBACKEND=Agg
if [ "$FAST" = 1 ]; then
  # Two tests at a time (pytest-xdist): the tier is for quick feedback; `slow` tests run in
  # the full tier only.
  exec "$VENV/bin/python" -m pytest tests -q -rs -n 2 -m "not caffe and not cuda and not docker and not slow" "$@"
fi
if [ "$SLURM" = 1 ]; then
  exec bash tools/check_slurm.sh "$@"
fi
if [ "$MUTATION" = 1 ]; then
  exec "$VENV/bin/python" tests/mutation.py "$@"
fi
exec "$VENV/bin/python" -m pytest tests -q -rs "$@"
