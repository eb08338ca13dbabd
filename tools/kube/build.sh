#!/usr/bin/env bash
# Builds the Kubernetes binaries of the test tiers, from Go modules only, at the versions
# pinned in this directory's go.mod/go.sum: etcd and kube-apiserver (tests/e2e), and
# kube-controller-manager, kube-scheduler, kubelet and kubectl (tests/node).
#
# Usage:
#   tools/kube/build.sh [BINARY...]   build (or reuse) the binaries; the last line of stdout
#                                     is the directory holding them. BINARY names what the
#                                     caller needs (default: all six); a build always
#                                     builds all six, so one stamp covers the directory
#   tools/kube/build.sh --print-dir   print the cache directory and exit (no build)
#
#   dir="$(tools/kube/build.sh kube-apiserver etcd | tail -n1)"
#
# Environment:
#   KUBEBUILDER_ASSETS          if it holds every BINARY asked for, print that directory
#                               and build nothing
#   TEST_ASSET_KUBE_APISERVER,  if both point at executables and only kube-apiserver and
#   TEST_ASSET_ETCD             etcd are asked for, build nothing; the common directory is
#                               printed only when they sit in one directory under their
#                               standard names, otherwise nothing is printed (use the
#                               variables)
#   POD_IDENTITY_WEBHOOK_CACHE  cache root (default:
#                               ${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-webhook);
#                               binaries go to <root>/kube/<kubernetes version>/
#   SOURCE_DATE_EPOCH           optional, fixes the build date embedded in the binaries
#
# Progress and diagnostics go to stderr.
set -euo pipefail

log() { printf 'tools/kube/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

all_binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
print_dir_only=0
wanted=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --print-dir) print_dir_only=1 ;;
    -h|--help) usage; exit 0 ;;
    etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kubectl) wanted+=("$1") ;;
    *) usage; die "unknown argument: $1" ;;
  esac
  shift
done
[ "${#wanted[@]}" -gt 0 ] || wanted=("${all_binaries[@]}")
# Whether directory $1 holds an executable of every wanted binary.
has_wanted() {
  local name
  for name in "${wanted[@]}"; do [ -x "$1/$name" ] || return 1; done
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gomod="$here/go.mod"
[ -f "$gomod" ] || die "missing $gomod"
# shellcheck source=tools/lib/gobuild.sh
. "$here/../lib/gobuild.sh"

# Versions come from the committed go.mod, the single source of truth.
mod_version() { awk -v m="$1" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$gomod"; }
kube_version="$(mod_version k8s.io/kubernetes)"
etcd_version="$(mod_version go.etcd.io/etcd/server/v3)"
[ -n "$kube_version" ] || die "k8s.io/kubernetes not found in $gomod"
[ -n "$etcd_version" ] || die "go.etcd.io/etcd/server/v3 not found in $gomod"

gobuild_out kube "$kube_version"

if [ "$print_dir_only" -eq 1 ]; then
  printf '%s\n' "$out"
  exit 0
fi

# 1. Binaries supplied from outside: nothing to build.
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  if has_wanted "$KUBEBUILDER_ASSETS"; then
    log "using KUBEBUILDER_ASSETS"
    (cd "$KUBEBUILDER_ASSETS" && pwd -P)
    exit 0
  fi
  log "warning: KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks executable ${wanted[*]}; ignoring it"
fi
only_control_plane=0
[ "$(printf '%s\n' "${wanted[@]}" | sort -u | tr '\n' ' ')" = "etcd kube-apiserver " ] && only_control_plane=1
if [ "$only_control_plane" = 1 ] && [ -n "${TEST_ASSET_KUBE_APISERVER:-}" ] && [ -n "${TEST_ASSET_ETCD:-}" ]; then
  if [ -x "$TEST_ASSET_KUBE_APISERVER" ] && [ -x "$TEST_ASSET_ETCD" ]; then
    log "using TEST_ASSET_KUBE_APISERVER and TEST_ASSET_ETCD"
    a_dir="$(cd "$(dirname "$TEST_ASSET_KUBE_APISERVER")" && pwd -P)"
    e_dir="$(cd "$(dirname "$TEST_ASSET_ETCD")" && pwd -P)"
    if [ "$a_dir" = "$e_dir" ] && [ "$(basename "$TEST_ASSET_KUBE_APISERVER")" = kube-apiserver ] \
       && [ "$(basename "$TEST_ASSET_ETCD")" = etcd ]; then
      printf '%s\n' "$a_dir"
    fi
    exit 0
  fi
  log "warning: TEST_ASSET_KUBE_APISERVER/TEST_ASSET_ETCD are not both executable; ignoring them"
fi

# 2. Cached build, current for this go.mod/go.sum (changing either rebuilds, even at the
#    same Kubernetes version); one build at a time.
cache_ok() { has_wanted "$out" && gobuild_current; }
if cache_ok || gobuild_lock cache_ok; then
  log "reusing $out"
  printf '%s\n' "$out"
  exit 0
fi

# 3. Build.
command -v go >/dev/null 2>&1 || die "go is not installed; cannot build ${wanted[*]}"
gobuild_env

minor="$(cut -d. -f2 <<<"${kube_version#v}")"
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  build_date="$(date -u -d "@${SOURCE_DATE_EPOCH}" +%Y-%m-%dT%H:%M:%SZ)"
else
  build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
fi
# Same version variables upstream's build sets; without them the server reports v0.0.0.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X ${pkg}.gitVersion=${kube_version} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
  ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=${build_date}"
done

gobuild_tmp

log "building into $out: Kubernetes $kube_version (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl), etcd $etcd_version ($(go version))"
cd "$here"
log "go build etcd"
go build -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 >&2
for name in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
  log "go build $name (minutes when the Go build cache is cold)"
  go build -tags=notest,grpcnotrace -ldflags "$ldflags" -o "$tmp/$name" \
    "k8s.io/kubernetes/cmd/$name" >&2
done

"$tmp/etcd" --version >&2 || die "built etcd does not run"
for name in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
  "$tmp/$name" --version >&2 || die "built $name does not run"
done
"$tmp/kubectl" version --client >&2 || die "built kubectl does not run"

# Same-filesystem renames: a reader never sees a half-written binary.
for name in "${all_binaries[@]}"; do
  mv -f "$tmp/$name" "$out/$name"
done
gobuild_done

log "done"
printf '%s\n' "$out"
