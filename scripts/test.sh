#!/usr/bin/env bash
# Install what is missing (scripts/bootstrap.sh), then run the tests. Arguments go to pytest:
#   scripts/test.sh                      # everything (the integration tests start their own
#                                        # broker and ClickHouse on test ports)
#   scripts/test.sh tests/unit -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/bootstrap.sh"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
exec "$PYTHON" -m pytest -q "$@"
