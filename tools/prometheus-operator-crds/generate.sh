#!/usr/bin/env bash
# Generates the Prometheus Operator's CustomResourceDefinitions (monitoring.coreos.com:
# ServiceMonitor, PodMonitor, PrometheusRule, ...) from its Go API types with controller-gen,
# both at the versions pinned in this directory's go.mod/go.sum, as the operator's own build
# does. The deployment tests install them into their API server, so that the monitoring
# components' objects are validated by a server-side dry run like every other object.
#
# Usage:
#   tools/prometheus-operator-crds/generate.sh              generate (or reuse) the CRDs; the
#                                                           last line of stdout is the directory
#                                                           holding one YAML file per CRD
#   tools/prometheus-operator-crds/generate.sh --print-dir  print that directory and exit
#
# Environment:
#   PROMETHEUS_OPERATOR_CRDS    if it names a directory of CRD files, print it, generate nothing
#   POD_IDENTITY_WEBHOOK_CACHE  cache root (default:
#                               ${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-webhook); the CRDs
#                               go to <root>/prometheus-operator-crds/<operator version>/
#
# Progress and diagnostics go to stderr.
set -euo pipefail

log() { printf 'tools/prometheus-operator-crds/generate.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gomod="$here/go.mod"
# shellcheck source=tools/lib/gobuild.sh
. "$here/../lib/gobuild.sh"

apis=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring
version="$(awk -v m="$apis" '$1 == "require" {$1 = ""; $0 = $0} $1 == m && $2 ~ /^v/ {print $2; exit}' "$gomod")"
[ -n "$version" ] || die "$apis not found in $gomod"

gobuild_out prometheus-operator-crds "$version"

case "${1:-}" in
  "") ;;
  --print-dir) printf '%s\n' "$out"; exit 0 ;;
  -h|--help) usage; exit 0 ;;
  *) usage; die "unknown argument: $1" ;;
esac

if [ -n "${PROMETHEUS_OPERATOR_CRDS:-}" ]; then
  [ -d "$PROMETHEUS_OPERATOR_CRDS" ] || die "PROMETHEUS_OPERATOR_CRDS=$PROMETHEUS_OPERATOR_CRDS is not a directory"
  log "using PROMETHEUS_OPERATOR_CRDS"
  printf '%s\n' "$PROMETHEUS_OPERATOR_CRDS"
  exit 0
fi

# The files, current for this go.mod/go.sum; one generation at a time.
if gobuild_current || gobuild_lock gobuild_current; then
  log "reusing $out"
  printf '%s\n' "$out"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not installed; cannot generate the CRDs"
gobuild_env
gobuild_tmp

cd "$here"
log "building controller-gen ($(go version))"
nice -n 10 go build -ldflags "-s -w" -o "$tmp/controller-gen" sigs.k8s.io/controller-tools/cmd/controller-gen >&2
log "generating the CRDs of $apis $version"
# maxDescLen=0: the tests need the schemas, not the field documentation (which makes the
# Prometheus CRD alone several megabytes).
nice -n 10 "$tmp/controller-gen" crd:crdVersions=v1,maxDescLen=0 "paths=$apis/v1" \
  "output:crd:dir=$tmp/crds" >&2
for kind in servicemonitors podmonitors prometheusrules; do
  [ -s "$tmp/crds/monitoring.coreos.com_$kind.yaml" ] || die "controller-gen wrote no $kind CRD"
done

rm -f "$out"/*.yaml
mv -f "$tmp/crds"/*.yaml "$out/"
gobuild_done
log "done"
printf '%s\n' "$out"
