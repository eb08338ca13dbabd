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
# shellcheck source=tools/lib/gobuild.sh
. "$here/../lib/gobuild.sh"

# The version comes from the committed go.mod. Prometheus tags its Go module v0.3XX.Y for
# release 3.XX.Y.
module_version="$(awk '$1 == "require" {$1 = ""; $0 = $0} $1 == "github.com/prometheus/prometheus" && $2 ~ /^v/ {print $2; exit}' "$gomod")"
[ -n "$module_version" ] || die "github.com/prometheus/prometheus not found in $gomod"
minor_patch="${module_version#v0.3}"
release="3.$((10#${minor_patch%%.*})).${minor_patch#*.}"

gobuild_out promtool "$release"
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

# 2. The cache, current for this go.mod/go.sum; one build at a time.
cache_ok() { [ -x "$binary" ] && [ -x "$helper" ] && gobuild_current; }
if cache_ok || gobuild_lock cache_ok; then
  log "reusing $binary"
  printf '%s\n' "$binary"
  exit 0
fi

# 3. Build.
command -v go >/dev/null 2>&1 || die "go is not installed; cannot build promtool"
gobuild_env

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

gobuild_tmp

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
gobuild_done

log "done"
printf '%s\n' "$binary"
