"""The VS Code extension's own checks, run from pytest: ``editors/vscode/scripts/ci.sh``.

The script does npm ci, type-check, lint, unit tests, the chat page in Chromium, the
extension's controller against the real ``pygent lsp``, and the ``.vsix`` package (plus
the code-server end-to-end test when ``PYGENT_E2E_VSCODE=1``). It needs Node 20+, npm
and Chromium; a missing tool is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "editors" / "vscode" / "scripts" / "ci.sh"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_vscode_extension_checks_pass() -> None:
    for tool in ("node", "npm", "bash"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed for the VS Code extension checks")
    env = {**os.environ, "PYGENT_PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=3500,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "OK: the VS Code extension passed every check." in proc.stdout
