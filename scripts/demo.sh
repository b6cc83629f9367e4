#!/usr/bin/env bash
# The whole local stack and a simulated program with injected anomalies, on a fresh machine:
# installs what is missing, starts broker + ClickHouse + worker (`incentives dev up`), then
# runs the simulation and follows it. Stop the stack afterwards with `incentives dev down`.
# Arguments go to `incentives simulate`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/bootstrap.sh"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
incentives() { "$PYTHON" -m processor.cli.main "$@"; }
incentives dev up
incentives simulate --follow "$@"
