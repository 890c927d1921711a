"""``session/load`` replays a saved session's compactions where they were made, shown as
a live compaction is over ACP (an ``agent_thought_chunk`` with the summary)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pygent.service import SessionOptions, SessionService
from pygent.settings import load_settings
from tests.acp.conftest import StartAgent, acp_env
from tests.openai_server import ScriptedOpenAIServer


async def test_load_shows_the_compaction_between_the_turns(
    start_agent: StartAgent,
    openai_server: ScriptedOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    home = tmp_path / "shared-home"
    # The session is made (and compacted) by a service in this process, with the same
    # home as the ACP agent, which then loads it from its history file.
    for key, value in acp_env(home, openai_server).items():
        monkeypatch.setenv(key, value)
    service = SessionService(load_settings())
    try:
        session = await service.create(
            SessionOptions(workspace_folder=str(folder), runtime="local")
        )
        sid = session.id
        for prompt in ("first", "second", "third"):
            openai_server.add_text(f"{prompt} done " + "words " * 200)
            await service.prompt(sid, prompt)
        openai_server.add_text("## Task\nthe work\n## State of the work\nsummary one")
        assert (await session.agent.acompact()).ok
        openai_server.add_text("fourth done")
        await service.prompt(sid, "fourth")
    finally:
        await service.aclose()

    async with start_agent(home=home) as agent:
        await agent.initialize()
        await agent.conn.load_session(cwd=str(folder), session_id=sid, mcp_servers=[])
        shown = []
        for update in agent.client.updates:
            body = update
            if update.get("sessionId") != sid:
                continue
            if body["sessionUpdate"] == "user_message_chunk":
                shown.append("user:" + body["content"]["text"])
            elif body["sessionUpdate"] == "agent_thought_chunk":
                shown.append("thought:" + body["content"]["text"])
        compacted = [i for i, s in enumerate(shown) if "summary one" in s]
        assert len(compacted) == 1, shown
        assert "compacted" in shown[compacted[0]]
        users = [s for s in shown if s.startswith("user:")]
        assert users == ["user:first", "user:second", "user:third", "user:fourth"]
        assert shown.index("user:third") < compacted[0] < shown.index("user:fourth")
