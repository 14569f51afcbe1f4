#!/usr/bin/env bash
# The GPU check, run on a GPU host from the bundle tools/gpu_bundle.sh packs (no build tree,
# no apt, no network there):
#
#   bash gpu_check.sh BUNDLE [--out DIR] [--iters N] [--time-iters N] [--engine caffe]
#                      [--fold-iters N] [--folds-per-gpu K|auto] [--no-folds]
#   bash gpu_check.sh --cpu BUNDLE [--out DIR]     the same without a GPU: libraries, CPU
#                                                  gtests, CPU timings (gpu_bundle.sh --verify)
#   --engine caffe: time and train PSN with Caffe's own layers on the GPU, not cuDNN's
#                   (to tell a cuDNN problem from a Caffe one; --cpu always does this)
#
# BUNDLE: the unpacked folder or psn-gpu-bundle.tar.xz. Steps, each timed:
#   1. the host: a GPU (nvidia-smi) whose driver supports the bundle's CUDA major version;
#      cuBLAS, cuRAND and cuDNN found in the host's Python packages (nvidia/*/lib), in
#      CUDA_LIBS (colon-separated folders), /usr/local/cuda or LD_LIBRARY_PATH;
#   2. ldd: every binary finds every library;
#   3. the gtests of the TPU (forward against the CPU reference, gradient checks) and of the
#      prefetching data layer (the same rows as HDF5Data), on the GPU
#      (float, double) and on the CPU;
#   4. `caffe time -gpu 0` of PSN at full width (batch 5 clips x 16 frames): ms per
#      forward/backward, per layer and per stream (streams.json); again with Caffe's own
#      HDF5Data in place of the prefetching data layer, for the data layer's cost;
#   5. one fold of the paper's schedule (fold 1 of the bundle's synthetic set) cut to N
#      iterations (default 500), timed, with the full 3000-iteration fold extrapolated;
#   6. the TPU alone at PSN's size: the C++ layer on the GPU and on the CPU, and the Python
#      fallback's numpy forward+backward (host python3 with numpy; pycaffe is not bundled).
#   7. the bundle's ten folds (data/: 10 subjects, leave one out) through the project's own
#      tools with the host's python3: tools/run_folds.py at full width, the paper's schedule
#      cut to --fold-iters iterations (default 3000: the whole schedule; 2 with --cpu), K folds
#      at once on the GPU (--folds-per-gpu K|auto, default auto; --cpu: 2 CPU jobs), then
#      tools/report.py (six and jsonschema from the bundle where the host lacks them). The
#      caffe binary trains; prediction goes through onnxruntime (the host
#      has no Boost.Python for pycaffe). Skipped, with a line, where python3 lacks numpy, h5py,
#      scipy, protobuf, onnx, onnxruntime, scikit-learn or matplotlib, or with --no-folds.
# Output: DIR/gpu_check.json, DIR/gpu_check.md (the README's table) and the logs (default
# DIR: ./gpu_check_out). Took 57-96 s on an H200 (161 s with --iters 3000).
set -euo pipefail
die() { echo "gpu_check: $*" >&2; exit 2; }
log() { echo "[gpu_check $(date +%H:%M:%S)] $*" >&2; }
# Caffe's GPU 0 is nvidia-smi's GPU SMI_GPU (whose name and free memory are read below): CUDA
# counts in nvidia-smi's order only when told (psn.env.number_gpus_as_nvidia_smi), and its
# GPU 0 is the first entry of CUDA_VISIBLE_DEVICES, an index or a GPU UUID (or the UUID's
# first characters), resolved in step 1 as psn.gpu_memory.visible_as_smi does.
export CUDA_DEVICE_ORDER=PCI_BUS_ID
FIRST_VISIBLE=${CUDA_VISIBLE_DEVICES-0}
FIRST_VISIBLE=${FIRST_VISIBLE%%,*}
FIRST_VISIBLE=${FIRST_VISIBLE//[[:space:]]/}
SMI_GPU=$FIRST_VISIBLE

MODE=gpu
BUNDLE=""
OUTDIR=$PWD/gpu_check_out
ITERS=500
TIME_ITERS=50
ENGINE=cudnn
FOLDS=1
FOLD_ITERS=""
PER_GPU=auto
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) MODE=cpu ;;
    --out) OUTDIR=$2; shift ;;
    --iters) ITERS=$2; shift ;;
    --time-iters) TIME_ITERS=$2; shift ;;
    --no-folds) FOLDS=0 ;;
    --fold-iters) FOLD_ITERS=$2; shift ;;
    --folds-per-gpu) PER_GPU=$2; shift ;;
    --engine) ENGINE=${2:-}; shift
              case "$ENGINE" in caffe|cudnn) ;; *) die "--engine takes caffe or cudnn, not '$ENGINE'" ;; esac ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) BUNDLE=$1 ;;
  esac
  shift
done
[ -n "$BUNDLE" ] || BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
if [ -f "$BUNDLE" ]; then
  log "unpacking $BUNDLE"
  tar -C "$OUTDIR" -xJf "$BUNDLE" || die "$BUNDLE is not a bundle tar.xz (tools/gpu_bundle.sh makes one)"
  BUNDLE="$OUTDIR/psn-gpu-bundle"
fi
B=$(cd "$BUNDLE" 2>/dev/null && pwd) || die "no bundle folder $BUNDLE"
[ -x "$B/bin/caffe.bin" ] && [ -f "$B/BUNDLE_INFO" ] || die "$B is not a psn-caffe GPU bundle (no bin/caffe.bin or BUNDLE_INFO): make one with tools/gpu_bundle.sh"
info() { sed -n "s/^$1: //p" "$B/BUNDLE_INFO"; }
# What the bundle was cut from: the image (tag@id), or for an older bundle the project's commit.
FROM_WHAT=$(info image | awk '{print $1 "@" substr($2, 1, 12)}')
FROM_WHAT=${FROM_WHAT:-$(info project)}
T_START=$(date +%s)

# ---------------------------------------------------------------- 1. host
GPU_NAME=""; DRIVER=""; DRIVER_CUDA=""
if [ "$MODE" = gpu ]; then
  command -v nvidia-smi >/dev/null || die "no nvidia-smi: this host has no NVIDIA driver (gpu_check.sh --cpu checks the bundle without a GPU)"
  if ! [[ "$FIRST_VISIBLE" =~ ^[0-9]+$ ]]; then
    SMI_GPU=$(nvidia-smi --query-gpu=index,uuid --format=csv,noheader 2>/dev/null \
              | awk -F', *' -v p="$FIRST_VISIBLE" 'p ~ /^GPU-/ && index($2, p) == 1 {print $1}') || true
    [[ "$SMI_GPU" =~ ^[0-9]+$ ]] || die "CUDA_VISIBLE_DEVICES (${CUDA_VISIBLE_DEVICES}) starts with '${FIRST_VISIBLE}', which names no single GPU that nvidia-smi lists: give that GPU's index or UUID (nvidia-smi -L; a MIG device is not checked)"
  fi
  GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader -i "$SMI_GPU" 2>/dev/null | head -n1) || true
  [ -n "$GPU_NAME" ] || die "nvidia-smi lists no GPU ${SMI_GPU} on this host (CUDA_VISIBLE_DEVICES: ${CUDA_VISIBLE_DEVICES:-unset})"
  DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n1)
  DRIVER_CUDA=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9][0-9.]*\).*/\1/p' | head -n1)
  need=$(info cuda_major)
  [ -n "$DRIVER_CUDA" ] || die "nvidia-smi does not say which CUDA version the driver supports"
  [ "${DRIVER_CUDA%%.*}" -ge "${need:-0}" ] || die "the driver ($DRIVER) supports CUDA $DRIVER_CUDA; the bundle is built with CUDA $need: update the driver (CUDA 13 needs 580 or newer)"
  log "GPU: $GPU_NAME, driver $DRIVER (CUDA $DRIVER_CUDA)"
fi
search=()
IFS=: read -r -a from_env <<< "${CUDA_LIBS:-}"
search+=("${from_env[@]}")
if command -v python3 >/dev/null; then
  while read -r sp; do
    for d in "$sp"/nvidia/*/lib; do [ -d "$d" ] && search+=("$d"); done
  done < <(python3 -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))' 2>/dev/null || true)
fi
IFS=: read -r -a from_ld <<< "${LD_LIBRARY_PATH:-}"
search+=(/usr/local/cuda/lib64 "${from_ld[@]}")
LIBPATH="$B/lib"
for lib in $(info host_libraries); do
  found=""
  for d in "${search[@]}"; do
    [ -n "$d" ] && [ -e "$d/$lib" ] && { found=$d; break; }
  done
  [ -n "$found" ] || die "no $lib on this host: install NVIDIA's wheel (pip install nvidia-cublas nvidia-curand nvidia-cudnn-cu13) or set CUDA_LIBS to the folders holding it"
  case ":$LIBPATH:" in *":$found:"*) ;; *) LIBPATH="$LIBPATH:$found" ;; esac
done
export LD_LIBRARY_PATH="$LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
log "libraries: $LIBPATH"

# ---------------------------------------------------------------- 2. ldd
missing=$(for f in "$B"/bin/caffe.bin "$B"/test/*.testbin "$B"/lib/*.so*; do
            ldd "$f" 2>&1 | grep "not found" | sed "s|^|$(basename "$f"): |"; done || true)
[ -z "$missing" ] || die "libraries not found: $(echo "$missing" | tr '\n' ';' | tr -s ' \t' ' ')"
log "ldd: every binary finds every library"

# Caffe's INFO lines carry every number read below.
export GLOG_logtostderr=1 GLOG_minloglevel=0 GLOG_log_year_in_prefix=false
CAFFE="$B/bin/caffe.bin"
GPU_FLAG=(); [ "$MODE" = gpu ] && GPU_FLAG=(-gpu 0)
secs() { echo $(( $(date +%s) - $1 )); }

# ---------------------------------------------------------------- 3. gtests
log "gtests: the TPU and the prefetching data layer"
t=$(date +%s)
: > "$OUTDIR/gtest.log"
GTEST_PASSED=0; GTEST_GPU=0
run_gtests() {   # BINARY CASE [CPU-EXCLUDE]: CASE's typed tests on the CPU (float /0, double /1),
                 # in GPU mode also on the GPU (/2, /3); adds to GTEST_PASSED and GTEST_GPU
  local filter="$2/0.*:$2/1.*${3:+:-$3}" rc n gpu
  [ "$MODE" = gpu ] && filter="$2/*"
  set +e
  "$B/test/$1" --gtest_filter="$filter" >> "$OUTDIR/gtest.log" 2>&1
  rc=$?
  set -e
  [ "$rc" = 0 ] || { tail -n 30 "$OUTDIR/gtest.log" >&2; die "$2 gtests failed (exit $rc; $OUTDIR/gtest.log)"; }
  n=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) tests\{0,1\}\..*/\1/p' "$OUTDIR/gtest.log" | tail -n1)
  gpu=$(grep -c "^\[       OK \] $2/[23]\." "$OUTDIR/gtest.log" || true)
  [ "$MODE" = cpu ] || [ "${gpu:-0}" -gt 0 ] || die "no GPU case of $2 ran ($OUTDIR/gtest.log)"
  GTEST_PASSED=$(( GTEST_PASSED + ${n:-0} ))
  GTEST_GPU=$(( GTEST_GPU + ${gpu:-0} ))
}
# Without a GPU, not the TPU case that checks mode RNN against Caffe's RNN layer: in a cuDNN
# build that layer's TanH is cuDNN's, which needs a GPU even in CPU mode.
run_gtests test_tpu_layer.testbin TPULayerTest '*.TestRNNModeEqualsRNNLayer'
# The data layer the folds read their shards with: the same rows as HDF5Data, on the device
# in GPU mode.
run_gtests test_hdf5_prefetch_data_layer.testbin HDF5PrefetchDataLayerTest
GTEST_S=$(secs "$t")
log "  ${GTEST_PASSED:-0} passed (${GTEST_GPU:-0} on the GPU) in ${GTEST_S} s"

# ---------------------------------------------------------------- 4. caffe time
RUN="$OUTDIR/run"
rm -rf "$RUN"; cp -aL "$B/run" "$RUN"     # -L: run/data links to the bundle's data/shards
NET=train_val.prototxt
# Caffe's own engines: always without a GPU (a cuDNN layer fails there, whatever the mode).
[ "$MODE" = cpu ] && ENGINE=caffe
[ "$ENGINE" = caffe ] && NET=train_val_cpu.prototxt
sed -i -e "s/^net: .*/net: \"$NET\"/" "$RUN/solver.prototxt"
if [ "$MODE" = cpu ]; then
  TIME_ITERS=2
  sed -i -e 's/^solver_mode: GPU/solver_mode: CPU/' "$RUN/solver.prototxt"
fi
log "caffe time: PSN, full width, $ENGINE engines, $TIME_ITERS iterations"
t=$(date +%s)
(cd "$RUN" && "$CAFFE" time -model "$NET" "${GPU_FLAG[@]}" -iterations "$TIME_ITERS") \
  > "$OUTDIR/time_psn.log" 2>&1 || { tail -n 20 "$OUTDIR/time_psn.log" >&2; die "caffe time failed ($OUTDIR/time_psn.log)"; }
TIME_S=$(secs "$t")
avg() { sed -n "s/.*Average $1: \([0-9.]*\) ms.*/\1/p" "$2" | tail -n1; }
PSN_FWD=$(avg "Forward pass" "$OUTDIR/time_psn.log")
PSN_BWD=$(avg "Backward pass" "$OUTDIR/time_psn.log")
PSN_FB=$(avg "Forward-Backward" "$OUTDIR/time_psn.log")
# Per layer "NAME<TAB>forward: X ms." of a caffe time log -> "STREAM_DIRECTION ms" lines,
# with streams.json's map (the data stream is the data layer alone).
stream_ms() {
  awk '
  FNR == NR { if (match($0, /"[^"]+": "[a-z]+"/)) { split(substr($0, RSTART, RLENGTH), kv, "\""); s[kv[2]] = kv[4] } next }
  /\t(forward|backward): [0-9.]+ ms\./ {
    line = $0; sub(/^.*\] */, "", line); split(line, f, "\t"); name = f[1]; gsub(/ /, "", name)
    split(f[2], v, " "); dir = v[1]; sub(/:/, "", dir); st = (name in s) ? s[name] : "other"
    ms[st "_" dir] += v[2]
  }
  END { for (k in ms) printf "%s %.3f\n", k, ms[k] }' "$RUN/streams.json" "$1" | sort
}
STREAM_MS=$(stream_ms "$OUTDIR/time_psn.log")
# KEY [TABLE]: TABLE given but empty (a log without per-layer lines) gives nothing, not this run's.
stream() { echo "${2-$STREAM_MS}" | awk -v k="$1" '$1 == k {print $2}'; }
log "  forward ${PSN_FWD} ms, backward ${PSN_BWD} ms, forward-backward ${PSN_FB} ms per iteration"
# The same net through Caffe's own HDF5Data, in the same run: what the prefetching data layer
# (HDF5PrefetchData, which the folds read with) takes off the training thread.
sed -e 's/type: "HDF5PrefetchData"/type: "HDF5Data"/' "$RUN/$NET" > "$RUN/hdf5data_$NET"
(cd "$RUN" && "$CAFFE" time -model "hdf5data_$NET" "${GPU_FLAG[@]}" -iterations "$TIME_ITERS") \
  > "$OUTDIR/time_psn_hdf5data.log" 2>&1 || { tail -n 20 "$OUTDIR/time_psn_hdf5data.log" >&2; die "caffe time with HDF5Data failed ($OUTDIR/time_psn_hdf5data.log)"; }
DATA_TYPE=$(grep -o 'type: "HDF5[A-Za-z]*Data"' "$RUN/$NET" | head -n1 | cut -d'"' -f2)
DATA_MS=$(stream data_forward)
STOCK_DATA_MS=$(stream data_forward "$(stream_ms "$OUTDIR/time_psn_hdf5data.log")")
STOCK_FB=$(avg "Forward-Backward" "$OUTDIR/time_psn_hdf5data.log")
log "  data layer forward: ${DATA_MS:-?} ms (${DATA_TYPE:-?}), ${STOCK_DATA_MS:-?} ms (HDF5Data, forward-backward ${STOCK_FB:-?} ms)"

# ---------------------------------------------------------------- 5. one fold, truncated
[ "$MODE" = gpu ] || ITERS=2
log "training: fold 1, the paper's schedule cut to $ITERS iterations"
sed -i -e "s/^max_iter: .*/max_iter: $ITERS/" -e "s/^snapshot: .*/snapshot: $ITERS/" "$RUN/solver.prototxt"
mkdir -p "$RUN/snapshots"
t=$(date +%s)
(cd "$RUN" && "$CAFFE" train -solver solver.prototxt "${GPU_FLAG[@]}") > "$OUTDIR/train.log" 2>&1 \
  || { tail -n 20 "$OUTDIR/train.log" >&2; die "caffe train failed ($OUTDIR/train.log)"; }
TRAIN_S=$(secs "$t")
[ -f "$RUN/snapshots/psn_iter_$ITERS.caffemodel" ] || die "caffe train wrote no psn_iter_$ITERS.caffemodel ($OUTDIR/train.log)"
LOSS=$(sed -n 's/.*Iteration [0-9]* ([^)]*), loss = \([0-9.e+-]*\).*/\1/p; s/.*Iteration [0-9]*, loss = \([0-9.e+-]*\).*/\1/p' "$OUTDIR/train.log" | tail -n1)
LOSS0=$(sed -n 's/.*Iteration 0 ([^)]*), loss = \([0-9.e+-]*\).*/\1/p; s/.*Iteration 0, loss = \([0-9.e+-]*\).*/\1/p' "$OUTDIR/train.log" | head -n1)
# The solver's own time (the N iterations, the tests and the final snapshot, not the net's
# set-up): from glog's stamps of "Starting Optimization" to "Optimization Done".
stamp() { { grep -m1 "$1" "$OUTDIR/train.log" || true; } | awk '{print $2}'; }
to_s() { awk -F: '{printf "%.3f", $1 * 3600 + $2 * 60 + $3}' <<< "$1"; }
first=$(stamp "Starting Optimization"); last=$(stamp "Optimization Done")
LOOP_S=$(awk -v a="$(to_s "${first:-0:0:0}")" -v b="$(to_s "${last:-0:0:0}")" 'BEGIN {d = b - a; if (d < 0) d += 86400; printf "%.1f", d}')
MS_ITER=$(awk -v s="$LOOP_S" -v n="$ITERS" 'BEGIN {printf "%.1f", 1000 * s / n}')
FOLD_MIN=$(awk -v ms="$MS_ITER" 'BEGIN {printf "%.1f", ms * 3000 / 60000}')
log "  ${TRAIN_S} s in all, ${MS_ITER} ms per iteration; a 3000-iteration fold ~${FOLD_MIN} min"

# ---------------------------------------------------------------- 6. the TPU alone
log "TPU alone: C++$( [ "$MODE" = gpu ] && echo ' on the GPU and') on the CPU, Python fallback"
t=$(date +%s)
TPU_ITERS=20; [ "$MODE" = gpu ] || TPU_ITERS=2
if [ "$MODE" = gpu ]; then
  (cd "$RUN" && "$CAFFE" time -model tpu.prototxt -gpu 0 -iterations "$TPU_ITERS") > "$OUTDIR/time_tpu_gpu.log" 2>&1 \
    || die "caffe time of the TPU on the GPU failed ($OUTDIR/time_tpu_gpu.log)"
fi
(cd "$RUN" && "$CAFFE" time -model tpu.prototxt -iterations 2) > "$OUTDIR/time_tpu_cpu.log" 2>&1 \
  || die "caffe time of the TPU on the CPU failed ($OUTDIR/time_tpu_cpu.log)"
TPU_GPU=""; [ "$MODE" = gpu ] && TPU_GPU=$(avg "Forward-Backward" "$OUTDIR/time_tpu_gpu.log")
TPU_CPU=$(avg "Forward-Backward" "$OUTDIR/time_tpu_cpu.log")
TPU_PY=""
if command -v python3 >/dev/null && python3 -c 'import numpy' 2>/dev/null; then
  TPU_PY=$(PYTHONPATH="$B/python" python3 - "$RUN/run.json" <<'PYEOF'
import json, sys, time
import numpy as np
import psn_tpu_fallback as tpu
s = json.load(open(sys.argv[1]))["tpu"]
T, N, D, H = s["T"], s["N"], s["D"], s["H"]
rng = np.random.RandomState(0)
x = rng.randn(T, N, D).astype(np.float32)
cont = np.ones((T, N), np.float32); cont[0] = 0
params = [(0.01 * rng.randn(*shape)).astype(np.float32) for shape in
          [(H, D), (H,), (H, H), (H, H), (H,), (H, H), (H,)]]
times = []
for _ in range(3):
    t0 = time.perf_counter()
    y, cache = tpu.forward(x, cont, params)
    tpu.backward(np.ones_like(y), cache, params)
    times.append(time.perf_counter() - t0)
print("%.1f" % (1000 * min(times)))
PYEOF
) || TPU_PY=""
fi
TPU_S=$(secs "$t")
log "  TPU forward+backward: C++ GPU ${TPU_GPU:--} ms, C++ CPU ${TPU_CPU} ms, Python fallback ${TPU_PY:--} ms"

# ---------------------------------------------------------------- 7. the ten folds
FOLDS_RAN=false; FOLDS_WHY=""; FOLDS_S=""; FOLDS_N=""; FOLDS_K=""; FOLD_MEDIAN_S=""; FOLDS_RR=""; FOLDS_UF1=""
[ -n "$FOLD_ITERS" ] || { FOLD_ITERS=3000; [ "$MODE" = gpu ] || FOLD_ITERS=2; }
if [ "$FOLDS" = 0 ]; then FOLDS_WHY="--no-folds"
elif [ ! -d "$B/project" ] || [ ! -d "$B/data" ]; then FOLDS_WHY="this bundle carries no project/ and data/ (cut it again with tools/gpu_bundle.sh)"
elif ! command -v python3 >/dev/null; then FOLDS_WHY="no python3 on this host"
elif ! python3 -c 'import numpy, h5py, scipy, google.protobuf, onnx, onnxruntime, sklearn, matplotlib' > "$OUTDIR/folds_python.log" 2>&1; then
  FOLDS_WHY="python3 cannot import what run_folds needs: $(tail -n1 "$OUTDIR/folds_python.log")"
fi
if [ -n "$FOLDS_WHY" ]; then
  log "folds: skipped ($FOLDS_WHY)"
else
  FOLDS_OUT="$OUTDIR/folds"
  rm -rf "$FOLDS_OUT"
  DEV=(--jobs 2)
  if [ "$MODE" = gpu ]; then
    if [ "$PER_GPU" = auto ]; then
      # run_folds' auto needs pycaffe to estimate a fold's memory, which this host lacks:
      # the bundle carries the estimate (psn.gpu_memory, made where it was cut).
      need=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("fold_mib_estimate", ""))' "$B/run/run.json")
      free=$(nvidia-smi --query-gpu=memory.total,memory.used --format=csv,noheader,nounits -i "$SMI_GPU" | awk -F', *' '{print $1 - $2}')
      folds_n=$(find "$B/data/folds" -mindepth 1 -maxdepth 1 -type d -name 'fold*' | wc -l)
      if [ -n "$need" ] && [ -n "$free" ]; then
        PER_GPU=$(awk -v f="$free" -v n="$need" -v k="$folds_n" 'BEGIN {m = int(f / n); if (m > k) m = k; print m}')
        [ "$PER_GPU" -ge 1 ] || die "GPU ${SMI_GPU} (nvidia-smi's count) has ${free} MiB free; one fold needs about ${need} MiB (estimated): free the GPU"
        log "  ${PER_GPU} folds at once: ${free} MiB free on GPU ${SMI_GPU} (nvidia-smi's count), about ${need} MiB a fold (estimated when the bundle was cut)"
      fi
    fi
    DEV=(--gpus 0 --per-gpu "$PER_GPU")
  fi
  log "folds: tools/run_folds.py, PSN full width, $FOLD_ITERS iterations a fold, ${DEV[*]}, then tools/report.py"
  t=$(date +%s)
  # The project's tools, the bundle's Caffe (PSN_CAFFE_HOME: bin/caffe, BUILD_INFO) and its
  # plain-Python caffe_pb2. The vendored packages only where the host lacks them: on
  # PYTHONPATH they would shadow the host's own (its attrs, typing_extensions).
  VENDOR=""
  python3 -c 'import six, jsonschema' 2>/dev/null || VENDOR="$B/python/vendor"
  (
    export PSN_CAFFE_HOME="$B" PATH="$B/bin:$PATH" MPLBACKEND=Agg MPLCONFIGDIR="$OUTDIR/mpl"
    export PYTHONPATH="$B/project:$B/project/layers:$B/python${PYTHONPATH:+:$PYTHONPATH}${VENDOR:+:$VENDOR}"
    unset GLOG_logtostderr GLOG_minloglevel
    python3 "$B/project/tools/run_folds.py" --data "$B/data" --model psn --schedule paper \
      --width 1 --max-iter "$FOLD_ITERS" "${DEV[@]}" --out "$FOLDS_OUT" \
      && python3 "$B/project/tools/report.py" "$FOLDS_OUT/predictions.csv" --logs "$FOLDS_OUT" \
           --out "$FOLDS_OUT/report"
  ) > "$OUTDIR/folds.log" 2>&1 || { tail -n 30 "$OUTDIR/folds.log" >&2; die "the folds through run_folds failed ($OUTDIR/folds.log)"; }
  FOLDS_S=$(secs "$t")
  FOLDS_RAN=true
  FOLDS_N=$(grep -c 'fold [0-9]*: trained ' "$OUTDIR/folds.log" || true)
  FOLDS_K=$(sed -n 's/.*--per-gpu auto: \([0-9]*\) folds at once.*/\1/p' "$OUTDIR/folds.log" | head -n1)
  [ -n "$FOLDS_K" ] || { FOLDS_K=2; [ "$MODE" = gpu ] && FOLDS_K=$PER_GPU; }
  FOLD_MEDIAN_S=$(sed -n 's/.*fold [0-9]*: trained [0-9]* iterations (\([0-9.]*\) s).*/\1/p' "$OUTDIR/folds.log" \
                  | sort -n | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]}')
  # report.py's line: "<run> RR 30.00 % (fold mean ...)  UF1 0.1825 (fold mean ...)  UAR ..."
  FOLDS_RR=$(sed -n 's/.* RR \([0-9.]*\) % (fold mean.*/\1/p' "$OUTDIR/folds.log" | head -n1)
  FOLDS_UF1=$(sed -n 's/.* RR [0-9.]* % (fold mean.* UF1 \([0-9.]*\) (fold mean.*/\1/p' "$OUTDIR/folds.log" | head -n1)
  [ -s "$FOLDS_OUT/report/report.md" ] || die "tools/report.py wrote no report ($OUTDIR/folds.log)"
  log "  ${FOLDS_N} folds in ${FOLDS_S} s, ${FOLDS_K} at once, a fold's training ${FOLD_MEDIAN_S} s (median); RR ${FOLDS_RR} %, UF1 ${FOLDS_UF1}"
fi

# ---------------------------------------------------------------- record
TOTAL_S=$(secs "$T_START")
num() { [ -n "$1" ] && echo "$1" || echo null; }
str() { printf '"%s"' "$(printf %s "$1" | sed 's/"/\\"/g')"; }
cat > "$OUTDIR/gpu_check.json.tmp" <<EOF
{
  "mode": "$MODE", "engine": "$ENGINE",
  "gpu": $(str "$GPU_NAME"), "driver": $(str "$DRIVER"), "driver_cuda": $(str "$DRIVER_CUDA"),
  "bundle": {"caffe": $(str "$(info caffe)"), "project": $(str "$(info project)"), "image": $(str "$(info image)"), "packed": $(str "$(info packed)")},
  "gtest": {"passed": $(num "$GTEST_PASSED"), "gpu_cases": $(num "$GTEST_GPU"), "seconds": $GTEST_S},
  "psn_time": {"iterations": $TIME_ITERS, "forward_ms": $(num "$PSN_FWD"), "backward_ms": $(num "$PSN_BWD"),
               "forward_backward_ms": $(num "$PSN_FB"), "seconds": $TIME_S,
               "spatial_forward_ms": $(num "$(stream spatial_forward)"), "spatial_backward_ms": $(num "$(stream spatial_backward)"),
               "temporal_forward_ms": $(num "$(stream temporal_forward)"), "temporal_backward_ms": $(num "$(stream temporal_backward)"),
               "head_forward_ms": $(num "$(stream head_forward)"), "head_backward_ms": $(num "$(stream head_backward)"),
               "data_forward_ms": $(num "$(stream data_forward)"), "data_layer": $(str "$DATA_TYPE"),
               "data_layer_forward_ms": $(num "$DATA_MS"), "hdf5data_data_layer_forward_ms": $(num "$STOCK_DATA_MS"),
               "hdf5data_forward_backward_ms": $(num "$STOCK_FB")},
  "train": {"iterations": $ITERS, "seconds": $TRAIN_S, "loop_seconds": $LOOP_S, "ms_per_iteration": $MS_ITER,
            "fold_3000_minutes": $FOLD_MIN, "first_loss": $(num "$LOSS0"), "last_loss": $(num "$LOSS")},
  "tpu": {"cpp_gpu_ms": $(num "$TPU_GPU"), "cpp_cpu_ms": $(num "$TPU_CPU"), "python_fallback_ms": $(num "$TPU_PY"), "seconds": $TPU_S},
  "folds": {"ran": $FOLDS_RAN, "skipped_because": $(str "$FOLDS_WHY"), "folds": $(num "$FOLDS_N"), "at_once": $(num "$FOLDS_K"),
            "iterations": $FOLD_ITERS, "seconds": $(num "$FOLDS_S"), "fold_median_seconds": $(num "$FOLD_MEDIAN_S"),
            "rr_percent": $(num "$FOLDS_RR"), "uf1": $(num "$FOLDS_UF1")},
  "total_seconds": $TOTAL_S
}
EOF
mv "$OUTDIR/gpu_check.json.tmp" "$OUTDIR/gpu_check.json"
dev=${GPU_NAME:-CPU}
cat > "$OUTDIR/gpu_check.md" <<EOF
| measured on $dev (driver ${DRIVER:--}, CUDA ${DRIVER_CUDA:--}), bundle $FROM_WHAT, $ENGINE engines | value |
|---|---|
| gtests passed, TPU and prefetching data layer (of them on the GPU) | ${GTEST_PASSED:-0} (${GTEST_GPU:-0}) |
| PSN full width, batch 5 x 16 frames: forward / backward / both, ms | ${PSN_FWD:--} / ${PSN_BWD:--} / ${PSN_FB:--} |
| data layer forward, ms: ${DATA_TYPE:--} / Caffe's HDF5Data (forward-backward with it, ms) | ${DATA_MS:--} / ${STOCK_DATA_MS:--} (${STOCK_FB:--}) |
| spatial stream forward / backward, ms | $(stream spatial_forward) / $(stream spatial_backward) |
| temporal stream (TPU) forward / backward, ms | $(stream temporal_forward) / $(stream temporal_backward) |
| fusion and head forward / backward, ms | $(stream head_forward) / $(stream head_backward) |
| training, paper schedule: ms per iteration ($ITERS iterations) | $MS_ITER |
| training loss, iteration 0 / last displayed | ${LOSS0:--} / ${LOSS:--} |
| one 3000-iteration fold, extrapolated, min | $FOLD_MIN |
| TPU alone forward+backward: C++ GPU / C++ CPU / Python fallback, ms | ${TPU_GPU:--} / ${TPU_CPU:--} / ${TPU_PY:--} |
| the ten folds through tools/run_folds.py ($FOLD_ITERS iterations each, ${FOLDS_K:--} at once): wall / a fold's training (median), s | ${FOLDS_S:-skipped} / ${FOLD_MEDIAN_S:--} |
| their report (tools/report.py): RR % / UF1 | ${FOLDS_RR:--} / ${FOLDS_UF1:--} |
| the whole check, s | $TOTAL_S |
EOF
log "done in ${TOTAL_S} s: $OUTDIR/gpu_check.json, $OUTDIR/gpu_check.md"
cat "$OUTDIR/gpu_check.md"
