#!/usr/bin/env bash
# One idempotent set-up step for `make demo`, `make test` and `make bench` on a fresh Debian 12 machine (root).
# - installs the Debian packages triomesh needs when they are missing;
# - creates the virtualenv from Debian's /usr/bin/python3, OUTSIDE /root, so the proxy can run as UID 1337;
# - installs triomesh into it (not editable: a UID-1337 process may not be able to read the checkout).
set -euo pipefail

VENV="${VENV:-/opt/triomesh/venv}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extra="${1:-dev}"

need_debs=()
command -v iptables-nft-restore >/dev/null 2>&1 || need_debs+=(iptables)
command -v ip >/dev/null 2>&1 || need_debs+=(iproute2)
command -v setpriv >/dev/null 2>&1 || need_debs+=(util-linux)
/usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_debs+=(python3-venv)
if [ "${#need_debs[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${need_debs[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${need_debs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_debs[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtualenv $VENV (Debian python3)"
  mkdir -p "$(dirname "$VENV")"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip setuptools wheel
fi
chmod 755 "$(dirname "$VENV")" "$VENV"

# Dependencies are reinstalled only when pyproject.toml changes; the project itself every time (seconds).
stamp="$VENV/.triomesh-deps-$extra"
sum="$(sha256sum "$here/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  echo "setup: installing dependencies ($extra)"
  "$VENV/bin/pip" install -q "$here[$extra]"
  echo "$sum" > "$stamp"
fi
"$VENV/bin/pip" install -q --no-deps --no-build-isolation --force-reinstall "$here" 2>&1 \
  | grep -v -e '^WARNING: Location' || true
# The build leaves a build/ tree and egg-info behind in the checkout; they are not ours to keep.
rm -rf "$here/build" "$here"/*.egg-info
