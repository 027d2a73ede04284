#!/usr/bin/env bash
# One-time (and idempotent) set-up for `make demo` and `make test` on a fresh clone:
# Debian packages the suite needs, then a virtualenv with storegw and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
# mosquitto: the real broker tests start; systemd: systemd-analyze for the unit checks;
# dbus: a private bus for the fake BlueZ; fonts-dejavu-core: label rendering; postgresql: the
# server the HQ PostgreSQL sink's tests start themselves (tests/support/postgres.py).
DEB_PACKAGES=(mosquitto systemd dbus fonts-dejavu-core postgresql)
declare -A DEB_PROBE=(
  [mosquitto]=/usr/sbin/mosquitto
  [systemd]=/usr/bin/systemd-analyze
  [dbus]=/usr/bin/dbus-daemon
  [fonts-dejavu-core]=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
  [postgresql]=/usr/lib/postgresql
)

say() { printf 'setup: %s\n' "$*" >&2; }

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  [ -e "${DEB_PROBE[$pkg]}" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "missing ${missing[*]} and this is not a Debian/Ubuntu system: install them by hand"
  elif [ "$(id -u)" -eq 0 ]; then
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || say "apt-get could not install ${missing[*]}; tests needing them will fail with a clear message"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    say "installing ${missing[*]} with sudo apt-get"
    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || say "apt-get could not install ${missing[*]}"
  else
    say "missing ${missing[*]}; run: sudo apt-get install ${missing[*]}"
  fi
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "storegw needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11"
  exit 1
fi

stamp="$VENV/.storegw-installed"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing storegw and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi
