"""``pygent acp`` with Docker sessions: a copy-on-write workspace reviewed through the
``_pygent/...`` extensions, and no container left after SIGTERM mid-command."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from tests.acp.conftest import StartAgent
from tests.docker_gate import TEST_IMAGE
from tests.openai_server import ScriptedOpenAIServer

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]


def _containers(pid: int) -> list[str]:
    import docker

    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"label": f"pygent.owner_pid={pid}"})
        return [c.name for c in found]
    finally:
        client.close()


async def test_docker_cow_review_and_sigterm_cleanup(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("old\n")
    openai_server.add_tool_call(
        "bash", {"cmd": "echo in-docker > made.txt; cat /etc/os-release | head -1"}
    )
    openai_server.add_text("made it")
    env = {"PYGENT_IMAGE": TEST_IMAGE, "PYGENT_USE_DOCKER": "1"}
    async with start_agent(env=env) as agent:
        await agent.initialize()
        response = await asyncio.wait_for(
            agent.conn.new_session(cwd=str(folder), mcp_servers=[]), 120
        )
        sid = response.session_id
        assert response.field_meta["pygent"]["runtime"] == "docker"
        result = await asyncio.wait_for(agent.prompt(sid, "make a file"), 120)
        assert result.stop_reason == "end_turn"
        # Docker mode runs commands without asking; the output is the container's.
        assert agent.client.permissions == []
        assert "Debian" in json.dumps(agent.client.of("tool_call_update", sid))
        assert not (folder / "made.txt").exists()  # copy-on-write: reviewed first
        changes = await agent.conn.ext_method("pygent/changes", {"sessionId": sid})
        assert [c["path"] for c in changes["changes"]] == ["made.txt"]
        timeline = await agent.conn.ext_method("pygent/timeline", {"sessionId": sid})
        assert [t["prompt"] for t in timeline["turns"]] == ["make a file"]
        applied = await agent.conn.ext_method("pygent/apply", {"sessionId": sid})
        assert applied["applied"] == ["made.txt"]
        assert (folder / "made.txt").read_text() == "in-docker\n"

        pid = agent.process.pid
        assert _containers(pid)
        openai_server.add_tool_call("bash", {"cmd": "sleep 600"})
        started = len(agent.client.of("tool_call_update", sid))
        turn = asyncio.ensure_future(agent.prompt(sid, "sleep"))
        await agent.client.wait_for(
            lambda: [
                u
                for u in agent.client.of("tool_call_update", sid)[started:]
                if u.get("status") == "in_progress"
            ],
            timeout=60,
        )
        await asyncio.sleep(0.5)  # the command is running in the container
        agent.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.process.wait(), 60) == 0
        turn.cancel()
        deadline = time.monotonic() + 10
        while _containers(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert _containers(pid) == []
