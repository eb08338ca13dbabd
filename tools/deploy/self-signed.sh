#!/usr/bin/env bash
# Writes the inputs of manifests/overlays/self-signed: a CA and a serving certificate made by
# `pod-identity-webhook certs`, and a kustomize patch that puts the CA into the webhook
# configuration's caBundle.
#
# Usage:
#   tools/deploy/self-signed.sh [--namespace NS] [--service-name NAME] [--days N] [--out DIR]
#                               [--configuration NAME] [--webhook NAME] [--dns NAME]...
#
#   --namespace       the webhook Service's namespace (default pod-identity-webhook)
#   --service-name    the webhook Service's name (default pod-identity-webhook)
#   --days            lifetime of the serving certificate (default 365)
#   --out             output directory (default manifests/overlays/self-signed/generated)
#   --configuration   MutatingWebhookConfiguration to patch (default pod-identity-webhook)
#   --webhook         webhook entry in it (default pod-identity-webhook.amazonaws.com)
#   --dns             an extra DNS name for the serving certificate (repeatable), e.g. for a
#                     webhook registered by URL or on the host network
#
# Writes tls.crt, tls.key, ca.crt and ca-bundle.yaml into the output directory. The CA key
# is made in a temporary directory and deleted: nothing can sign with this CA afterwards, so
# renewing means a new CA. When the directory already holds a different ca.crt, that previous
# CA stays in the caBundle beside the new one, so replicas still serving the old certificate
# (until the kubelet refreshes their Secret volume, about a minute) keep being trusted; the
# run after that drops it.
#
# Environment:
#   POD_IDENTITY_WEBHOOK   the webhook command (default: the repository's .venv, else PATH)
set -euo pipefail

log() { printf 'tools/deploy/self-signed.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

namespace=pod-identity-webhook
service=pod-identity-webhook
days=365
out="$repo/manifests/overlays/self-signed/generated"
configuration=pod-identity-webhook
webhook=pod-identity-webhook.amazonaws.com
extra=()

while [ "$#" -gt 0 ]; do
  case "$1" in
    --namespace|--service-name|--days|--out|--configuration|--webhook|--dns)
      [ "$#" -ge 2 ] || die "$1 needs a value"
      case "$1" in
        --namespace) namespace="$2" ;;
        --service-name) service="$2" ;;
        --days) days="$2" ;;
        --out) out="$2" ;;
        --configuration) configuration="$2" ;;
        --webhook) webhook="$2" ;;
        --dns) extra+=(--dns "$2") ;;
      esac
      shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
  esac
done

command="${POD_IDENTITY_WEBHOOK:-}"
if [ -z "$command" ]; then
  if [ -x "$repo/.venv/bin/pod-identity-webhook" ]; then
    command="$repo/.venv/bin/pod-identity-webhook"
  else
    command=pod-identity-webhook
  fi
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# `certs` checks the names and the lifetime and prints why it refuses them.
"$command" certs --dir "$tmp/certs" --namespace "$namespace" --service-name "$service" \
  --days "$days" ${extra[@]+"${extra[@]}"} >"$tmp/certs.log" || { cat "$tmp/certs.log" >&2; die "certs failed"; }

mkdir -p "$out"
bundle="$tmp/bundle.pem"
cp "$tmp/certs/ca.crt" "$bundle"
if [ -f "$out/ca.crt" ] && ! cmp -s "$out/ca.crt" "$tmp/certs/ca.crt"; then
  # Only the first certificate of the old file: the bundle never grows beyond two CAs.
  awk '{print} /-----END CERTIFICATE-----/ {exit}' "$out/ca.crt" >>"$bundle"
  log "kept the previous CA in the caBundle; the next run drops it"
fi
ca_bundle="$(base64 <"$bundle" | tr -d '\n')"

# Replace the files atomically (rename), the key created private.
(umask 077 && cp "$tmp/certs/tls.key" "$out/.tls.key.new")
cp "$tmp/certs/tls.crt" "$out/.tls.crt.new"
cp "$tmp/certs/ca.crt" "$out/.ca.crt.new"
cat >"$out/.ca-bundle.yaml.new" <<YAML
# Written by tools/deploy/self-signed.sh for Service ${service}.${namespace}: the CA(s) that
# signed tls.crt, as the webhook configuration's caBundle.
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: ${configuration}
webhooks:
  - name: ${webhook}
    clientConfig:
      caBundle: ${ca_bundle}
YAML
for name in tls.key tls.crt ca.crt ca-bundle.yaml; do
  mv -f "$out/.$name.new" "$out/$name"
done
sed -n 's/^serving names: /serving names: /p' "$tmp/certs.log" >&2
log "wrote $out/{tls.crt,tls.key,ca.crt,ca-bundle.yaml}"
