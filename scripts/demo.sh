#!/usr/bin/env bash
# The main job on the bundled examples: no API key needed (the AI step says how to enable it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PREFECT_SERVER_ANALYTICS_ENABLED=false
exec .venv/bin/augment run examples/data/companies.csv \
  --template examples/templates/company-profile.yaml --id-column company_id --out out/demo "$@"
