#!/usr/bin/env bash
# Opt-in check that an image builds and runs: the CPU image (tools/run_tests.sh --image), or
# with --gpu the CUDA image of the wheels base (no GPU needed to build or check it):
#
#   1. the base: `debian:12` as the engine has it; else pulled; else (no registry, as on an
#      air-gapped site) made with debootstrap from the Debian mirror this machine's apt uses
#      and tagged debian:12, so the FROM line resolves without a registry;
#   2. docker/Dockerfile.cpu (--gpu: docker/Dockerfile.gpu with BASE=wheels, CUDA 13 from
#      NVIDIA's PyPI wheels) built with `docker build` where a Docker daemon answers, else
#      with `buildah bud` (chroot isolation, vfs storage: no daemon, no overlay mounts);
#      the host's CA bundle goes in as the build secret `ca` (pip, git and curl trust it
#      during the downloading steps; it is never written into a layer);
#   3. inside the image, as uid 1000 with a host folder at /data: the fast test tier,
#      tools/make_synthetic.py, and a smoke-size preprocess -> run_folds -> report.
#      --gpu instead: the entry point's driver check (a fake nvidia-smi reporting an old
#      driver must be refused in one line), the fast test tier, the GPU bundle cut from the
#      image (tools/gpu_bundle.sh --image) and its check without a GPU (gpu_check.sh --cpu)
#      run inside the image.
# It prints the build time, the image size and each step's time, and writes them to
# DATA/check_image.json.
#
# Options:
#   --data DIR         host folder mounted at /data (default: a new folder under /var/tmp)
#   --tag NAME         image name (default localhost/psn-caffe:cpu; --gpu: localhost/psn-caffe:gpu)
#   --gpu              the CUDA image (BASE=wheels) instead of the CPU one
#   --cuda-arch LIST   --gpu: the nvcc -gencode list (default sm_90 only: the GPUs this project's
#                      checks run on, and a 2-core build of one arch takes minutes, not an
#                      hour); "image" builds the Dockerfile's own list (sm_75 to sm_90 + PTX)
#   --ca-bundle FILE   CA bundle for the build (default /etc/ssl/certs/ca-certificates.crt
#                      when it exists); --no-ca-bundle: none
#   --base auto|pull|debootstrap   where debian:12 comes from (default auto: the engine's
#                      copy, else pull, else debootstrap)
#   --no-cache         rebuild every layer
# Needs: root with buildah (Debian 12: apt-get install buildah), or a Docker daemon;
# debootstrap for a base without a registry; about MIN_FREE_GB (below) free for vfs, which
# stores every layer as a full copy.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/header_help.sh
. "$ROOT/tools/header_help.sh"
# shellcheck source=tools/caffe_tree.sh
. "$ROOT/tools/caffe_tree.sh"   # debian_mirror
die() { echo "check_image: $*" >&2; exit 2; }
log() { echo "[check_image] $*" >&2; }

DATA=""
TAG=""
VARIANT=cpu
CUDA_ARCH_LIST="-gencode arch=compute_90,code=sm_90"
CA=/etc/ssl/certs/ca-certificates.crt
[ -f "$CA" ] || CA=""
BASE=auto
NO_CACHE=()
# Measured here: after the first build vfs holds 7.4 GB (every layer a full copy: the base,
# the apt and pip layers, Caffe, the project); a rebuild of the later layers adds more copies.
MIN_FREE_GB=${PSN_IMAGE_MIN_FREE_GB:-15}
BASE_IMAGE=docker.io/library/debian:12

while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA=$2; shift ;;
    --tag) TAG=$2; shift ;;
    --gpu) VARIANT=gpu ;;
    --cuda-arch) CUDA_ARCH_LIST=$2; shift ;;
    --ca-bundle) CA=$2; shift; [ -f "$CA" ] || die "--ca-bundle $CA: no such file" ;;
    --no-ca-bundle) CA="" ;;
    --base) BASE=$2; shift
            case "$BASE" in auto|pull|debootstrap) ;; *) die "--base must be auto, pull or debootstrap" ;; esac ;;
    --no-cache) NO_CACHE=(--no-cache) ;;
    -h|--help) header_help "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done

DOCKERFILE=$ROOT/docker/Dockerfile.$VARIANT
[ -n "$TAG" ] || TAG=localhost/psn-caffe:$VARIANT
BUILD_ARGS=()
LAYERS=(--layers)
if [ "$VARIANT" = gpu ]; then
  BUILD_ARGS=(--build-arg BASE=wheels)
  [ "$CUDA_ARCH_LIST" = image ] || BUILD_ARGS+=(--build-arg "CUDA_ARCH=$CUDA_ARCH_LIST")
  # vfs stores every layer as a full copy of the tree: with a layer per step the CUDA image
  # (3.7 GB) filled 28 GB by step 20 of 23 and the disk ran out here. So buildah commits it
  # as one layer over the base (no --layers, no layer cache: a rebuild starts from scratch).
  MIN_FREE_GB=${PSN_IMAGE_MIN_FREE_GB:-20}
  LAYERS=(--layers=false)
fi

# ---------------------------------------------------------------- engine
# shellcheck source=tools/image_engine.sh
. "$ROOT/tools/image_engine.sh"
detect_engine
mkdir -p "$STORE"
free_gb=$(( $(df -Pk "$STORE" | awk 'NR==2 {print $4}') / 1024 / 1024 ))
[ "$free_gb" -ge "$MIN_FREE_GB" ] || die "needs ${MIN_FREE_GB} GB free under $STORE (the engine's storage; vfs copies every layer), has ${free_gb} GB: free some, or set PSN_IMAGE_MIN_FREE_GB"
log "engine: $ENGINE (storage $STORE, ${free_gb} GB free)"

# ---------------------------------------------------------------- base
has_base() {
  if [ "$ENGINE" = docker ]; then docker image inspect debian:12 >/dev/null 2>&1
  else "${BUILDAH[@]}" inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; fi
}
pull_base() {
  log "pulling debian:12 (60 s limit)"
  if [ "$ENGINE" = docker ]; then timeout 60 docker pull -q debian:12 >/dev/null 2>&1
  else timeout 60 "${BUILDAH[@]}" pull -q "$BASE_IMAGE" >/dev/null 2>&1; fi
}
debootstrap_base() {
  command -v debootstrap >/dev/null || die "no registry answered and debootstrap is missing: apt-get install debootstrap (it makes the debian:12 base from the Debian archive)"
  local mirror rootfs
  mirror=$(debian_mirror)
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$(mktemp -d /var/tmp/psn-base.XXXXXX)
  log "making debian:12 with debootstrap (minbase, bookworm, $mirror)"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null \
    || die "debootstrap failed (its log: $rootfs/debootstrap/debootstrap.log)"
  # What the official image leaves out: package caches and lists.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  if [ "$ENGINE" = docker ]; then
    tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - debian:12 >/dev/null
  else
    local ctr
    ctr=$("${BUILDAH[@]}" from scratch)
    "${BUILDAH[@]}" copy "$ctr" "$rootfs" / >/dev/null
    "${BUILDAH[@]}" config --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
    "${BUILDAH[@]}" commit -q "$ctr" "$BASE_IMAGE" >/dev/null
    "${BUILDAH[@]}" rm "$ctr" >/dev/null
  fi
  rm -rf "$rootfs"
}
t0=$(date +%s)
BASE_FROM=present
if [ "$BASE" = debootstrap ]; then debootstrap_base; BASE_FROM=debootstrap
elif ! has_base; then
  if [ "$BASE" != debootstrap ] && pull_base; then BASE_FROM=pulled
  elif [ "$BASE" = pull ]; then die "could not pull debian:12 (no registry?): use --base debootstrap"
  else debootstrap_base; BASE_FROM=debootstrap; fi
fi
BASE_SECONDS=$(( $(date +%s) - t0 ))
log "base debian:12: $BASE_FROM (${BASE_SECONDS} s)"

# ---------------------------------------------------------------- build
SECRET=()
[ -n "$CA" ] && SECRET=(--secret "id=ca,src=$CA")
log "building docker/Dockerfile.$VARIANT ${BUILD_ARGS[*]} as $TAG${CA:+ (CA bundle $CA as build secret)}"
t0=$(date +%s)
if [ "$ENGINE" = docker ]; then
  DOCKER_BUILDKIT=1 docker build "${NO_CACHE[@]}" "${SECRET[@]}" "${BUILD_ARGS[@]}" -f "$DOCKERFILE" -t "$TAG" "$ROOT" >&2
else
  # docker format: OCI images have no SHELL, and the Dockerfile's RUN lines want bash.
  "${BUILDAH[@]}" bud --isolation chroot --format docker "${LAYERS[@]}" "${NO_CACHE[@]}" "${SECRET[@]}" \
    "${BUILD_ARGS[@]}" --ignorefile "$DOCKERFILE.dockerignore" \
    -f "$DOCKERFILE" -t "$TAG" "$ROOT" >&2
fi || die "the image build failed (the log above names the step)"
BUILD_SECONDS=$(( $(date +%s) - t0 ))
if [ "$ENGINE" = docker ]; then
  SIZE=$(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.2f GB", $1 / 1e9}')
else
  SIZE=$("${BUILDAH[@]}" images --noheading --format '{{.Size}}' "$TAG" | head -n1)
fi
STORE_GB=$(du -sk "$STORE" 2>/dev/null | awk '{printf "%.1f", $1 / 1048576}')
log "built in ${BUILD_SECONDS} s; image ${SIZE}; storage $STORE holds ${STORE_GB} GB"

# ---------------------------------------------------------------- run
if [ -z "$DATA" ]; then DATA=$(mktemp -d /var/tmp/psn-image-data.XXXXXX); fi
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
# The image's user is uid 1000; a host folder it writes to belongs to that uid (or is opened
# to it), as `docker run --user` users arrange for theirs.
chown 1000:1000 "$DATA" 2>/dev/null || chmod 0777 "$DATA"
CTR=""
cleanup() { [ -z "$CTR" ] || "${BUILDAH[@]}" rm "$CTR" >/dev/null 2>&1 || true; }
trap cleanup EXIT
if [ "$ENGINE" = buildah ]; then
  CTR=$("${BUILDAH[@]}" from -q "$TAG")
  # buildah run backs an image VOLUME with a private copy that hides a -v bind on the same
  # path (files written to /data never reached the host); docker run binds over it. Dropping
  # the volume from this working container lets the bind through.
  "${BUILDAH[@]}" config --volume /data- "$CTR"
fi
# in_image CMD...: the image's entry point with CMD, as uid 1000, /data mounted, cwd /data.
in_image() {
  if [ "$ENGINE" = docker ]; then
    docker run --rm --user 1000:1000 -v "$DATA:/data" "$TAG" "$@"
  else
    "${BUILDAH[@]}" run --isolation chroot --user 1000:1000 --workingdir /data \
      -v "$DATA:/data" "$CTR" -- /opt/psn-caffe/docker/entrypoint.sh "$@"
  fi
}
STEPS=()
step() {  # step NAME CMD...: run, time, record
  local name=$1; shift
  log "in the image: $name"
  local t
  t=$(date +%s)
  in_image "$@" > "$DATA/$name.log" 2>&1 || { tail -n 20 "$DATA/$name.log" >&2; die "step '$name' failed in the image (log: $DATA/$name.log)"; }
  local s=$(( $(date +%s) - t ))
  STEPS+=("$name $s")
  log "  $name: ${s} s"
}
# shellcheck disable=SC2016  # expanded by the container's bash, not here
step whoami bash -c 'test "$(id -u)" = 1000 && touch /data/.written && caffe --version'
[ -f "$DATA/.written" ] || die "a file written to /data in the image did not reach $DATA: the bind mount is not working"
if [ "$VARIANT" = gpu ]; then
  # shellcheck disable=SC2016  # expanded by the container's bash, not here
  step driver_check bash -c 'mkdir -p /tmp/old-driver && printf "#!/bin/sh\necho 470.82.01\n" > /tmp/old-driver/nvidia-smi && chmod +x /tmp/old-driver/nvidia-smi; out=$(PATH=/tmp/old-driver:$PATH /opt/psn-caffe/docker/entrypoint.sh caffe --version 2>&1); rc=$?; echo "$out"; [ "$rc" = 3 ] && [ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | grep -q "driver is 470.82.01.*needs driver >= $PSN_CUDA_DRIVER_MIN"'
fi
step fast_tests python -m pytest /opt/psn-caffe/tests -q -p no:cacheprovider \
  -m "not caffe and not cuda and not docker"
grep -q "passed" "$DATA/fast_tests.log" || die "the fast tier printed no result ($DATA/fast_tests.log)"
BUNDLE_MIB=""
if [ "$VARIANT" = gpu ]; then
  log "cutting the GPU bundle from the image"
  t=$(date +%s)
  "$ROOT/tools/gpu_bundle.sh" --image "$TAG" --out "$DATA/psn-gpu-bundle.tar.xz" 2> "$DATA/gpu_bundle.log" \
    || { tail -n 20 "$DATA/gpu_bundle.log" >&2; die "cutting the bundle failed (log: $DATA/gpu_bundle.log)"; }
  STEPS+=("gpu_bundle $(( $(date +%s) - t ))")
  BUNDLE_MIB=$(( $(stat -c %s "$DATA/psn-gpu-bundle.tar.xz") / 1048576 ))
  chmod a+r "$DATA/psn-gpu-bundle.tar.xz"
  step gpu_check_cpu bash /opt/psn-caffe/tools/gpu_check.sh --cpu /data/psn-gpu-bundle.tar.xz \
    --out /data/gpu_check_cpu
else
  step make_synthetic make_synthetic --out /data/synth --subjects 4 --clips-per-subject 6
  step preprocess preprocess run --casme2 /data/synth --out /data/prep --loso --lam standard \
    --augment flip --no-progress
  step run_folds run_folds --data /data/prep --model psn --schedule smoke --width 0.125 \
    --out /data/run --jobs 2
  step report report /data/run/predictions.csv --logs /data/run --out /data/report
  [ -s "$DATA/report/report.md" ] || die "the report step wrote no $DATA/report/report.md"
fi

# ---------------------------------------------------------------- record
{
  printf '{\n  "image": "%s",\n  "variant": "%s",\n  "build_args": "%s",\n  "bundle_mib": "%s",\n' \
    "$TAG" "$VARIANT" "${BUILD_ARGS[*]}" "$BUNDLE_MIB"
  printf '  "engine": "%s",\n  "base": "%s",\n  "base_seconds": %s,\n  "build_seconds": %s,\n' \
    "$ENGINE" "$BASE_FROM" "$BASE_SECONDS" "$BUILD_SECONDS"
  printf '  "image_size": "%s",\n  "storage_gb": %s,\n  "fast_tests": "%s",\n  "steps_seconds": {' \
    "$SIZE" "${STORE_GB:-0}" "$(grep -Eo '[0-9]+ passed[^=]*' "$DATA/fast_tests.log" | tail -n1 | sed 's/ *$//')"
  sep=""
  for s in "${STEPS[@]}"; do printf '%s"%s": %s' "$sep" "${s% *}" "${s#* }"; sep=", "; done
  printf '}\n}\n'
} > "$DATA/check_image.json.tmp" && mv "$DATA/check_image.json.tmp" "$DATA/check_image.json"
log "fast tier in the image: $(grep -Eo '[0-9]+ passed[^=]*' "$DATA/fast_tests.log" | tail -n1)"
log "done: $DATA/check_image.json"
cat "$DATA/check_image.json"
