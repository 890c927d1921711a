"""The language server with Docker sessions: commands run in containers, and every container goes at the end."""

from __future__ import annotations

import time

import pytest

from pygent.lsp import protocol as p
from tests.docker_gate import TEST_IMAGE
from tests.lsp.conftest import request

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]


def _containers(pid: int) -> list[str]:
    import docker

    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"label": f"pygent.owner_pid={pid}"})
        return [c.name for c in found]
    finally:
        client.close()


async def test_docker_sessions_are_removed_on_shutdown(start_client, openai_server) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo in-docker; cat /etc/os-release | head -1"})
    openai_server.add_text("ran")
    client, updates = await start_client(env={"PYGENT_IMAGE": TEST_IMAGE})
    pid = client._server.pid
    a = await request(client, p.SESSION_NEW, {"runtime": "docker"}, timeout=120)
    b = await request(client, p.SESSION_NEW, {"runtime": "docker"}, timeout=120)
    assert a["runtime"] == b["runtime"] == "docker"
    # Docker mode runs commands without asking (no permission handler here).
    result = await request(
        client, p.SESSION_PROMPT, {"sessionId": a["sessionId"], "prompt": "go"}, timeout=120
    )
    assert result["stopReason"] == "end_turn"
    assert "in-docker" in "".join(u["text"] for u in updates.of(a["sessionId"], "tool_output"))
    assert len(_containers(pid)) == 2
    await client.shutdown_session()
    assert _containers(pid) == []


def test_docker_container_removed_when_the_client_vanishes(raw, openai_server) -> None:
    openai_server.add_tool_call("bash", {"cmd": "sleep 60"})
    c = raw(PYGENT_IMAGE=TEST_IMAGE)
    c.initialize()
    c.send({"jsonrpc": "2.0", "id": 1, "method": p.SESSION_NEW, "params": {"runtime": "docker"}})
    sid = c.reply_to(1, timeout=120)["result"]["sessionId"]
    c.send(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": p.SESSION_PROMPT,
            "params": {"sessionId": sid, "prompt": "x"},
        }
    )
    deadline = time.monotonic() + 60
    while True:
        msg = c.recv(timeout=60)
        if (
            msg.get("method") == p.SESSION_UPDATE
            and msg["params"]["update"]["type"] == "tool_call_started"
        ):
            break
        assert time.monotonic() < deadline
    assert len(_containers(c.proc.pid)) == 1
    assert c.proc.stdin is not None
    c.proc.stdin.close()
    assert c.wait(60) == 0
    assert _containers(c.proc.pid) == []
