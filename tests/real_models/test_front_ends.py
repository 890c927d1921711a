"""The real front ends against real servers: the REPL in a pseudo-terminal, the LSP server
through a pytest-lsp client. One short prompt each, answered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pexpect
import pytest
from lsprotocol import types
from pytest_lsp import make_test_lsp_client

from pygent.lsp import protocol as p
from tests.lsp.conftest import CAPABILITIES, SERVER_COMMAND, Updates, request, server_env
from tests.real_models import servers
from tests.real_models.conftest import ALL_TOOLS
from tests.real_models.servers import ServerProcess
from tests.repl.conftest import Term, pygent_command, terminal_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

QUESTION = "What is the capital of France?"


def model_variables(server: ServerProcess) -> dict[str, str]:
    """What a user exports to use ``server``: no tools, so the answer is plain text."""
    return {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": server.api_key,
        "PYGENT_MODEL": servers.MODEL_NAME,
        "PYGENT_TEMPERATURE": "0",
        "PYGENT_DISABLED_TOOLS": ",".join(ALL_TOOLS),
        "PYGENT_USE_DOCKER": "0",
    }


def test_repl_answers_from_llama_cpp_python(
    tmp_path: Path, llama_cpp_python: ServerProcess
) -> None:
    env = terminal_env(tmp_path / "home", **model_variables(llama_cpp_python))
    argv = [*pygent_command(), "--no-docker"]
    child = pexpect.spawn(
        argv[0],
        argv[1:],
        env=env,
        cwd=str(tmp_path),
        encoding="utf-8",
        codec_errors="replace",
        dimensions=(50, 120),
        timeout=60,
    )
    try:
        term = Term(child)
        term.expect(rf"model {servers.MODEL_NAME} · local")
        term.wait_prompt(timeout=30)
        term.send_line(QUESTION)
        term.expect(r"Paris", timeout=60)
        term.wait_prompt(timeout=60)
        term.send_line("/usage")
        # llama-cpp-python reports no usage: the counts shown are estimates, and say so.
        term.expect(r"tokens: ~\d+ in · ~\d+ out this turn.*estimated", timeout=20)
        term.wait_prompt()
        term.send_line("/exit")
        assert term.wait_exit(timeout=30) == 0
        assert "Traceback" not in term.text, term.text[-3000:]
    finally:
        if child.isalive():
            child.terminate(force=True)


async def test_lsp_prompt_answers_from_llama_server(
    tmp_path: Path, llama_server: ServerProcess
) -> None:
    env = server_env(
        tmp_path / "lsp",
        SimpleNamespace(base_url=llama_server.base_url),
        PYGENT_REQUEST_TIMEOUT="60",
        **model_variables(llama_server),
    )
    client = make_test_lsp_client()
    updates = Updates()

    def on_update(params: Any) -> None:
        updates.add(params)

    client.feature("pygent/sessionUpdate")(on_update)
    await client.start_io(*SERVER_COMMAND, env=env, cwd=str(tmp_path))
    try:
        await client.initialize_session(
            types.InitializeParams(capabilities=CAPABILITIES, root_uri=tmp_path.as_uri())
        )
        session = await request(client, p.SESSION_NEW, {"runtime": "local"})
        result = await request(
            client,
            p.SESSION_PROMPT,
            {"sessionId": session["sessionId"], "prompt": QUESTION},
            timeout=90,
        )
        assert result["stopReason"] == "end_turn", result
        assert "Paris" in result["text"], result
        # The answer streamed to the editor as it came, and the turn's end was told.
        ended = await updates.wait_for(lambda u: u["update"]["type"] == "turn_ended")
        assert ended["update"]["stopReason"] == "end_turn", ended
        deltas = updates.of(session["sessionId"], "message_delta")
        assert "".join(d["text"] for d in deltas) == result["text"]
    finally:
        try:
            await asyncio.wait_for(client.shutdown_session(), 30)
        except (asyncio.TimeoutError, RuntimeError, ConnectionError):
            pass
        await client.stop()
