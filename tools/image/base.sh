#!/usr/bin/env bash
# Builds a Debian bookworm + Python 3.11 base image with mmdebstrap, for building the webhook's
# image where no container registry is reachable (only Debian's package archive):
#
#   tools/image/base.sh --host-ca
#   make image BASE_IMAGE=localhost/debian-python:3.11-bookworm
#
# The image holds python3, its venv module (with the pip that ensurepip installs into a
# virtual environment), `python` as a name for python3, and ca-certificates; apt's lists and
# caches are removed. Its CMD is python3.
#
# Usage:
#   tools/image/base.sh [--tag TAG] [--sources FILE] [--ca FILE]... [--host-ca]
#                       [--include PKG,...] [--force]
#
#   --tag      the image name (default localhost/debian-python:3.11-bookworm)
#   --sources  an apt sources file (one-line or deb822) to build from; default: this host's
#              own sources when it runs Debian bookworm, else mmdebstrap's default mirror
#   --ca FILE  trust this extra CA certificate (PEM) in the image, for pip and apt behind a
#              TLS-intercepting proxy; may be repeated
#   --host-ca  trust every extra CA this host trusts (/usr/local/share/ca-certificates/*.crt)
#   --include  more Debian packages in the image
#   --force    rebuild even when TAG was built from the same inputs
#
# The image is labelled with a hash of its inputs (this script, the options, the sources and
# CA files), and an image with the same hash is reused. The builder is tools/image/image.sh's
# (docker, podman or buildah). Needs root (or mmdebstrap's unshare mode) and mmdebstrap
# (tools/node/install-packages.sh image installs it). The last line of stdout is TAG.
set -euo pipefail

log() { printf 'tools/image/base.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE=bookworm
PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
INPUTS_LABEL=io.github.pod-identity-webhook.base-inputs

tag=localhost/debian-python:3.11-bookworm
sources=""
cas=()
include=""
force=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --tag|--sources|--ca|--include)
      [ "$#" -ge 2 ] || die "$1 needs a value"
      case "$1" in
        --tag) tag="$2" ;;
        --sources) sources="$2" ;;
        --ca) cas+=("$2") ;;
        --include) include="$2" ;;
      esac
      shift 2 ;;
    --host-ca)
      for ca in /usr/local/share/ca-certificates/*.crt; do
        [ -f "$ca" ] && cas+=("$ca")
      done
      shift ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
  esac
done
for ca in "${cas[@]}"; do
  [ -f "$ca" ] || die "--ca $ca: no such file"
  grep -q -- '-----BEGIN CERTIFICATE-----' "$ca" || die "--ca $ca: not a PEM certificate"
done
command -v mmdebstrap >/dev/null 2>&1 \
  || die "mmdebstrap is not installed (tools/node/install-packages.sh image)"
builder="$("$here/image.sh" builder)"

# The host's own sources when it is bookworm: the same archive (and snapshot, if any) its apt
# uses. Anything else gets mmdebstrap's default mirror for the suite.
mirrors=()
aptopts=()
if [ -n "$sources" ]; then
  [ -f "$sources" ] || die "--sources $sources: no such file"
  mirrors=("$sources")
elif grep -qs '^VERSION_CODENAME=bookworm$' /etc/os-release; then
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -s "$file" ] && grep -qs "$SUITE" "$file" && grep -qsE 'debian' "$file" && mirrors+=("$file")
  done
fi
# A snapshot archive's Release files are past their Valid-Until date; the host's apt says so.
if command -v apt-config >/dev/null 2>&1 && [ "${#mirrors[@]}" -gt 0 ] \
  && [ "$(apt-config dump Acquire::Check-Valid-Until --format '%v')" = false ]; then
  aptopts+=(--aptopt='Acquire::Check-Valid-Until "false"')
fi

inputs="$(
  {
    cat "${BASH_SOURCE[0]}"
    printf '%s\n' "$SUITE" "$PACKAGES" "$include" "${aptopts[@]}"
    for file in "${mirrors[@]}" "${cas[@]}"; do cat "$file"; done
  } | sha256sum | cut -d' ' -f1
)"
if [ "$force" = 0 ] && [ "$("$here/image.sh" label "$tag" "$INPUTS_LABEL")" = "$inputs" ]; then
  log "reusing $tag (same inputs)"
  printf '%s\n' "$tag"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/ca"
for ca in "${cas[@]}"; do
  cp "$ca" "$work/ca/$(basename "${ca%.*}").crt"
done

packages="$PACKAGES${include:+,$include}"
log "mmdebstrap $SUITE ($packages) with ${#cas[@]} extra CA certificate(s)"
start=$SECONDS
# Hooks: trust the extra CAs (before anything in the image reaches the network), then drop
# apt's lists and caches, which only a later `apt-get update` needs. mmdebstrap runs each hook
# with the root directory as $1, hence the single quotes.
# shellcheck disable=SC2016
mmdebstrap --variant=minbase --include="$packages" "${aptopts[@]}" \
  --customize-hook="cp -r '$work/ca/.' \"\$1/usr/local/share/ca-certificates/\"" \
  --customize-hook='chroot "$1" update-ca-certificates' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb' \
  "$SUITE" "$work/rootfs.tar" "${mirrors[@]}" >&2
log "rootfs built in $((SECONDS - start)) s ($(du -h "$work/rootfs.tar" | cut -f1))"

label="$INPUTS_LABEL=$inputs"
case "$builder" in
  docker|podman)
    "$builder" import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' \
      --change "LABEL $label" "$work/rootfs.tar" "$tag" >&2 ;;
  buildah)
    container="$(buildah from scratch)"
    buildah add --quiet "$container" "$work/rootfs.tar" / >&2
    buildah config --cmd python3 --env LANG=C.UTF-8 --label "$label" "$container"
    buildah commit --quiet --rm "$container" "$tag" >&2 ;;
esac
log "built $tag with $builder"
printf '%s\n' "$tag"
