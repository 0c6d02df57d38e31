#!/usr/bin/env bash
# Make what the images are built FROM, without a container registry, and keep it between runs:
#   1. a Debian bookworm base image (debootstrap + docker import), skipped when it exists;
#   2. each image's requirements (build/requirements, from deployments/requirements and
#      pyproject.toml) and a wheelhouse for the image's Python 3.11 keyed by them;
#   3. one runtime image per package set (augment-it-runtime-NAME:local: the base, a user,
#      a virtualenv in /opt/venv), each extending the smaller one it contains. The wheelhouse
#      is mounted while pip installs and committed into no image, and the Dockerfile's stage
#      images are these plus the code: no multi-hundred-MB COPY --from per image.
# Runtime images carry the requirements' key as a label and are rebuilt when it changes.
# Prints nothing on stdout. Needs root (debootstrap) and the host's apt.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-augment-it-base:bookworm-py311}
RUNTIME=augment-it-runtime
TAG=local
CACHE_DIR=${AUGMENT_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/augment-it-e2e}
PYTHON=${PYTHON:-python3}
log() { echo "[docker-base] $*" >&2; }

apt_mirror() {
  # The first Debian archive URI apt is configured with (deb822 .sources or a one-line list).
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
        | grep -v -- '-security' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
          | grep -v -- '-security' | head -n1 || true)
  fi
  [ -n "$uri" ] || { log "no Debian mirror found in apt's sources; set MIRROR"; exit 1; }
  echo "$uri"
}

make_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE exists, skipped"
    return
  fi
  command -v debootstrap >/dev/null || { log "installing debootstrap"; apt-get install -y -qq debootstrap >&2; }
  local mirror root
  mirror=${MIRROR:-$(apt_mirror)}
  root=$(mktemp -d /tmp/augment-base.XXXXXX)
  log "debootstrap bookworm from $mirror"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >&2
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import - "$BASE_IMAGE" >&2
  rm -rf "$root"
}

make_wheelhouse() {
  # pip evaluates markers against the host's Python, not the image's 3.11.2: async-timeout is
  # needed below 3.11.3 (redis, asyncpg paths) and has to be asked for by hand.
  local dir
  "$PYTHON" deployments/docker/requirements.py build/requirements
  cp constraints.txt build/requirements/constraints.txt
  KEY=$(cat build/requirements/*.txt | sha256sum | cut -c1-16)
  dir="$CACHE_DIR/wheels-$KEY"
  if [ -f "$dir/.complete" ]; then
    log "wheelhouse $dir exists, skipped"
  else
    log "downloading wheels into $dir"
    rm -rf "$dir" && mkdir -p "$dir"
    "$PYTHON" -m pip download --quiet --dest "$dir" --only-binary=:all: \
      --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
      --python-version 3.11 --implementation cp --abi cp311 \
      -c constraints.txt -r build/requirements/all.txt "async-timeout>=4.0.3" >&2
    touch "$dir/.complete"
  fi
  WHEELS=$dir
}

runtime_is_current() {
  [ "$(docker image inspect -f '{{ index .Config.Labels "io.augment-it.requirements" }}' \
        "$RUNTIME-$1:$TAG" 2>/dev/null)" = "$KEY" ]
}

# runtime NAME PARENT: pip-install build/requirements/NAME.txt over PARENT, commit it as
# $RUNTIME-NAME:$TAG. A PARENT that is the plain base first gets the run user and the venv.
runtime() {
  local name=$1 parent=$2 container setup=""
  if runtime_is_current "$name"; then
    log "runtime image $RUNTIME-$name:$TAG is current, skipped"
    return
  fi
  if [ "$parent" = "$BASE_IMAGE" ]; then
    # /data is owned by the run user so a fresh named volume takes that ownership on mount.
    setup="useradd --uid 1000 --create-home --shell /bin/sh augment \
           && mkdir -p /data && chown augment:augment /data && python3 -m venv /opt/venv &&"
  fi
  log "runtime image $RUNTIME-$name:$TAG from $parent"
  container=$(docker create --user root --network none \
    -v "$WHEELS:/wheels:ro" -v "$PWD/build/requirements:/requirements:ro" "$parent" \
    sh -c "$setup /opt/venv/bin/pip install --quiet --no-cache-dir --no-index --find-links=/wheels \
           -c /requirements/constraints.txt -r /requirements/$name.txt")
  if ! docker start -a "$container" >&2; then
    docker rm "$container" >/dev/null
    log "installing $name.txt into $parent failed"
    return 1
  fi
  docker commit \
    --change "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1" \
    --change "ENV PREFECT_SERVER_ANALYTICS_ENABLED=false GX_ANALYTICS_ENABLED=False" \
    --change "ENV PYTHONPATH=/opt/augment-it" --change "WORKDIR /opt/augment-it" \
    --change "USER augment" --change 'CMD ["python3"]' \
    --change "LABEL io.augment-it.requirements=$KEY" \
    "$container" "$RUNTIME-$name:$TAG" >/dev/null
  docker rm "$container" >/dev/null
}

make_runtimes() {
  # Two independent chains on two cores: the server/worker set, and the stage sets.
  runtime prefect "$BASE_IMAGE" &
  local prefect_pid=$!
  runtime base "$BASE_IMAGE"
  runtime process "$RUNTIME-base:$TAG" &
  local process_pid=$!
  runtime export "$RUNTIME-base:$TAG"
  runtime collect "$RUNTIME-export:$TAG"
  runtime pipeline "$RUNTIME-collect:$TAG"
  wait "$process_pid"
  wait "$prefect_pid"
}

make_base_image
make_wheelhouse
make_runtimes
