#!/usr/bin/env bash
# End to end in containers, with no registry: base image, wheelhouse and runtime images (cached
# between runs), stage images, the compose stack (PostgreSQL, server, one Docker worker per pool),
# `prefect deploy --all`, a pipeline run on the bundled example paused for review, the review
# resumed through the API, then checks: every stage in its own container from its own image,
# and the export's counts. Cleans up its containers and volumes however it ends.
#
#   scripts/e2e-docker.sh                 # needs root (debootstrap), Docker, docker-compose 1.29
#   VENV=/path/to/venv scripts/e2e-docker.sh   # use an existing environment instead of .venv
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
step() { echo "[e2e $(( $(date +%s) - started ))s] $*"; }

if [ -z "${VENV:-}" ]; then
  scripts/bootstrap.sh
  VENV=.venv
fi
PY=$VENV/bin/python
PREFECT=$VENV/bin/prefect

export PREFECT_SERVER_ANALYTICS_ENABLED=false DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-augment-e2e}
export POSTGRES_PASSWORD=${POSTGRES_PASSWORD:-$("$PY" -c 'import secrets; print(secrets.token_hex(16))')}
export DOCKER_GID=${DOCKER_GID:-$(stat -c %g /var/run/docker.sock)}
export PREFECT_PORT=${PREFECT_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export PREFECT_API_URL=http://127.0.0.1:$PREFECT_PORT/api
work=$(mktemp -d /tmp/augment-e2e.XXXXXX)
events_pid=""

cleanup() {
  status=$?
  step "cleaning up (exit $status)"
  if [ "$status" -ne 0 ]; then
    docker-compose logs --no-color --tail=60 >&2 || true
  fi
  [ -n "$events_pid" ] && kill "$events_pid" 2>/dev/null || true
  # Flow-run containers remove themselves (auto_remove); any left by a failure go here.
  docker ps -aq --filter "label=io.prefect.version" --filter "network=augment-it" | xargs -r docker rm -f >/dev/null || true
  docker-compose down -v --remove-orphans >/dev/null 2>&1 || true
  docker ps -aq --filter status=exited --filter status=created --filter "ancestor=augment-it-base:bookworm-py311" \
    | xargs -r docker rm >/dev/null 2>&1 || true  # classic-builder leftovers from failed steps
  rm -rf "$work"
  step "done"
  exit "$status"
}
trap cleanup EXIT INT TERM

step "base image, wheelhouse, runtime images"
scripts/docker-base.sh >/dev/null

step "images: server/worker and PostgreSQL"
docker-compose build --quiet --parallel db server

step "compose up"
docker-compose up -d --quiet-pull 2>&1 | grep -v "^Creating\|^Starting" || true
deadline=$(( $(date +%s) + 300 ))
until [ "$(docker-compose ps -q | xargs docker inspect -f '{{.State.Health.Status}}' | sort -u)" = "healthy" ]; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    docker-compose ps >&2
    echo "services not healthy in 300 s" >&2
    exit 1
  fi
  sleep 3
done
docker-compose ps

step "prefect deploy --all (builds the five stage images, no push)"
"$PREFECT" --no-prompt deploy --all > "$work/deploy.log" 2>&1 || { cat "$work/deploy.log" >&2; exit 1; }
"$PREFECT" deployment ls

# Which container Docker starts for which flow run, from which image (containers remove themselves).
docker events --filter type=container --filter event=start \
  --format '{{.ID}} {{.From}} {{index .Actor.Attributes "io.prefect.flow-run-id"}}' > "$work/events" &
events_pid=$!

out=/data/runs/e2e-$(date +%Y%m%d-%H%M%S)
step "prefect deployment run augment-pipeline/augment-pipeline (review: ui) → $out"
"$PREFECT" deployment run augment-pipeline/augment-pipeline \
  --param "out=$out" --param review_policy=ui --param id_column=company_id | tee "$work/run.log"
run_id=$(grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' "$work/run.log" | head -n1)
[ -n "$run_id" ] || { echo "no flow run id in the output above" >&2; exit 1; }

step "waiting for the review to pause, resuming it, checking containers and export"
"$PY" scripts/e2e_docker_check.py "$run_id" "$out" "$work/events"
step "passed"
