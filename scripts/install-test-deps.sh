#!/usr/bin/env bash
# Installs the peer programs edgeplane's tests talk to (Debian packages), idempotently and
# quietly. Needs root (or sudo) and apt; does nothing when everything is already installed.
set -euo pipefail

PACKAGES=(
  knot            # knotd: a real secondary that transfers zones from edgeplane
  knot-dnsutils   # kdig: the DNS client the integration tests query with
  dnsutils        # dig: a second, independent DNS client
  nsd             # NSD: a second secondary implementation
  curl            # a real SigV4 client (--aws-sigv4) for the admin API
)
if [ "${1:-}" = "--bench" ]; then
  PACKAGES+=(dnsperf)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing test peers: ${missing[*]}" >&2
# Keep the packaged daemons from starting on install: the tests start their own.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "$created_policy" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
for p in "${missing[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || { echo "failed to install $p" >&2; exit 1; }
done
