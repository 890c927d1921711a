#!/usr/bin/env bash
# The real linters, type checkers and compilers whose output tests/diagnostics reads
# (issue 20): clang, Go and Rust from Debian, tsc/eslint/pyright from npm. ruff, mypy,
# flake8 and pytest come with pip's `test` extra.
#
# Run on Debian 12 (no stdin needed):  .ci/diagnostics-setup.sh
# The npm tools go to $PYGENT_CACHE_DIR/diagnostics-node-$KEY (default under
# /var/cache/pygent), linked as .../diagnostics-node, where tests/diagnostics/capture.py
# looks (PYGENT_NODE_TOOLS overrides); a second run only checks they answer.
set -euo pipefail

TYPESCRIPT=5.9.3
ESLINT=9.39.5
ESLINT_UNIX=9.0.1
PYRIGHT=1.1.414
KEY="ts$TYPESCRIPT-eslint$ESLINT-unix$ESLINT_UNIX-pyright$PYRIGHT"

CACHE_DIR="${PYGENT_CACHE_DIR:-/var/cache/pygent}"
DIR="$CACHE_DIR/diagnostics-node-$KEY"
LINK="$CACHE_DIR/diagnostics-node"
say() { printf '[diagnostics-setup] %s\n' "$*" >&2; }

need=()
command -v gcc >/dev/null || need+=(gcc)
command -v clang >/dev/null || need+=(clang)
command -v go >/dev/null || need+=(golang-go)
command -v cargo >/dev/null || need+=(cargo)   # brings rustc
command -v npm >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
    say "apt-get install ${need[*]}"
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x "$DIR/node_modules/.bin/tsc" ] || ! "$DIR/node_modules/.bin/tsc" --version </dev/null >/dev/null 2>&1; then
    say "npm install typescript eslint pyright into $DIR"
    rm -rf "$DIR.tmp"
    mkdir -p "$DIR.tmp"
    npm install --prefix "$DIR.tmp" --no-audit --no-fund --loglevel=error \
        "typescript@$TYPESCRIPT" "eslint@$ESLINT" "eslint-formatter-unix@$ESLINT_UNIX" \
        "pyright@$PYRIGHT" </dev/null
    rm -rf "$DIR"
    mv "$DIR.tmp" "$DIR"    # only a complete install takes the cached name
fi
ln -sfn "$DIR" "$LINK"
say "tsc $("$LINK/node_modules/.bin/tsc" --version </dev/null), eslint $("$LINK/node_modules/.bin/eslint" --version </dev/null)"
