#!/usr/bin/env bash
# A kind cluster running the webhook: creates the cluster (or reuses it), loads the image,
# deploys an overlay and checks that a Pod gets its role. Needs Docker, kind and kubectl;
# `make kind-up` builds the image first. Not run in CI (no Docker engine there).
#
# Usage:
#   tools/deploy/kind-up.sh [--image REF] [--overlay NAME] [--cluster NAME]
#
#   --image    an image already built locally (default pod-identity-webhook:dev)
#   --overlay  manifests/overlays/NAME (default self-signed; cert-manager needs cert-manager
#              installed in the cluster first)
#   --cluster  kind cluster name (default pod-identity-webhook)
#
# kind is taken from PATH, else built by tools/deploy/install-tools.sh kind.
set -euo pipefail

log() { printf 'tools/deploy/kind-up.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image=pod-identity-webhook:dev
overlay=self-signed
cluster=pod-identity-webhook
while [ "$#" -gt 0 ]; do
  case "$1" in
    --image|--overlay|--cluster)
      [ "$#" -ge 2 ] || die "$1 needs a value"
      case "$1" in
        --image) image="$2" ;;
        --overlay) overlay="$2" ;;
        --cluster) cluster="$2" ;;
      esac
      shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
  esac
done

command -v docker >/dev/null 2>&1 || die "docker is needed"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info)"
command -v kubectl >/dev/null 2>&1 || die "kubectl is needed"
kind="$(command -v kind || true)"
if [ -z "$kind" ]; then
  kind="$("$here/install-tools.sh" kind | tail -n1)/kind"
fi
docker image inspect "$image" >/dev/null 2>&1 || die "no local image $image (make image)"

if ! "$kind" get clusters 2>/dev/null | grep -qx "$cluster"; then
  log "creating kind cluster $cluster"
  "$kind" create cluster --name "$cluster" --wait 120s
fi
context="kind-$cluster"
log "loading $image into $cluster"
"$kind" load docker-image "$image" --name "$cluster"

"$here/deploy.sh" apply --overlay "$overlay" --image "$image" --context "$context" --wait

# End to end: a ServiceAccount with a role, and a server-side dry-run Pod that must come back
# with the credentials injected by the webhook (nothing runs, nothing calls AWS).
namespace=irsa-smoke
role=arn:aws:iam::111122223333:role/irsa-smoke
kubectl --context "$context" create namespace "$namespace" --dry-run=client -o yaml \
  | kubectl --context "$context" apply -f - >/dev/null
kubectl --context "$context" -n "$namespace" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  annotations:
    eks.amazonaws.com/role-arn: ${role}
YAML
for _ in $(seq 1 30); do
  if kubectl --context "$context" -n "$namespace" run smoke --image=busybox:1.36 \
      --overrides='{"spec":{"serviceAccountName":"app"}}' --restart=Never \
      --dry-run=server -o yaml 2>/dev/null | grep -q "value: ${role}"; then
    log "ok: a Pod using ServiceAccount $namespace/app gets AWS_ROLE_ARN=${role}"
    log "kubectl context: $context (make undeploy, kind delete cluster --name $cluster)"
    exit 0
  fi
  sleep 2
done
die "the dry-run Pod was not mutated; see kubectl --context $context -n pod-identity-webhook logs deploy/pod-identity-webhook"
