#!/usr/bin/env bash
# Installs what the network-namespace test of the node agent needs (tests/e2e/
# test_pod_identity_netns.py): iproute2's `ip`. Debian's package, as root; a no-op when `ip`
# is already there.
#
# Usage: tools/netns/install.sh
set -euo pipefail

log() { printf 'tools/netns/install.sh: %s\n' "$*" >&2; }

if command -v ip >/dev/null 2>&1; then
  log "ip is installed: $(command -v ip)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "error: iproute2 is missing and installing it needs root"
  exit 1
fi
log "installing iproute2"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 >&2
command -v ip >/dev/null
