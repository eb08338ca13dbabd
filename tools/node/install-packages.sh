#!/usr/bin/env bash
# Installs the Debian packages that the image build and the node tier need, when they are
# missing: podman and mmdebstrap (tools/image), containerd, runc and the CNI plugins
# (tests/node). Nothing is started: the packages' services stay off (the node tier runs its
# own containerd with its own root, state and socket).
#
# Usage:
#   tools/node/install-packages.sh [GROUP...]   GROUP is image or node (default: both)
#   tools/node/install-packages.sh --check [GROUP...]
#                                               exit 0 when every package is installed,
#                                               else print the missing ones and exit 1
#
# Needs root and Debian's package archive (apt-get update runs first). Progress goes to
# stderr.
set -euo pipefail

log() { printf 'tools/node/install-packages.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

# podman builds and runs images (docker works too where an engine runs; see tools/image).
image_packages=(podman mmdebstrap)
# containerd 1.6 + runc 1.1 are the node's runtime; the bridge, host-local and loopback CNI
# plugins give Pods their addresses.
node_packages=(containerd runc containernetworking-plugins)

check=0
groups=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --check) check=1 ;;
    image|node) groups+=("$1") ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
  esac
  shift
done
[ "${#groups[@]}" -gt 0 ] || groups=(image node)

packages=()
for group in "${groups[@]}"; do
  case "$group" in
    image) packages+=("${image_packages[@]}") ;;
    node) packages+=("${node_packages[@]}") ;;
  esac
done

missing=()
for package in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)"
  [ "$status" = "install ok installed" ] || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$check" = 1 ]; then
  printf '%s\n' "${missing[@]}"
  exit 1
fi

[ "$(id -u)" = 0 ] || die "root is needed to install ${missing[*]}"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${missing[*]} by other means"
export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
apt-get update -qq >&2
log "installing ${missing[*]}"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
log "installed ${missing[*]}"
