"""Running a real editor headless against ``pygent lsp --stdio`` (Neovim and Emacs tests).

The editor's script (Lua or elisp, beside the tests) starts the server from
``PYGENT_LSP_CMD``, works in ``PYGENT_TEST_ROOT`` and writes what it saw as JSON to
``PYGENT_TEST_OUT``; the test asserts on that.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.lsp.conftest import SERVER_COMMAND, server_env
from tests.openai_server import ScriptedOpenAIServer


def run_editor(argv: list[str], *, tmp_path: Path, openai_server: ScriptedOpenAIServer,
               root: Path, out: Path, timeout: float = 100
               ) -> tuple[dict[str, Any], subprocess.CompletedProcess[bytes]]:
    """Run the editor to its end; returns the JSON its script wrote and the process
    (its stderr explains a failed assertion)."""
    env = server_env(tmp_path / "server", openai_server)
    env.update({
        "PYGENT_LSP_CMD": json.dumps(SERVER_COMMAND),
        "PYGENT_TEST_ROOT": str(root),
        "PYGENT_TEST_OUT": str(out),
        "TERM": "dumb",
    })
    proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert out.exists(), (
        f"{Path(argv[0]).name} wrote no result: {proc.stdout[-2000:]!r} {proc.stderr[-4000:]!r}"
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result, proc
