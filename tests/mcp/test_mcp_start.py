"""MCP servers start in the background: the session opens at once, every front end can
see "starting" then "ready", a turn started meanwhile waits for the servers' tools, and
a session closed while its servers start leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from pygent import events as ev
from pygent.service import SessionOptions
from tests.mcp.conftest import fault_spec, model_tool_names

pytestmark = pytest.mark.timeout(120)

def _slow(marks: Path, name: str = "slow", delay: float = 0, **fields: Any) -> Any:
    """Our fault server, starting only once ``marks/go`` exists (or after ``delay`` s)."""
    env = {"FAULT_DIR": str(marks), **({"FAULT_START_DELAY": str(delay)} if delay else
                                       {"FAULT_START_GATE": str(marks / "go")})}
    return fault_spec(name, env=env, **fields)


def _gone(pid: int, wait: float = 10.0) -> bool:
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


async def _pid_of(marks: Path) -> int:
    for _ in range(400):
        if (marks / "start-pid").exists() and (marks / "start-pid").read_text():
            return int((marks / "start-pid").read_text())
        await asyncio.sleep(0.05)
    raise AssertionError("the slow server never wrote its pid")


async def test_session_opens_at_once_and_a_turn_waits_for_the_tools(service, openai_env, tmp_path):
    seen: list[ev.Event] = []
    service.subscribe_all(seen.append)
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(_slow(tmp_path),))
    )
    # session/new did not wait for the server (it cannot start before the gate opens)
    (st,) = service.mcp_status(session.id)
    assert (st.name, st.state, st.tools) == ("slow", "starting", ())
    assert not any(t.name.startswith("mcp__") for t in service.tools(session.id))
    await _pid_of(tmp_path)  # its process runs, held at the gate

    # A turn started now: it says it waits, and its first model request carries the tools.
    openai_env.add_tool_call("mcp__slow__echo", {"text": "it was worth the wait"})
    openai_env.add_text("done")
    turn = asyncio.ensure_future(service.prompt(session.id, "use the slow server"))
    for _ in range(600):
        if any(isinstance(e, ev.Notice) and "waiting for MCP" in e.text for e in seen):
            break
        await asyncio.sleep(0.05)
    assert not openai_env.model_requests  # no request went out without the tools
    assert service.mcp_status(session.id)[0].state == "starting"
    (tmp_path / "go").write_text("")
    result = await turn
    assert result.stop_reason == ev.StopReason.END_TURN
    assert "mcp__slow__echo" in model_tool_names(openai_env, 0)
    tool = [m for m in openai_env.model_requests[-1].body["messages"] if m.get("role") == "tool"]
    assert tool[0]["content"] == "it was worth the wait"
    assert service.mcp_status(session.id)[0].state == "ready"

    # Every front end was told: starting, then ready with its tools; the turn said it waited.
    updates = [(e.name, e.state) for e in seen if isinstance(e, ev.McpServer)]
    assert updates == [("slow", "starting"), ("slow", "ready")]
    ready = [e for e in seen if isinstance(e, ev.McpServer) and e.state == "ready"][0]
    assert "echo" in ready.tools and ready.session_id == session.id
    notices = [e.text for e in seen if isinstance(e, ev.Notice)]
    assert "waiting for MCP server(s) to start: slow" in notices
    assert not any("not in this request" in n for n in notices)


async def test_a_turn_says_which_servers_were_not_ready(service, openai_env, tmp_path):
    from pygent.mcp.config import McpServerSpec

    missing = McpServerSpec(name="nope", command="/nonexistent/mcp-server-nope")
    stuck = _slow(tmp_path, "stuck", start_timeout=1.0)  # its gate never opens
    seen: list[ev.Event] = []
    service.subscribe_all(seen.append)
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(missing, stuck, fault_spec()))
    )
    openai_env.add_text("fine")
    began = time.monotonic()
    result = await service.prompt(session.id, "hello")
    assert result.stop_reason == ev.StopReason.END_TURN
    assert time.monotonic() - began < 30  # bounded by the start timeout: the gate never opens
    names = model_tool_names(openai_env, 0)
    assert "mcp__fault__echo" in names and not any(n.startswith(("mcp__nope", "mcp__stuck")) for n in names)
    states = {s.name: s for s in service.mcp_status(session.id)}
    assert states["stuck"].state == "failed" and "did not answer within 1s" in states["stuck"].reason
    assert states["nope"].state == "failed" and "command not found" in states["nope"].reason
    text = "\n".join(e.text for e in seen if isinstance(e, ev.Notice) and e.level == "warning")
    assert "MCP server 'stuck' failed: did not answer within 1s; its tools are not available" in text
    # the missing command failed at once: an mcp_server update said so (the REPL prints
    # it, the chat panels show it), before or during the turn's wait
    failed = [e for e in seen if isinstance(e, ev.McpServer) and e.state == "failed"]
    assert {e.name for e in failed} == {"nope", "stuck"}
    assert "command not found" in next(e.reason for e in failed if e.name == "nope")
    marker = tmp_path / "start-pid"  # (a loaded machine may time it out before it wrote it)
    assert not marker.exists() or _gone(int(marker.read_text()))  # the timed-out start was killed


async def test_close_while_starting_leaves_no_process(service, openai_env, tmp_path):
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(_slow(tmp_path),))
    )
    pid = await _pid_of(tmp_path)
    os.kill(pid, 0)  # the server process is up, still starting
    assert service.mcp_status(session.id)[0].state == "starting"
    began = time.monotonic()
    await service.close(session.id)
    assert time.monotonic() - began < 20  # not the 30 s start timeout
    assert _gone(pid)


async def test_close_right_after_create_leaves_no_process(service, openai_env, tmp_path):
    # Closed before the server even launched: nothing may start afterwards.
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(_slow(tmp_path),))
    )
    await service.close(session.id)
    await asyncio.sleep(1.0)
    marker = tmp_path / "start-pid"
    if marker.exists():
        assert _gone(int(marker.read_text()))
