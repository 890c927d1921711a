#!/usr/bin/env bash
# Install gVisor (Debian's `runsc`) and register it with the running Docker engine as
# the runtime "runsc" (idempotent, no stdin, a few seconds on the second run).
#
# Run as root on Debian 12 after .ci/docker-setup.sh (which owns starting dockerd):
#   .ci/gvisor-setup.sh
# What it does:
#   1. installs `runsc` from Debian when missing (apt keeps the .deb in its own cache);
#   2. merges {"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": [...]}}}
#      into /etc/docker/daemon.json, keeping every other key there;
#   3. only when that file changed: asks dockerd to reload it with SIGHUP. `runtimes` is
#      one of the settings dockerd reloads live, so running containers (other test
#      jobs) are not touched: no restart;
#   4. probes one container; where gVisor's own network stack cannot start (seen on the
#      CI machine, a VM: "cannot run with network enabled in root network namespace",
#      for bridge and none alike), it re-registers runsc with --network=none, so
#      sandboxes under gVisor have no network at all there (Pygent's default anyway).
# The platform is ptrace: Debian's runsc (2022-12) has no systrap, and KVM needs
# /dev/kvm inside the engine's sandbox. PYGENT_RUNSC_PLATFORM overrides it.
set -euo pipefail

DAEMON_JSON="${PYGENT_DAEMON_JSON:-/etc/docker/daemon.json}"
PLATFORM="${PYGENT_RUNSC_PLATFORM:-ptrace}"
IMAGE="${PYGENT_TEST_IMAGE:-pygent-test:bookworm}"
export DEBIAN_FRONTEND=noninteractive

say() { printf '[gvisor-setup] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

if ! command -v runsc >/dev/null 2>&1; then
    say "installing runsc from Debian"
    as_root apt-get update -qq </dev/null
    as_root apt-get install -y -qq --no-install-recommends runsc </dev/null
fi
say "$(runsc --version 2>/dev/null | head -n 1)"

# register FLAGS: merge runsc with "--platform=$PLATFORM FLAGS" into daemon.json;
# prints "changed" when the file was rewritten.
register() {
    as_root python3 - "$DAEMON_JSON" "$(command -v runsc)" "$PLATFORM" "$1" <<'PY'
import json, os, sys
path, runsc, platform, extra = sys.argv[1:5]
try:
    with open(path) as fh:
        config = json.load(fh)
except FileNotFoundError:
    config = {}
want = {"path": runsc, "runtimeArgs": [f"--platform={platform}", *extra.split()]}
runtimes = config.setdefault("runtimes", {})
if runtimes.get("runsc") != want:
    runtimes["runsc"] = want
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".pygent-tmp"
    with open(tmp, "w") as fh:
        json.dump(config, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    print("changed")
PY
}

# reload CHANGED: SIGHUP dockerd when the file changed, then wait until it lists runsc.
reload() {
    if [ "$1" = "changed" ]; then
        local pid
        pid=$(pgrep -x dockerd | head -n 1 || true)
        if [ -z "$pid" ]; then
            say "dockerd is not running: it reads $DAEMON_JSON when it starts"
            return 1
        fi
        say "registering runsc with dockerd (pid $pid): reload with SIGHUP"
        as_root kill -HUP "$pid"
    fi
    for _ in $(seq 1 20); do
        if docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; then
            return 0
        fi
        sleep 0.5
    done
    say "warning: the engine does not list runsc (see the dockerd log); gVisor tests will say why"
    return 1
}

# Keep the flags an earlier run chose (the probe below decides them).
current=$(python3 - "$DAEMON_JSON" <<'PY' 2>/dev/null || true
import json, sys
try:
    args = json.load(open(sys.argv[1]))["runtimes"]["runsc"]["runtimeArgs"]
except (OSError, ValueError, KeyError, TypeError):
    args = []
print(" ".join(a for a in args if not a.startswith("--platform=")))
PY
)
reload "$(register "$current")" || exit 0

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "no $IMAGE yet: not probing"
    exit 0
fi
if out=$(docker run --rm --runtime=runsc --network=none "$IMAGE" true 2>&1); then
    say "runsc runs containers (--platform=$PLATFORM $current)"
    exit 0
fi
if [ -z "$current" ] && printf '%s' "$out" | grep -q "root network namespace"; then
    say "gVisor's network stack cannot start here: $out"
    say "re-registering runsc with --network=none (no network under gVisor on this machine)"
    reload "$(register "--network=none")" || exit 0
    if out=$(docker run --rm --runtime=runsc --network=none "$IMAGE" true 2>&1); then
        say "runsc runs containers (--platform=$PLATFORM --network=none)"
        exit 0
    fi
fi
say "warning: runsc is registered but cannot run a container here: $out"
