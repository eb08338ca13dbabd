#!/usr/bin/env bash
# Builds actionlint (the GitHub Actions workflow checker) for the test of the example
# workflows, from Go modules only, at the version pinned in this directory's go.mod/go.sum.
#
# Usage:
#   tools/actionlint/build.sh               build (or reuse); the last line of stdout is the
#                                           absolute path of the binary
#   tools/actionlint/build.sh --print-path  print where the binary goes and exit (no build)
#   tools/actionlint/build.sh --version     print the pinned actionlint version and exit
#
#   actionlint="$(tools/actionlint/build.sh | tail -n1)"
#
# Environment:
#   ACTIONLINT                  if it names an executable, print it and build nothing
#   POD_IDENTITY_WEBHOOK_CACHE  cache root (default:
#                               ${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-webhook);
#                               the binary goes to <root>/actionlint/<version>/
#
# Progress and diagnostics go to stderr.
set -euo pipefail

log() { printf 'tools/actionlint/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gomod="$here/go.mod"
# shellcheck source=tools/lib/gobuild.sh
. "$here/../lib/gobuild.sh"

# The version comes from the committed go.mod.
version="$(awk '$1 == "require" {$1 = ""; $0 = $0} $1 == "github.com/rhysd/actionlint" && $2 ~ /^v/ {print $2; exit}' "$gomod")"
[ -n "$version" ] || die "github.com/rhysd/actionlint not found in $gomod"

gobuild_out actionlint "$version"
binary="$out/actionlint"

case "${1:-}" in
  "") ;;
  --print-path) printf '%s\n' "$binary"; exit 0 ;;
  --version) printf '%s\n' "$version"; exit 0 ;;
  -h|--help) usage; exit 0 ;;
  *) usage; die "unknown argument: $1" ;;
esac

# 1. A binary supplied from outside.
if [ -n "${ACTIONLINT:-}" ]; then
  [ -x "$ACTIONLINT" ] || die "ACTIONLINT=$ACTIONLINT is not an executable"
  log "using ACTIONLINT"
  printf '%s\n' "$ACTIONLINT"
  exit 0
fi

# 2. Cached build, tied to the exact go.mod/go.sum it was built from.
cache_ok() { [ -x "$binary" ] && gobuild_current; }
if cache_ok || gobuild_lock cache_ok; then
  log "reusing $binary"
  printf '%s\n' "$binary"
  exit 0
fi

# 3. Build.
command -v go >/dev/null 2>&1 || die "go is not installed; cannot build actionlint"
gobuild_env
# The variables upstream's release build sets; without them `actionlint -version` says
# "unknown", since a tool built through a consumer module has no main-module version.
pkg=github.com/rhysd/actionlint
ldflags="-s -w -X $pkg.version=$version -X '$pkg.installedFrom=built from Go modules by tools/actionlint/build.sh'"

gobuild_tmp

log "building actionlint $version into $out ($(go version))"
cd "$here"
nice -n 10 go build -ldflags "$ldflags" -o "$tmp/actionlint" github.com/rhysd/actionlint/cmd/actionlint >&2

"$tmp/actionlint" -version >&2 || die "built actionlint does not run"

# A same-filesystem rename: a reader never sees a half-written binary.
mv -f "$tmp/actionlint" "$binary"
gobuild_done

log "done"
printf '%s\n' "$binary"
