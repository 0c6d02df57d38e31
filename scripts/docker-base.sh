#!/usr/bin/env bash
# Make what the images are built from, without a container registry, and keep it between runs:
#   1. a Debian bookworm base image (debootstrap + docker import), skipped when it exists;
#   2. each image's requirements (build/requirements, from deployments/requirements and
#      pyproject.toml) and a wheelhouse for the image's Python 3.11 keyed by them, copied into
#      build/wheels. Both are in the build context and ignored by git.
# Prints nothing on stdout but the base image's name. Needs root (debootstrap) and the host's apt.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-augment-it-base:bookworm-py311}
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
  local key dir
  "$PYTHON" deployments/docker/requirements.py build/requirements
  key=$(cat build/requirements/*.txt constraints.txt | sha256sum | cut -c1-16)
  dir="$CACHE_DIR/wheels-$key"
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
  rm -rf build/wheels && mkdir -p build
  cp -al "$dir" build/wheels 2>/dev/null || cp -a "$dir" build/wheels
}

make_base_image
make_wheelhouse
echo "$BASE_IMAGE"
