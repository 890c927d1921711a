"""The harness itself: each real server starts, answers plain HTTP, and dies with its group."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.real_models import servers
from tests.real_models.conftest import Restartable, each_server
from tests.real_models.servers import ServerProcess, http_get

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def chat(server: ServerProcess, content: str, **body: object) -> dict:
    """One plain non-streamed chat completion, as curl would send it."""
    data = json.dumps(
        {
            "model": servers.MODEL_NAME,
            "messages": [{"role": "user", "content": content}],
            "temperature": 0,
            "max_tokens": 8,
            **body,
        }
    ).encode()
    req = urllib.request.Request(
        f"{server.base_url}/chat/completions",
        data=data,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {server.api_key}"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


@each_server()
def test_server_answers_a_plain_request(model_server: ServerProcess) -> None:
    status, body = http_get(f"{model_server.base_url}/models", api_key=model_server.api_key)
    assert status == 200 and json.loads(body)["data"], body[:300]
    reply = chat(model_server, "Say hi")
    assert reply["choices"][0]["message"]["role"] == "assistant"
    assert reply["choices"][0]["message"]["content"], reply


def test_kill_leaves_nothing_and_restart_reuses_the_port(restartable: Restartable) -> None:
    server = restartable.start(servers.LLAMA_SERVER)
    port, pid = server.port, server.proc.pid if server.proc else 0
    server.kill()
    assert http_get(f"{server.base_url}/models", timeout=2)[0] == 0, "the port still answers"
    assert not server.leftovers(), "the killed server left processes behind"
    assert not any(line.split()[0] == str(pid) for line in server.leftovers())
    server.restart()
    assert server.port == port and server.alive
    assert chat(server, "Say hi")["choices"], "the restarted server does not answer"
