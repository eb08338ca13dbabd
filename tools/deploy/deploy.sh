#!/usr/bin/env bash
# Renders a kustomize overlay of manifests/ with a given image, and applies or deletes it.
#
# Usage:
#   tools/deploy/deploy.sh render|apply|delete [--overlay NAME|DIR] [--image REF]
#                          [--context NAME] [--wait] [-- KUBECTL_ARGS...]
#
#   render     print the objects (kustomize build), nothing else
#   apply      kubectl apply them; with --wait, wait for the Deployment's rollout
#   delete     kubectl delete them: the webhook configuration first, so that no Pod
#              creation is sent to a webhook that is going away
#   --overlay  manifests/overlays/NAME or a kustomization directory (default self-signed)
#   --image    the webhook image, REPO[:TAG] or REPO@sha256:... (default: the overlay's)
#   --context  kubectl context (default: the current one)
#   after --   extra kubectl arguments, e.g. -- --dry-run=server
#
# The self-signed overlay needs tools/deploy/self-signed.sh's output; when it is missing,
# this script runs self-signed.sh first. kustomize comes from tools/deploy/install-tools.sh
# (or $KUSTOMIZE); kubectl from PATH (or $KUBECTL). Nothing is written into the repository
# except the self-signed overlay's generated/ directory.
set -euo pipefail

log() { printf 'tools/deploy/deploy.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

[ "$#" -gt 0 ] || { usage; exit 2; }
action="$1"
shift
case "$action" in
  render|apply|delete) ;;
  -h|--help) usage; exit 0 ;;
  *) usage; die "unknown action: $action" ;;
esac

overlay=self-signed
image=""
context=""
wait=0
kubectl_args=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --overlay|--image|--context)
      [ "$#" -ge 2 ] || die "$1 needs a value"
      case "$1" in
        --overlay) overlay="$2" ;;
        --image) image="$2" ;;
        --context) context="$2" ;;
      esac
      shift 2 ;;
    --wait) wait=1; shift ;;
    --) shift; kubectl_args=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
  esac
done

case "$overlay" in
  */*) dir="$(cd "$overlay" && pwd)" ;;
  *) dir="$repo/manifests/overlays/$overlay" ;;
esac
[ -f "$dir/kustomization.yaml" ] || die "no kustomization.yaml in $dir"

if [ "$(basename "$dir")" = self-signed ] && [ ! -f "$dir/generated/ca-bundle.yaml" ]; then
  log "no certificates in $dir/generated yet: running tools/deploy/self-signed.sh"
  "$here/self-signed.sh" --out "$dir/generated"
fi

kustomize="${KUSTOMIZE:-}"
if [ -z "$kustomize" ]; then
  kustomize="$("$here/install-tools.sh" kustomize | tail -n1)/kustomize"
fi
kubectl="${KUBECTL:-kubectl}"
context_args=()
if [ -n "$context" ]; then
  context_args=(--context "$context")
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# A throw-away kustomization on top of the overlay sets the image, so the committed files
# never change. kustomize wants a relative path to the overlay.
{
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n'
  printf 'resources:\n  - %s\n' "$(realpath --relative-to="$tmp" "$dir")"
  if [ -n "$image" ]; then
    printf 'images:\n  - name: pod-identity-webhook\n'
    if [[ "$image" == *@* ]]; then
      printf '    newName: "%s"\n    digest: "%s"\n' "${image%@*}" "${image#*@}"
    elif [[ "${image##*/}" == *:* ]]; then
      # The tag is after the last colon of the last path segment (a registry may have a port).
      printf '    newName: "%s"\n    newTag: "%s"\n' "${image%:*}" "${image##*:}"
    else
      printf '    newName: "%s"\n' "$image"
    fi
  fi
} >"$tmp/kustomization.yaml"
"$kustomize" build "$tmp" >"$tmp/objects.yaml"

case "$action" in
  render)
    cat "$tmp/objects.yaml" ;;
  apply)
    "$kubectl" apply "${context_args[@]}" "${kubectl_args[@]}" -f "$tmp/objects.yaml"
    if [ "$wait" = 1 ]; then
      namespace="$(awk '/^kind: Deployment$/ {d=1} d && /^  namespace:/ {print $2; exit}' "$tmp/objects.yaml")"
      "$kubectl" rollout status "${context_args[@]}" -n "$namespace" \
        deployment/pod-identity-webhook --timeout=180s
    fi ;;
  delete)
    # The webhook configuration first: Pods created meanwhile never call a vanishing webhook.
    awk -v hooks="$tmp/webhook.yaml" -v rest="$tmp/rest.yaml" '
      function flush() { if (doc != "") { print doc "---" > (hook ? hooks : rest) } doc = ""; hook = 0 }
      /^---$/ { flush(); next }
      /^kind: MutatingWebhookConfiguration$/ { hook = 1 }
      { doc = doc $0 "\n" }
      END { flush() }
    ' "$tmp/objects.yaml"
    for part in webhook rest; do
      if [ -s "$tmp/$part.yaml" ]; then
        "$kubectl" delete "${context_args[@]}" "${kubectl_args[@]}" --ignore-not-found \
          -f "$tmp/$part.yaml"
      fi
    done ;;
esac
