"""Real third-party MCP servers as processes on this machine: mcp-server-git and
mcp-server-time (PyPI) and server-everything (npm), in the local sandbox and on the
host (``where = "host"``); the scripted model calls their tools through the agent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from pygent import events as ev
from pygent.mcp.config import McpServerSpec
from pygent.service import SessionOptions
from tests.mcp import servers
from tests.mcp.conftest import started, tool_messages

pytestmark = [pytest.mark.timeout(180)]

_missing = servers.missing_host_servers()
if _missing and os.environ.get("CI"):
    raise RuntimeError(f"CI is set but the MCP servers are not installed: {_missing}")
pytestmark.append(pytest.mark.skipif(_missing is not None, reason=_missing or ""))


def _node() -> str:
    node = shutil.which("node")
    assert node, "node is needed for server-everything"
    return node


async def test_git_server_in_the_local_sandbox_reads_the_workspace_repo(service, openai_env):
    spec = McpServerSpec(name="git", command=str(servers.git_server()))
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(spec,))
    )
    await started(session)  # servers start in the background
    ws = session.runtime.workspace
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    (ws / "hello.txt").write_text("hi\n")
    st = session.mcp.status()[0]
    assert st.state == "ready" and "git_status" in st.tools
    openai_env.add_tool_call("mcp__git__git_status", {"repo_path": str(ws)})
    openai_env.add_text("ok")
    result = await service.prompt(session.id, "git status please")
    assert result.stop_reason == ev.StopReason.END_TURN
    content = tool_messages(openai_env)[0]["content"]
    assert "hello.txt" in content and "Untracked" in content


async def test_time_server_on_the_host_asks_and_is_reported_as_host(service, openai_env):
    spec = McpServerSpec(name="time", command=str(servers.time_server()), where="host")
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="auto", mcp_servers=(spec,))
    )
    await started(session)  # servers start in the background
    assert session.mcp.status()[0].where == "host"
    assert any("runs on the host, outside the sandbox" in n for n in session.notices)
    # nobody can answer the approval here: a host-side server's call is denied, not run
    openai_env.add_tool_call("mcp__time__get_current_time", {"timezone": "UTC"})
    openai_env.add_text("ok")
    await service.prompt(session.id, "time?")
    denied = tool_messages(openai_env)[0]["content"]
    assert "outside the sandbox" in denied or "denied" in denied.lower()
    # with an allow rule for the server's tools (as "always allow" would add), it runs
    from pygent.policy import Action, Rule

    session.agent.policy.add_rule(Rule(tool="mcp__time__*", action=Action.ALLOW))
    openai_env.add_tool_call("mcp__time__get_current_time", {"timezone": "UTC"})
    openai_env.add_text("ok")
    await service.prompt(session.id, "time again")
    content = tool_messages(openai_env)[-1]["content"]
    assert json.loads(content)["timezone"] == "UTC"


async def test_everything_server_content_kinds(service, openai_env):
    spec = McpServerSpec(
        name="every", command=_node(), args=(str(servers.everything_js()), "stdio"), where="host"
    )
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(spec,))
    )
    await started(session)  # servers start in the background
    st = session.mcp.status()[0]
    assert st.state == "ready", st.reason
    # Pygent declares roots but not sampling or elicitation: server-everything offers the
    # roots tool and leaves its sampling and elicitation tools out (docs/mcp.md)
    assert "get-roots-list" in st.tools
    assert not [t for t in st.tools if "sampling" in t or "elicitation" in t], st.tools
    roots = await session.mcp.acall("every", "get-roots-list", {})
    assert session.runtime.workspace.resolve().as_uri() in roots.content, roots.content
    openai_env.add_tool_calls(
        [
            ("mcp__every__get-sum", {"a": 2, "b": 40}),
            ("mcp__every__get-tiny-image", {}),
            ("mcp__every__get-structured-content", {"location": "Chicago"}),
            ("mcp__every__get-resource-reference", {"resourceType": "Text", "resourceId": 1}),
            ("mcp__every__get-resource-links", {"count": 2}),
            ("mcp__every__trigger-long-running-operation", {"duration": 1, "steps": 2}),
        ]
    )
    openai_env.add_text("ok")
    seen: list[ev.Event] = []
    service.subscribe(session.id, seen.append)
    await service.prompt(session.id, "everything")
    # the long-running tool's progress notifications streamed as the call's live output
    progress = [e.text for e in seen if isinstance(e, ev.ToolOutput) and "[progress" in e.text]
    assert progress and "[progress 1/2]" in progress[0], progress
    total, image, structured, resource, links, longrun = (
        m["content"] for m in tool_messages(openai_env)
    )
    assert "42" in total
    assert "[image: image/png" in image
    assert "temperature" in structured
    assert "[resource " in resource
    assert "[resource link " in links
    assert "completed" in longrun.lower()


async def test_streamable_http_server_from_the_host_with_secret_header(service, openai_env, monkeypatch):
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [_node(), str(servers.everything_js()), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        monkeypatch.setenv("EVERY_TOKEN", "sk-canary-http-777")
        spec = McpServerSpec(
            name="web",
            url=f"http://127.0.0.1:{port}/mcp",
            headers={"Authorization": "Bearer $EVERY_TOKEN"},
        )
        session = await service.create(
            SessionOptions(runtime="local", approval_mode="never", mcp_servers=(spec,))
        )
        await started(session)  # servers start in the background
        st = session.mcp.status()[0]
        assert st.state == "ready" and st.where == "remote" and st.transport == "http", st.reason
        openai_env.add_tool_call("mcp__web__get-sum", {"a": 20, "b": 22})
        openai_env.add_text("ok")
        await service.prompt(session.id, "sum over http")
        assert "42" in tool_messages(openai_env)[0]["content"]
        for request in openai_env.model_requests:
            assert b"sk-canary-http-777" not in request.raw
    finally:
        proc.terminate()
        proc.wait(10)
