#!/usr/bin/env bash
# Deletes the kind cluster that `make kind-up` created. Needs Docker and kind; unlike
# kind-up.sh it installs nothing: without kind or a Docker engine there is no cluster to delete,
# and it says which one is missing.
#
# Usage:
#   tools/deploy/kind-down.sh [--cluster NAME]    (default pod-identity-webhook)
set -euo pipefail

log() { printf 'tools/deploy/kind-down.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cluster=pod-identity-webhook
while [ "$#" -gt 0 ]; do
  case "$1" in
    --cluster)
      [ "$#" -ge 2 ] || die "--cluster needs a value"
      cluster="$2"
      shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
  esac
done

command -v docker >/dev/null 2>&1 || die "docker is not installed: kind clusters are Docker containers"
docker info >/dev/null 2>&1 \
  || die "the Docker engine does not answer (docker info): a kind cluster runs in it"
kind="$(command -v kind || true)"
if [ -z "$kind" ]; then
  cached="$("$here/install-tools.sh" --print-dir)"
  kind="$cached/kind"
  [ -x "$kind" ] || die "kind is not installed (not on PATH, nor in $cached, where make kind-up puts it)"
fi
"$kind" delete cluster --name "$cluster"
