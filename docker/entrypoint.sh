#!/usr/bin/env bash
# Entry point of the psn-caffe images: the project's tools by name, or any command.
set -euo pipefail
ROOT=${PSN_ROOT:-/opt/psn-caffe}

usage() {
  cat <<EOF
psn-caffe image ($(caffe --version 2>/dev/null || echo "caffe not found"); Caffe in ${PSN_CAFFE_HOME:-?})

  docker run ... IMAGE COMMAND [ARGS...]

Commands (each takes --help):
  preprocess ...    tools/preprocess.py: databases -> HDF5 shards and folds (table4 | run)
  run_folds ...     tools/run_folds.py: caffe train on every fold, then predictions
  report ...        tools/report.py: tables, confusion matrices, curves from predictions.csv
  predict ...       tools/predict.py: classify one clip folder with a trained model
  parse_log ...     tools/parse_log.py: Caffe log -> CSV
  make_synthetic .. tools/make_synthetic.py: a synthetic CASME II-format database
  psn ...           the whole pipeline (python -m psn.main; --out defaults to /data/work)
  caffe ...         the caffe binary (caffe device_query -gpu 0, caffe time, ...)
  help              this text
Anything else runs as a command (bash, python, nvidia-smi, ...).
Mount your data at /data (the working directory); write results under it.
EOF
}

# The GPU images set PSN_CUDA_DRIVER_MIN (the oldest driver their CUDA runs on). A host driver
# older than that fails deep inside Caffe ("CUDA driver version is insufficient"); say it here,
# in one line, before any tool starts. No driver visible (a run without --gpus): nothing to check.
# PSN_SKIP_DRIVER_CHECK=1 skips it (e.g. preprocessing only, which never touches the GPU).
host_driver() {
  local v=""
  if command -v nvidia-smi >/dev/null 2>&1; then
    v=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' ') || v=""
  fi
  # /proc shows the host's driver even to a container given no GPU: read it only where a GPU
  # was given (its control device is there). The open modules' line names the architecture
  # first ("Open Kernel Module for x86_64  580.65.06"): the version is the first dotted number
  # of three or more digits.
  local proc=${PSN_NVIDIA_PROC_VERSION:-/proc/driver/nvidia/version}
  if [ -z "$v" ] && [ -e "${PSN_NVIDIA_CTL:-/dev/nvidiactl}" ] && [ -r "$proc" ]; then
    v=$(grep -m1 'Kernel Module' "$proc" | grep -oE '[0-9]{3,}\.[0-9]+(\.[0-9]+)?' | head -n1) || v=""
  fi
  echo "$v"
}
check_driver() {
  [ -n "${PSN_CUDA_DRIVER_MIN:-}" ] && [ "${PSN_SKIP_DRIVER_CHECK:-0}" != 1 ] || return 0
  local found
  found=$(host_driver)
  [ -n "$found" ] || return 0
  # sort -V puts the older first: the found driver is too old when it sorts first and differs.
  if [ "$found" != "$PSN_CUDA_DRIVER_MIN" ] && \
     [ "$(printf '%s\n%s\n' "$found" "$PSN_CUDA_DRIVER_MIN" | sort -V | head -n1)" = "$found" ]; then
    echo "psn-caffe: the host's NVIDIA driver is $found; this image's CUDA${PSN_CUDA_VERSION:+ $PSN_CUDA_VERSION} needs driver >= $PSN_CUDA_DRIVER_MIN: update the host's driver, or use an image built for an older CUDA (docker/README.md: the bases)" >&2
    exit 3
  fi
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "${cmd//-/_}" in help|_h|__help) ;; *) check_driver ;; esac
case "${cmd//-/_}" in
  preprocess|run_folds|report|predict|parse_log|make_synthetic)
    exec python "$ROOT/tools/${cmd//-/_}.py" "$@" ;;
  psn|main)
    # psn.main writes to work/ in the checkout by default, which is read-only here.
    for a in "$@"; do case "$a" in --out|--out=*) exec python -m psn.main "$@" ;; esac; done
    exec python -m psn.main --out /data/work "$@" ;;
  help|_h|__help) usage ;;
  *) exec "$cmd" "$@" ;;
esac
