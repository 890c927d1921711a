"""The configuration snippets of docs/models.md ("Server compatibility") work as written.

Each snippet's ``export`` lines are applied as they stand, but for the address (the
test's server listens on a free port) and ``$LITELLM_MASTER_KEY`` (the proxy's key of
this run); then one turn must come back with a reply.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pygent import events as ev
from tests.real_models import servers
from tests.real_models.conftest import each_server
from tests.real_models.servers import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"
_BLOCK = re.compile(r"<!-- snippet: (\S+) -->\n```bash\n(.*?)```", re.DOTALL)
_EXPORT = re.compile(r"^export (\w+)=(\S+)", re.MULTILINE)


def snippet(kind: str) -> dict[str, str]:
    blocks = {name: body for name, body in _BLOCK.findall(DOC.read_text())}
    assert kind in blocks, f"docs/models.md has no snippet for {kind}: {sorted(blocks)}"
    return dict(_EXPORT.findall(blocks[kind]))


def test_every_tested_server_has_a_snippet() -> None:
    blocks = {name for name, _ in _BLOCK.findall(DOC.read_text())}
    assert blocks == {servers.LLAMA_SERVER, servers.LLAMA_CPP_PYTHON, servers.LITELLM}


@each_server()
def test_the_snippet_gets_an_answer(model_server: ServerProcess, pygent_env, make_agent) -> None:
    variables = snippet(model_server.kind)
    url = re.sub(r"//127\.0\.0\.1:\d+", f"//127.0.0.1:{model_server.port}", variables.pop("OPENAI_BASE_URL"))
    key = variables.pop("OPENAI_API_KEY")
    if key == "$LITELLM_MASTER_KEY":
        key = model_server.api_key
    assert not key.startswith("$"), key
    pygent_env(model_server, tools=(), base_url=url, OPENAI_API_KEY=key, **variables)
    agent, recorder = make_agent()
    result = agent.turn("What is the capital of France? One word.", max_steps=1)
    assert result.stop_reason == ev.StopReason.END_TURN, result
    assert result.text.strip(), recorder.of(ev.Notice)
    assert recorder.shown_text() == result.text
