#!/usr/bin/env bash
# The whole local stack and a simulated program with injected anomalies, on a fresh machine:
# installs what is missing, starts broker + ClickHouse + worker + the analysts' console
# (`incentives dev up`), prints where to sign in to the console, then runs the simulation and
# follows it (the live ticker). Stop the stack afterwards with `incentives dev down`.
# Arguments go to `incentives simulate`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/bootstrap.sh"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
incentives() { "$PYTHON" -m processor.cli.main "$@"; }
up_log="$(mktemp)"
trap 'rm -f "$up_log"' EXIT
incentives dev up | tee "$up_log"
# `dev up` prints "console     sign in at URL as NAME / password PW" (or how to add a user)
console_line="$(grep -m1 '^console .*sign in at' "$up_log" | sed 's/^console *//' || true)"
echo
echo "==> Analysts' console: ${console_line:-not started (see above)}"
echo "==> Live ticker below; Ctrl-C stops it, the stack keeps running (incentives dev down stops it)."
echo
incentives simulate --follow "$@"
