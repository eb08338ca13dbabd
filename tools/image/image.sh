#!/usr/bin/env bash
# Builds, inspects and exports images with whichever builder the machine has: docker (when its
# engine answers), else podman, else buildah. IMAGE_BUILDER=docker|podman|buildah chooses.
#
# Usage:
#   tools/image/image.sh builder
#       print the builder that would be used, or say why there is none (exit 1)
#   tools/image/image.sh build [--file F] [--build-arg NAME=VALUE]... [--label K=V]... TAG [CONTEXT]
#       build F (default: CONTEXT/Dockerfile) in CONTEXT (default: the repository) as TAG
#   tools/image/image.sh label TAG KEY
#       print the value of label KEY of the local image TAG (nothing when there is no image)
#   tools/image/image.sh save TAG ARCHIVE
#       write TAG as an OCI (podman, buildah) or docker (docker) archive, which
#       `ctr images import` reads; the archive keeps the name
#   tools/image/image.sh tags REPOSITORY
#       print REPOSITORY:TAG of each local image of REPOSITORY, one a line
#   tools/image/image.sh remove TAG...
#       remove the local images TAG...
#   tools/image/image.sh run [RUN-ARGS...]
#       `<builder> run` with the limits below (podman and docker only)
#
# podman and buildah give containers the caller's hard open-files limit and at most 32768
# processes: their defaults are above what some sandboxes allow (runc then fails with "error
# setting rlimit").
set -euo pipefail

log() { printf 'tools/image/image.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

find_builder() {
  if [ -n "${IMAGE_BUILDER:-}" ]; then
    case "$IMAGE_BUILDER" in
      docker|podman|buildah) ;;
      *) die "IMAGE_BUILDER=$IMAGE_BUILDER: expected docker, podman or buildah" ;;
    esac
    command -v "$IMAGE_BUILDER" >/dev/null 2>&1 || die "IMAGE_BUILDER=$IMAGE_BUILDER is not installed"
    printf '%s\n' "$IMAGE_BUILDER"
    return
  fi
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo docker
  elif command -v podman >/dev/null 2>&1; then
    echo podman
  elif command -v buildah >/dev/null 2>&1; then
    echo buildah
  elif command -v docker >/dev/null 2>&1; then
    die "docker is installed but its engine does not answer (docker info), and neither podman nor buildah is installed (tools/node/install-packages.sh image installs podman)"
  else
    die "no image builder: install docker, podman or buildah (tools/node/install-packages.sh image installs podman)"
  fi
}

# The caller's hard open-files limit, and at most 32768 processes: podman runs the container's
# monitor with that process limit, and a container cannot raise it.
limits() {
  local nofile nproc
  nofile="$(ulimit -Hn)" nproc="$(ulimit -Hu)"
  [ "$nofile" = unlimited ] && nofile=1048576
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
  printf -- '--ulimit=nofile=%s:%s --ulimit=nproc=%s:%s' "$nofile" "$nofile" "$nproc" "$nproc"
}

[ "$#" -gt 0 ] || { usage; exit 2; }
command="$1"
shift
case "$command" in
  -h|--help) usage; exit 0 ;;
  builder) find_builder; exit 0 ;;
esac
builder="$(find_builder)"

case "$command" in
  build)
    file="" args=()
    while [ "$#" -gt 0 ]; do
      case "$1" in
        --file) [ "$#" -ge 2 ] || die "--file needs a value"; file="$2"; shift 2 ;;
        --build-arg|--label)
          [ "$#" -ge 2 ] || die "$1 needs a value"; args+=("$1" "$2"); shift 2 ;;
        -*) die "unknown option: $1" ;;
        *) break ;;
      esac
    done
    [ "$#" -ge 1 ] && [ "$#" -le 2 ] || die "build needs TAG [CONTEXT]"
    tag="$1" context="${2:-$repo}"
    file="${file:-$context/Dockerfile}"
    log "building $tag with $builder ($file)"
    case "$builder" in
      docker)
        DOCKER_BUILDKIT=1 docker build "${args[@]}" --file "$file" --tag "$tag" "$context" >&2 ;;
      podman|buildah)
        # --layers=false: buildah 1.28 (Debian 12) fails to bind-mount a cached build stage;
        # the tiers cache whole images by the hash of their inputs instead.
        # --network=host: RUN steps need the package index, not an isolated network.
        # shellcheck disable=SC2046
        "$builder" build --layers=false --network=host $(limits) "${args[@]}" \
          --file "$file" --tag "$tag" "$context" >&2 ;;
    esac
    ;;
  label)
    [ "$#" -eq 2 ] || die "label needs TAG KEY"
    format="{{ index .Config.Labels \"$2\" }}"
    case "$builder" in
      docker|podman) "$builder" image inspect --format "$format" "$1" 2>/dev/null || true ;;
      buildah) buildah inspect --type image --format "{{ index .OCIv1.Config.Labels \"$2\" }}" "$1" 2>/dev/null || true ;;
    esac
    ;;
  save)
    [ "$#" -eq 2 ] || die "save needs TAG ARCHIVE"
    rm -f "$2"
    case "$builder" in
      docker) docker save --output "$2" "$1" ;;
      podman) podman save --quiet --format oci-archive --output "$2" "$1" ;;
      buildah) buildah push --quiet "$1" "oci-archive:$2:$1" >&2 ;;
    esac
    ;;
  tags)
    [ "$#" -eq 1 ] || die "tags needs REPOSITORY"
    case "$builder" in
      docker|podman) "$builder" image ls --format '{{.Repository}}:{{.Tag}}' "$1" ;;
      buildah) buildah images --format '{{.Name}}:{{.Tag}}' "$1" ;;
    esac
    ;;
  remove)
    [ "$#" -ge 1 ] || die "remove needs TAG..."
    case "$builder" in
      docker|podman) "$builder" image rm "$@" >/dev/null ;;
      buildah) buildah rmi "$@" >/dev/null ;;
    esac
    ;;
  run)
    case "$builder" in
      docker) exec docker run "$@" ;;
      podman)
        # shellcheck disable=SC2046 # limits prints --ulimit flags, one word each
        exec podman run $(limits) "$@"
        ;;
      buildah) die "buildah cannot run containers; install podman or docker" ;;
    esac
    ;;
  *) usage; die "unknown command: $command" ;;
esac
