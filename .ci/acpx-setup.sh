#!/usr/bin/env bash
# acpx (npm), the headless Agent Client Protocol client that tests/acp/test_acpx.py drives
# `pygent acp` with (issue 16).
#
# Run on Debian 12 with Node 20 and npm (no stdin needed):  .ci/acpx-setup.sh
# Installed into $PYGENT_CACHE_DIR/acpx-$ACPX (default /var/cache/pygent/acpx-0.19.1), so a
# second run only checks that the binary answers. tests/acp/test_acpx.py reads the same
# version (ACPX_VERSION) to find it; PYGENT_ACPX overrides the path.
set -euo pipefail

ACPX=0.19.1   # bump here and in tests/acp/test_acpx.py

CACHE_DIR="${PYGENT_CACHE_DIR:-/var/cache/pygent}"
DIR="$CACHE_DIR/acpx-$ACPX"
BIN="$DIR/node_modules/.bin/acpx"
say() { printf '[acpx-setup] %s\n' "$*" >&2; }

if ! command -v npm >/dev/null; then
    say "npm is missing: installing Debian's nodejs and npm"
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -x "$BIN" ] || ! "$BIN" --version </dev/null >/dev/null 2>&1; then
    say "npm install acpx@$ACPX into $DIR"
    rm -rf "$DIR.tmp"
    mkdir -p "$DIR.tmp"
    npm install --prefix "$DIR.tmp" --no-audit --no-fund --loglevel=error "acpx@$ACPX" </dev/null
    rm -rf "$DIR"
    mv "$DIR.tmp" "$DIR"    # only a complete install takes the cached name
fi
say "acpx $("$BIN" --version </dev/null) at $BIN"
