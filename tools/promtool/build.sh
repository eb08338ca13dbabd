#!/usr/bin/env bash
# Builds promtool (Prometheus' rule checker and rule unit-test runner) for the alert tests,
# from Go modules only, at the version pinned in this directory's go.mod/go.sum, and next to it
# `selectors` (./selectors), which lists the series a PromQL expression reads, with the same
# Prometheus parser.
#
# Usage:
#   tools/promtool/build.sh               build (or reuse) both; the last line of stdout is the
#                                         absolute path of promtool (selectors is beside it)
#   tools/promtool/build.sh --print-path  print where the binary goes and exit (no build)
#   tools/promtool/build.sh --version     print the pinned Prometheus version and exit
#
#   promtool="$(tools/promtool/build.sh | tail -n1)"
#
# Environment:
#   PROMTOOL                    if it names an executable, print it and build nothing
#                               (a `selectors` beside it is used when present)
#   POD_IDENTITY_WEBHOOK_CACHE  cache root (default:
#                               ${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-webhook);
#                               the binary goes to <root>/promtool/<prometheus version>/
#   SOURCE_DATE_EPOCH           optional, fixes the build date promtool --version reports
#
# Progress and diagnostics go to stderr.
set -euo pipefail

log() { printf 'tools/promtool/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gomod="$here/go.mod"
gosum="$here/go.sum"
[ -f "$gomod" ] && [ -f "$gosum" ] || die "missing $gomod or $gosum"

# The version comes from the committed go.mod. Prometheus tags its Go module v0.3XX.Y for
# release 3.XX.Y.
module_version="$(awk '$1 == "require" {$1 = ""; $0 = $0} $1 == "github.com/prometheus/prometheus" && $2 ~ /^v/ {print $2; exit}' "$gomod")"
[ -n "$module_version" ] || die "github.com/prometheus/prometheus not found in $gomod"
minor_patch="${module_version#v0.3}"
release="3.$((10#${minor_patch%%.*})).${minor_patch#*.}"

cache_root="${POD_IDENTITY_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-webhook}"
case "$cache_root" in
  /*) ;;
  *) cache_root="$PWD/$cache_root" ;;
esac
out="$cache_root/promtool/$release"
binary="$out/promtool"
helper="$out/selectors"

case "${1:-}" in
  "") ;;
  --print-path) printf '%s\n' "$binary"; exit 0 ;;
  --version) printf '%s\n' "$release"; exit 0 ;;
  -h|--help) usage; exit 0 ;;
  *) usage; die "unknown argument: $1" ;;
esac

# 1. A binary supplied from outside.
if [ -n "${PROMTOOL:-}" ]; then
  [ -x "$PROMTOOL" ] || die "PROMTOOL=$PROMTOOL is not an executable"
  log "using PROMTOOL"
  printf '%s\n' "$PROMTOOL"
  exit 0
fi

# 2. Cached build. The stamp ties the binary to the exact go.mod/go.sum it was built from.
stamp_want="$(cat "$gomod" "$gosum" | sha256sum | cut -d' ' -f1)"
cache_ok() {
  [ -x "$binary" ] && [ -x "$helper" ] && [ -f "$out/.stamp" ] \
    && [ "$(cat "$out/.stamp")" = "$stamp_want" ]
}
if cache_ok; then
  log "reusing $binary"
  printf '%s\n' "$binary"
  exit 0
fi

mkdir -p "$out"
# Serialise concurrent invocations (pytest sessions, make), then re-check.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$out/.lock"
  flock 9
  if cache_ok; then
    log "reusing $binary (built by a concurrent invocation)"
    printf '%s\n' "$binary"
    exit 0
  fi
fi

# 3. Build.
command -v go >/dev/null 2>&1 || die "go is not installed; cannot build promtool"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off
# -mod=readonly: fail instead of silently rewriting the committed go.mod/go.sum.
export GOFLAGS="-trimpath -mod=readonly -buildvcs=false"

if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  build_date="$(date -u -d "@${SOURCE_DATE_EPOCH}" +%Y%m%d-%H:%M:%S)"
else
  build_date="$(date -u +%Y%m%d-%H:%M:%S)"
fi
# The version variables upstream's release build (promu) sets; without them promtool
# reports an empty version.
v=github.com/prometheus/common/version
ldflags="-s -w -X $v.Version=$release -X $v.Revision=$module_version -X $v.Branch=HEAD"
ldflags+=" -X $v.BuildUser=pod-identity-webhook -X $v.BuildDate=$build_date"

tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
rm -f "$out/.stamp"

log "building promtool $release ($module_version) into $out ($(go version))"
cd "$here"
# netgo as upstream's release build. remove_all_sd leaves out every service-discovery
# plugin (upstream's own build tag): rule checks and rule unit tests never use them, and they
# are most of the compile.
nice -n 10 go build -tags=netgo,remove_all_sd -ldflags "$ldflags" -o "$tmp/promtool" \
  github.com/prometheus/prometheus/cmd/promtool >&2

nice -n 10 go build -ldflags "-s -w" -o "$tmp/selectors" ./selectors >&2

"$tmp/promtool" --version >&2 || die "built promtool does not run"
echo '["up"]' | "$tmp/selectors" >/dev/null || die "built selectors does not run"

# Same-filesystem renames: a reader never sees a half-written binary.
mv -f "$tmp/selectors" "$helper"
mv -f "$tmp/promtool" "$binary"
printf '%s\n' "$stamp_want" >"$tmp/stamp"
mv -f "$tmp/stamp" "$out/.stamp"

log "done"
printf '%s\n' "$binary"
