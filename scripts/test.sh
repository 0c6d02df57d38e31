#!/usr/bin/env bash
# Lint and the whole test suite against real Prefect and local provider stand-ins.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PREFECT_SERVER_ANALYTICS_ENABLED=false
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
