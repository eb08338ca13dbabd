#!/usr/bin/env bash
# Builds AWS's Go webhook (github.com/aws/amazon-eks-pod-identity-webhook) from the Go
# module proxy, for the differential tier and the side-by-side benchmark. Nothing is
# committed: the binary lives in a cache outside the repository.
#
# Usage:
#   tools/upstream/build.sh               build (or reuse) the binary; the last line of
#                                         stdout is its absolute path
#   tools/upstream/build.sh --print-path  print where the cached binary goes; build nothing
#   tools/upstream/build.sh --version     print the pinned module version; build nothing
#
#   bin="$(tools/upstream/build.sh | tail -n1)"
#
# Environment:
#   UPSTREAM_WEBHOOK_BIN        an existing upstream binary: printed as is, nothing built
#   POD_IDENTITY_WEBHOOK_CACHE  cache root (default:
#                               ${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-webhook);
#                               the binary goes to
#                               <root>/upstream/<version>/amazon-eks-pod-identity-webhook
#
# The version is pinned by go.mod/go.sum beside this script (see README.md). Progress
# and `go` output go to stderr. The build runs under `nice -n 10`.
set -euo pipefail

MODULE="github.com/aws/amazon-eks-pod-identity-webhook"
BINARY="amazon-eks-pod-identity-webhook"

log() { printf 'tools/upstream/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

mode=build
while [ "$#" -gt 0 ]; do
  case "$1" in
    --print-path) mode=print-path ;;
    --version) mode=version ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
  esac
  shift
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gomod="$here/go.mod"
[ -f "$gomod" ] || die "missing $gomod"
# shellcheck source=tools/lib/gobuild.sh
. "$here/../lib/gobuild.sh"
version="$(awk -v m="$MODULE" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$gomod")"
[ -n "$version" ] || die "$MODULE not found in $gomod"
if [ "$mode" = version ]; then
  printf '%s\n' "$version"
  exit 0
fi

# 1. A binary supplied from outside.
if [ -n "${UPSTREAM_WEBHOOK_BIN:-}" ] && [ "$mode" = build ]; then
  [ -x "$UPSTREAM_WEBHOOK_BIN" ] || die "UPSTREAM_WEBHOOK_BIN=$UPSTREAM_WEBHOOK_BIN is not an executable file"
  log "using UPSTREAM_WEBHOOK_BIN"
  printf '%s\n' "$(cd "$(dirname "$UPSTREAM_WEBHOOK_BIN")" && pwd -P)/$(basename "$UPSTREAM_WEBHOOK_BIN")"
  exit 0
fi

gobuild_out upstream "$version"
bin="$out/$BINARY"

if [ "$mode" = print-path ]; then
  printf '%s\n' "$bin"
  exit 0
fi

# 2. The cache, current for this go.mod/go.sum; one build at a time.
cache_ok() { [ -x "$bin" ] && gobuild_current; }
if cache_ok || gobuild_lock cache_ok; then
  log "reusing $bin"
  printf '%s\n' "$bin"
  exit 0
fi

# 3. Build in the consumer module. `-mod=readonly` fails rather than rewrite the
#    committed go.mod/go.sum; the committed go.sum makes the checksum database
#    unnecessary. The consumer module requires nothing but upstream, so minimal version
#    selection picks exactly the dependency versions of upstream's own go.mod.
command -v go >/dev/null 2>&1 || die "go is not installed; cannot build the upstream webhook"
gobuild_env
gobuild_tmp

log "building $MODULE@$version into $out ($(go version))"
start="$(date +%s)"
(cd "$here" && nice -n 10 go build -ldflags "-s -w" -o "$tmp/$BINARY" "$MODULE") >&2 \
  || die "go build $MODULE@$version failed"
"$tmp/$BINARY" --version >&2 || die "the built binary does not run"

# Same-filesystem renames: a reader never sees a half-written binary.
mv -f "$tmp/$BINARY" "$bin"
gobuild_done
log "built in $(( $(date +%s) - start ))s"
printf '%s\n' "$bin"
