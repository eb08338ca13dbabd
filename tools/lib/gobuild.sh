# shellcheck shell=bash
# Sourced by the scripts that build from Go modules (tools/kube, tools/upstream,
# tools/promtool, tools/prometheus-operator-crds, tools/actionlint): where their cache is, whether it is
# current, one build at a time, and results that a reader sees whole or not at all.
#
# The caller defines log and die, sets `here` (its directory, with the committed go.mod and
# go.sum that pin what it builds), then:
#
#   gobuild_out NAME VERSION   sets `out` = <cache root>/NAME/VERSION and `stamp_want`, the
#                              hash of go.mod + go.sum: a change to either rebuilds
#   gobuild_current            whether `out` holds a build stamped `stamp_want` (the caller's
#                              own check adds which files must be there)
#   gobuild_lock CHECK         waits for any other build of `out`; true when that build
#                              left `out` in a state where the function CHECK holds
#   gobuild_env                Go's environment: the local toolchain, no cgo, read-only
#                              go.mod, no VCS stamp, reproducible paths
#   gobuild_tmp                sets `tmp`, a directory inside `out` removed on exit, so the
#                              final renames stay on one file system
#   gobuild_done               records the stamp, last, once the results are in place
#
# The cache root is POD_IDENTITY_WEBHOOK_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/pod-identity-webhook.

gobuild_out() {
  : "${here:?the sourcing script sets here to its directory}"
  [ -f "$here/go.mod" ] && [ -f "$here/go.sum" ] || die "missing $here/go.mod or go.sum"
  local root="${POD_IDENTITY_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-webhook}"
  case "$root" in
    /*) ;;
    *) root="$PWD/$root" ;;
  esac
  out="$root/$1/$2"
  stamp_want="$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -d' ' -f1)"
}

gobuild_current() {
  [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp_want" ]
}

gobuild_lock() {
  mkdir -p "$out"
  command -v flock >/dev/null 2>&1 || return 1
  exec 9>"$out/.lock"
  flock 9
  "$1"
}

gobuild_env() {
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off
  # -mod=readonly: fail instead of silently rewriting the committed go.mod/go.sum.
  # -buildvcs=false: do not stamp this repository's VCS state into the binaries.
  export GOFLAGS="-trimpath -mod=readonly -buildvcs=false"
}

gobuild_tmp() {
  mkdir -p "$out"
  tmp="$(mktemp -d "$out/.build.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: the path is fixed for this build
  trap "rm -rf '$tmp'" EXIT
  rm -f "$out/.stamp"
}

gobuild_done() {
  printf '%s\n' "$stamp_want" >"$tmp/stamp"
  mv -f "$tmp/stamp" "$out/.stamp"
}
