#!/usr/bin/env bash
# The VS Code extension's whole check, from a clean clone, without a terminal:
#   npm ci -> typecheck -> lint -> unit tests -> protocol mirror -> bundle ->
#   chat page in Chromium -> controller against the real `pygent lsp` -> .vsix
# and, with PYGENT_E2E_VSCODE=1, the end-to-end test in code-server.
#
# Environment:
#   PYGENT_PYTHON            the Python with Pygent and its test extras (default: python3)
#   PYGENT_E2E_VSCODE=1      also run scripts/e2e-code-server.sh (installs code-server
#                            into PYGENT_CODE_SERVER_CACHE, default /var/cache/pygent/code-server)
#   CHROMIUM                 the browser (default /usr/bin/chromium)
# Nothing is cached inside the clone except node_modules/ (and the gitignored build
# outputs dist/, out/, media/chat.js, test-artifacts/).
set -euo pipefail
exec </dev/null

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYGENT_PYTHON:-python3}"
export PYGENT_PYTHON="$PYTHON"
cd "$HERE"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }
trap 'fail "editors/vscode/scripts/ci.sh, line $LINENO: $BASH_COMMAND"' ERR

command -v node >/dev/null || fail "node is not installed (Node 20 or newer is needed)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || fail "Node 20 or newer is needed, found $(node --version)"
"$PYTHON" -c 'import pygent.lsp.server, pytest' 2>/dev/null \
  || fail "$PYTHON cannot import pygent.lsp.server and pytest: install the repository with its test extras (pip install -e '.[test]') or set PYGENT_PYTHON"
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || fail "Chromium not found at ${CHROMIUM:-/usr/bin/chromium} (apt-get install -y chromium, or set CHROMIUM)"

step "npm ci"
npm ci --no-audit --no-fund

step "typecheck (extension, webview, tests)"
npm run -s typecheck

step "lint"
npm run -s lint

step "unit tests (fake vscode)"
npm run -s test:unit

step "protocol mirror (pygent/lsp/protocol.py <-> src/protocol.ts)"
(cd "$REPO" && "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_protocol_mirror.py)

step "bundle"
npm run -s bundle

step "chat page in headless Chromium"
npm run -s test:browser

step "controller against the real pygent lsp"
npm run -s test:server

step "package (.vsix)"
rm -f dist/*.vsix
npx vsce package --no-dependencies --out dist/pygent-vscode.vsix
node scripts/check-vsix.mjs dist/pygent-vscode.vsix

if [ "${PYGENT_E2E_VSCODE:-0}" = "1" ]; then
  step "end to end in code-server"
  bash scripts/e2e-code-server.sh dist/pygent-vscode.vsix
else
  printf '\n(code-server end-to-end test not run: set PYGENT_E2E_VSCODE=1)\n'
fi

trap - ERR
printf '\nOK: the VS Code extension passed every check.\n'
