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

cmd=${1:-help}
[ $# -gt 0 ] && shift
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
