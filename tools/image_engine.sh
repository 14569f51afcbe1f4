# shellcheck shell=bash
# Sourced by tools/check_image.sh and tools/gpu_bundle.sh: the container engine they drive,
# a Docker daemon where one answers, else buildah (chroot isolation, vfs storage, as root).
#
#   detect_engine              sets ENGINE (docker | buildah), BUILDAH (buildah's argv) and
#                              STORE (the engine's storage folder); dies when there is none
#   image_exists TAG           whether the engine holds the image
#   run_image TAG USER MOUNTS CMD...
#                              CMD in a throwaway container of TAG, as USER (uid:gid), with
#                              MOUNTS ("host:container" separated by spaces), the image's
#                              environment, and without its entry point
# The caller defines die().

# shellcheck disable=SC2034  # STORE is for the callers
detect_engine() {
  ENGINE=""
  BUILDAH=(buildah --storage-driver vfs)
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    ENGINE=docker
    STORE=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)
  elif command -v buildah >/dev/null; then
    [ "$(id -u)" = 0 ] || die "buildah builds as root here (chroot isolation, vfs storage); run it with sudo, or on a machine with a Docker daemon"
    ENGINE=buildah
    STORE=$("${BUILDAH[@]}" info --format '{{.store.GraphRoot}}' 2>/dev/null || echo /var/lib/containers/storage)
  else
    die "no Docker daemon and no buildah: install one (Debian 12: apt-get install buildah) or run it where Docker is"
  fi
}

image_exists() {
  if [ "$ENGINE" = docker ]; then docker image inspect "$1" >/dev/null 2>&1
  else "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; fi
}

run_image() {
  local tag=$1 user=$2 mounts=$3; shift 3
  local vols=() m
  for m in $mounts; do vols+=(-v "$m"); done
  if [ "$ENGINE" = docker ]; then
    docker run --rm --user "$user" --entrypoint "" "${vols[@]}" "$tag" "$@"
    return
  fi
  local ctr rc=0
  ctr=$("${BUILDAH[@]}" from -q "$tag")
  # buildah run backs an image VOLUME with a private copy that hides a -v bind on the same
  # path; docker run binds over it. Dropping the volume lets the bind through.
  "${BUILDAH[@]}" config --volume /data- "$ctr"
  "${BUILDAH[@]}" run --isolation chroot --user "$user" "${vols[@]}" "$ctr" -- "$@" || rc=$?
  "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true
  return "$rc"
}
