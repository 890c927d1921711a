"""The timeline extensions over ACP on the agent's own sessions (in this process): the
turns, a rewind of the conversation, its redo; the same answers as through a host."""

from __future__ import annotations

from pathlib import Path

import pytest
from acp import RequestError

from tests.acp.conftest import StartAgent
from tests.openai_server import ScriptedOpenAIServer


async def test_timeline_rewind_and_redo_in_process(
    start_agent: StartAgent, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    async with start_agent() as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        for prompt in ("one", "two"):
            openai_server.add_text(f"{prompt} done")
            await agent.prompt(sid, prompt)
        timeline = await agent.conn.ext_method("pygent/timeline", {"sessionId": sid})
        assert [t["prompt"] for t in timeline["turns"]] == ["one", "two"]
        assert not timeline["canRedo"]
        rewound = await agent.conn.ext_method(
            "pygent/rewind",
            {"sessionId": sid, "turnId": timeline["turns"][1]["turnId"], "files": False},
        )
        assert rewound["messagesRemoved"] >= 2 and rewound["canRedo"]
        after = await agent.conn.ext_method("pygent/timeline", {"sessionId": sid})
        assert [t["prompt"] for t in after["turns"]] == ["one"]
        redone = await agent.conn.ext_method("pygent/redo", {"sessionId": sid})
        assert redone["messagesRemoved"] < 0
        again = await agent.conn.ext_method("pygent/timeline", {"sessionId": sid})
        assert [t["prompt"] for t in again["turns"]] == ["one", "two"]
        with pytest.raises(RequestError) as error:
            await agent.conn.ext_method("pygent/rewind", {"sessionId": sid, "files": "yes"})
        assert "turnId" in str(error.value)
        assert await agent.conn.ext_method("pygent/tasks", {"sessionId": sid}) == {"tasks": []}
