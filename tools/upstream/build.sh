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
gosum="$here/go.sum"
if [ ! -f "$gomod" ] || [ ! -f "$gosum" ]; then die "missing $gomod or $gosum"; fi
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

cache_root="${POD_IDENTITY_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-webhook}"
case "$cache_root" in
  /*) ;;
  *) cache_root="$PWD/$cache_root" ;;
esac
out="$cache_root/upstream/$version"
bin="$out/$BINARY"

if [ "$mode" = print-path ]; then
  printf '%s\n' "$bin"
  exit 0
fi

# 2. The cache. The stamp ties the binary to the go.mod/go.sum it was built from.
stamp_want="$(cat "$gomod" "$gosum" | sha256sum | cut -d' ' -f1)"
cache_ok() { [ -x "$bin" ] && [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp_want" ]; }
if cache_ok; then
  log "reusing $bin"
  printf '%s\n' "$bin"
  exit 0
fi

mkdir -p "$out"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$out/.lock"
  flock 9
  if cache_ok; then
    log "reusing $bin (built by a concurrent invocation)"
    printf '%s\n' "$bin"
    exit 0
  fi
fi

# 3. Build in the consumer module. `-mod=readonly` fails rather than rewrite the
#    committed go.mod/go.sum; the committed go.sum makes the checksum database
#    unnecessary. The consumer module requires nothing but upstream, so minimal version
#    selection picks exactly the dependency versions of upstream's own go.mod.
command -v go >/dev/null 2>&1 || die "go is not installed; cannot build the upstream webhook"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off
export GOFLAGS="-trimpath -mod=readonly -buildvcs=false"
tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
rm -f "$out/.stamp"

log "building $MODULE@$version into $out ($(go version))"
start="$(date +%s)"
(cd "$here" && nice -n 10 go build -ldflags "-s -w" -o "$tmp/$BINARY" "$MODULE") >&2 \
  || die "go build $MODULE@$version failed"
"$tmp/$BINARY" --version >&2 || die "the built binary does not run"

# Same-filesystem renames: a reader never sees a half-written binary.
mv -f "$tmp/$BINARY" "$bin"
printf '%s\n' "$stamp_want" >"$tmp/stamp"
mv -f "$tmp/stamp" "$out/.stamp"
log "built in $(( $(date +%s) - start ))s"
printf '%s\n' "$bin"
