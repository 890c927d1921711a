"""MCP servers inside the Docker sandbox: real third-party servers and our fault server
started with ``docker exec`` in the session's container (image from .ci/mcp-setup.sh),
isolation from the host, and no process or container left after the session."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docker
import pytest

from pygent.mcp.config import McpServerSpec
from pygent.service import SessionOptions, SessionService
from pygent.settings import load_settings
from tests.mcp import servers
from tests.mcp.conftest import FAULT_SERVER, started, tool_messages

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]


@pytest.fixture
async def docker_service(openai_env: Any, tmp_path: Path) -> AsyncIterator[SessionService]:
    if not servers.image_present():
        msg = f"the image {servers.image()} is missing: run .ci/mcp-setup.sh"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    settings = dataclasses.replace(
        load_settings(),
        image=servers.image(),
        sessions_dir=tmp_path / "sessions",
        init_files=[str(FAULT_SERVER)],
    )
    svc = SessionService(settings)
    yield svc
    await svc.aclose()


def fault() -> McpServerSpec:
    return McpServerSpec(name="fault", command="python3-mcp", args=("/workspace/fault_server.py",))


async def _session(svc: SessionService, *specs: McpServerSpec, mode: str = "never") -> Any:
    session = await svc.create(SessionOptions(runtime="docker", approval_mode=mode, mcp_servers=specs))
    await started(session)  # the servers start in the background
    return session


async def test_third_party_servers_run_in_the_container(docker_service, openai_env):
    git = McpServerSpec(name="git", command="mcp-server-git")
    clock = McpServerSpec(name="time", command="mcp-server-time")
    every = McpServerSpec(name="every", command="mcp-server-everything", args=("stdio",))
    session = await _session(docker_service, git, clock, every)
    states = {s.name: s for s in session.mcp.status()}
    assert all(s.state == "ready" and s.where == "sandbox" for s in states.values()), states
    done = await session.runtime.arun("git init -q /workspace && touch /workspace/new.txt")
    assert done.ok, done.output
    openai_env.add_tool_calls(
        [
            ("mcp__git__git_status", {"repo_path": "/workspace"}),
            ("mcp__time__get_current_time", {"timezone": "Europe/Paris"}),
            ("mcp__every__get-sum", {"a": 1.5, "b": 2}),
            ("mcp__every__get-tiny-image", {}),
        ]
    )
    openai_env.add_text("ok")
    await docker_service.prompt(session.id, "use them")
    status, now, total, image = (m["content"] for m in tool_messages(openai_env))
    assert "new.txt" in status
    assert json.loads(now)["timezone"] == "Europe/Paris"
    assert "3.5" in total
    assert "[image: image/png" in image
    # roots/list names the workspace as the server sees it, inside the container
    roots = await session.mcp.acall("every", "get-roots-list", {})
    assert "file:///workspace" in roots.content, roots.content


async def test_sandboxed_server_cannot_see_host_home_env_or_network(docker_service, openai_env, monkeypatch):
    canary_value = f"sk-canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("PYGENT_MCP_CANARY_TOKEN", canary_value)
    canary = Path.home() / f".pygent-mcp-canary-{uuid.uuid4().hex[:8]}"
    canary.write_text(canary_value)
    try:
        every = McpServerSpec(name="every", command="mcp-server-everything", args=("stdio",))
        session = await _session(docker_service, fault(), every)
        openai_env.add_tool_calls(
            [
                ("mcp__fault__read", {"path": str(canary)}),
                ("mcp__fault__getenv", {"name": "PYGENT_MCP_CANARY_TOKEN"}),
                ("mcp__fault__getenv", {"name": "OPENAI_API_KEY"}),
                ("mcp__every__get-env", {}),
                ("mcp__fault__connect", {"host": "1.1.1.1", "port": 53}),
            ]
        )
        openai_env.add_text("ok")
        await docker_service.prompt(session.id, "look around")
        read, env1, env2, whole_env, net = (m["content"] for m in tool_messages(openai_env))
        assert net.startswith("error:") and "cannot connect" in net  # no network in the sandbox
        assert "cannot read" in read and canary_value not in read
        assert env1 == "(unset)" and env2 == "(unset)"
        assert canary_value not in whole_env and "sk-test-key" not in whole_env
        assert '"HOME"' in whole_env or "HOME" in whole_env  # it did print an environment
    finally:
        canary.unlink()


async def test_crash_restart_and_no_process_or_container_left(docker_service, openai_env):
    session = await _session(docker_service, fault())
    openai_env.add_tool_call("mcp__fault__crash", {})
    openai_env.add_tool_call("mcp__fault__pid", {})
    openai_env.add_text("ok")
    await docker_service.prompt(session.id, "crash")
    crash, pid = (m["content"] for m in tool_messages(openai_env))
    assert "exited during the call to 'crash'" in crash
    assert pid.isdigit()
    container = session.runtime.backend.container_id
    ps = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"
    listing = await session.runtime.arun(ps)
    assert "fault_server.py" in listing.output
    await session.mcp.aclose()  # as at session close: the server process goes
    listing = await session.runtime.arun(ps)
    assert "fault_server.py" not in listing.output
    await docker_service.close(session.id)
    client = docker.from_env()
    try:
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(container)
    finally:
        client.close()


async def test_missing_command_names_the_image(docker_service, openai_env):
    nope = McpServerSpec(name="nope", command="mcp-server-nope")
    session = await _session(docker_service, nope, fault())
    states = {s.name: s for s in session.mcp.status()}
    assert states["nope"].state == "failed"
    assert f"not installed in the sandbox image {servers.image()}" in states["nope"].reason
    assert states["fault"].state == "ready"


async def test_read_only_tools_run_without_asking_in_docker_mode(docker_service, openai_env):
    session = await _session(docker_service, fault(), mode="auto")
    openai_env.add_tool_calls([("mcp__fault__echo", {"text": "ro"}), ("mcp__fault__fail", {})])
    openai_env.add_text("ok")
    await docker_service.prompt(session.id, "go")
    echo, fail = (m["content"] for m in tool_messages(openai_env))
    assert echo == "ro"  # readOnlyHint: no question in Docker mode
    assert "failing on purpose" not in fail  # no annotations: destructive, asks; nobody answers


async def test_a_server_that_never_answers_times_out_and_is_killed(docker_service, openai_env):
    silent = McpServerSpec(
        name="silent", command="sh", args=("-c", "sleep 987654"), start_timeout=2.0
    )
    session = await _session(docker_service, silent, fault())
    states = {s.name: s for s in session.mcp.status()}
    assert states["silent"].state == "failed"
    assert "did not answer within 2s" in states["silent"].reason
    assert states["fault"].state == "ready"  # the other server is not held up
    ps = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"
    listing = await session.runtime.arun(ps)
    assert "sleep 987654" not in listing.output  # it ignored stdin's end: it was killed


async def test_stopped_while_starting_leaves_no_process_in_the_container(docker_service, openai_env):
    """The session does not wait for its servers: one still starting when the session
    closes is killed in the container (not left to its start timeout), and the
    container goes."""
    slow = McpServerSpec(
        name="slow", command="python3-mcp", args=("/workspace/fault_server.py",),
        env={"FAULT_START_GATE": "/tmp/never-opened", "FAULT_DIR": "/tmp"},
    )
    session = await docker_service.create(SessionOptions(runtime="docker", approval_mode="never", mcp_servers=(slow,)))
    assert session.mcp.status()[0].state == "starting"  # session/new did not wait
    ps = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"
    for _ in range(300):  # its process is up in the container, held at the gate
        if "fault_server.py" in (await session.runtime.arun(ps)).output:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the slow server never started in the container")
    assert session.mcp.status()[0].state == "starting"
    began = time.monotonic()
    await session.mcp.aclose()  # what closing the session does first
    assert time.monotonic() - began < 15  # not its 30 s start timeout
    assert "fault_server.py" not in (await session.runtime.arun(ps)).output
    container = session.runtime.backend.container_id
    await docker_service.close(session.id)
    client = docker.from_env()
    try:
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(container)
    finally:
        client.close()
