#!/usr/bin/env bash
# Podman (Debian 12's 4.3) as an engine behind the Docker API, for tests/podman and
# bench/bench_sandboxes.py. Run as root after .ci/docker-setup.sh (the test images come
# from the Docker engine: `docker save | podman load`, no registry).
#
# What it prepares (the tests start and stop `podman system service` themselves):
#   1. podman installed when missing (apt);
#   2. a rootful image store of its own, $STATE/rootful (never the machine's default
#      /var/lib/containers), holding the test images;
#   3. for rootless Podman: the user pygent-podman with a subordinate uid/gid range
#      (/etc/subuid, /etc/subgid), its store $STATE/rootless (overlay, owned by that
#      user, set in its ~/.config/containers/storage.conf), holding the same images.
# Images are reloaded only when the Docker engine's image id changed (a marker file per
# store): ~15 s the first time, well under a second after that.
# Prints the settings the tests read (KEY=value lines; also written to $STATE/env).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
IMAGES=(${PYGENT_PODMAN_IMAGES:-${PYGENT_TEST_IMAGE:-pygent-test:bookworm} pygent-busybox:latest})
USER_NAME=${PYGENT_PODMAN_USER:-pygent-podman}
say() { printf '[podman-setup] %s\n' "$*" >&2; }

if ! command -v podman >/dev/null; then
  say "installing podman"
  apt-get install -y -qq podman >/dev/null 2>&1 || {
    apt-get update -qq && apt-get install -y -qq podman >/dev/null
  }
fi
VERSION=$(podman --version | awk '{print $3}')
STATE=${PYGENT_PODMAN_STATE:-/var/cache/pygent/podman-$VERSION}
mkdir -p "$STATE/rootful"
chmod 755 "$STATE"

# load IMAGE into a store unless that store already has this exact image id.
#   $1: the store's marker folder; the rest: the podman command (with its flags).
load_images() {
  local marks=$1; shift
  local image id mark
  for image in "${IMAGES[@]}"; do
    id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null) || { say "no $image in Docker: skipped"; continue; }
    mark="$marks/$(printf '%s' "$image" | tr '/:' '__').id"
    if [ "$(cat "$mark" 2>/dev/null)" = "$id" ] && "$@" image exists "$image" 2>/dev/null; then
      continue
    fi
    say "loading $image into $marks"
    docker save "$image" | "$@" load -q >/dev/null
    printf '%s' "$id" >"$mark"
  done
}

# Podman keeps each exec session's conmon monitor up for exit_command_delay seconds (300 by
# default) after the session ends; the tests' services use 5 so no stray process outlives a
# test run by minutes (CONTAINERS_CONF for the rootful one, the user's file for rootless).
CONF=$STATE/containers.conf
printf '[engine]\nexit_command_delay = 5\n' >"$CONF"

# --- rootful: a private store -----------------------------------------------------------------
# Podman records runroot and tmpdir in the store's database: the tests' service must use the
# same ones (PYGENT_PODMAN_ROOTFUL_FLAGS).
ROOTFUL_RUN=/run/pygent-podman-rootful
ROOTFUL_FLAGS="--root $STATE/rootful/storage --runroot $ROOTFUL_RUN/storage --tmpdir $ROOTFUL_RUN/libpod --storage-driver overlay"
ROOTFUL=(podman $ROOTFUL_FLAGS)
load_images "$STATE/rootful" "${ROOTFUL[@]}"

# --- rootless: a user with subordinate ids ----------------------------------------------------
ROOTLESS_OK=1
ROOTLESS_WHY=""
if ! id "$USER_NAME" >/dev/null 2>&1; then
  useradd -m -s /bin/sh "$USER_NAME"   # Debian's useradd also allots a subuid/subgid range
fi
grep -q "^$USER_NAME:" /etc/subuid || usermod --add-subuids 100000-165535 "$USER_NAME"
grep -q "^$USER_NAME:" /etc/subgid || usermod --add-subgids 100000-165535 "$USER_NAME"
UID_N=$(id -u "$USER_NAME")
HOME_DIR=$(getent passwd "$USER_NAME" | cut -d: -f6)
install -d -o "$USER_NAME" -g "$USER_NAME" "$STATE/rootless" "$HOME_DIR/.config/containers"
# overlay in the user's namespace (kernel >= 5.11): vfs would copy the whole image per container.
cat >"$HOME_DIR/.config/containers/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$STATE/rootless/storage"
runroot = "/run/pygent-podman-$UID_N/storage"
CONF
cp "$CONF" "$HOME_DIR/.config/containers/containers.conf"
chown "$USER_NAME:" "$HOME_DIR/.config/containers/storage.conf" "$HOME_DIR/.config/containers/containers.conf"
install -d -m 700 -o "$USER_NAME" -g "$USER_NAME" "/run/pygent-podman-$UID_N"
ROOTLESS=(runuser -u "$USER_NAME" -- env HOME="$HOME_DIR" XDG_RUNTIME_DIR="/run/pygent-podman-$UID_N" podman)
if ! out=$("${ROOTLESS[@]}" info --format '{{.Store.GraphDriverName}}' 2>&1); then
  ROOTLESS_OK=0
  ROOTLESS_WHY="rootless podman does not start for $USER_NAME: $(printf '%s' "$out" | tail -1)"
  say "$ROOTLESS_WHY"
else
  load_images "$STATE/rootless" "${ROOTLESS[@]}"
fi
# Rootless podman leaves its user namespace's holder (catatonit -P) running: stop the one
# this script started, unless a service (the tests') still uses it.
PAUSE="/run/pygent-podman-$UID_N/libpod/tmp/pause.pid"
if [ -f "$PAUSE" ] && [ ! -S "/run/pygent-podman-$UID_N/podman.sock" ]; then
  kill "$(cat "$PAUSE")" 2>/dev/null || true
  rm -f "$PAUSE"
fi

cat >"$STATE/env" <<ENV
PYGENT_PODMAN_VERSION=$VERSION
PYGENT_PODMAN_ROOTFUL_FLAGS=$ROOTFUL_FLAGS
PYGENT_PODMAN_ROOTFUL_RUN=$ROOTFUL_RUN
PYGENT_PODMAN_CONF=$CONF
PYGENT_PODMAN_ROOTLESS_USER=$USER_NAME
PYGENT_PODMAN_ROOTLESS_UID=$UID_N
PYGENT_PODMAN_ROOTLESS_HOME=$HOME_DIR
PYGENT_PODMAN_ROOTLESS_RUN=/run/pygent-podman-$UID_N
PYGENT_PODMAN_ROOTLESS_OK=$ROOTLESS_OK
PYGENT_PODMAN_ROOTLESS_WHY=$ROOTLESS_WHY
ENV
cat "$STATE/env"
