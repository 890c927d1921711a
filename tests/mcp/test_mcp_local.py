"""MCP servers in the local sandbox, end to end: SessionService, the scripted model, our fault server."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pygent import events as ev
from pygent.service import SessionOptions
from tests.mcp.conftest import fault_spec, model_tool_names, started, tool_messages

pytestmark = pytest.mark.timeout(120)


async def test_tools_listed_called_and_results_reach_the_model(service, openai_env):
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(fault_spec(),))
    )
    await started(session)  # servers start in the background
    status = {s.name: s for s in session.mcp.status()}
    assert status["fault"].state == "ready"
    names = {t.name for t in service.tools(session.id)}
    assert {"mcp__fault__echo", "mcp__fault__structured", "mcp__fault__image"} <= names
    # the two tools with broken schemas are left out, with a notice naming them
    assert "mcp__fault__loop" not in names and "mcp__fault__notobject" not in names
    notes = " ".join(status["fault"].disabled_tools)
    assert "loop: the input schema has a $ref cycle" in notes
    assert "notobject: the input schema is invalid" in notes

    openai_env.add_tool_calls(
        [
            ("mcp__fault__echo", {"text": "hello from the model"}),
            ("mcp__fault__structured", {"city": "Lyon"}),
            ("mcp__fault__fail", {"why": "no reason"}),
            ("mcp__fault__image", {}),
            ("mcp__fault__echo", {"text": 5}),
        ]
    )
    openai_env.add_text("done")
    result = await service.prompt(session.id, "use the tools")
    assert result.stop_reason == ev.StopReason.END_TURN
    assert "mcp__fault__echo" in model_tool_names(openai_env)
    echo, structured, fail, image, bad = (m["content"] for m in tool_messages(openai_env))
    assert echo == "hello from the model"
    assert '"city": "Lyon"' in structured and "21.5" in structured
    assert fail.startswith("error: the MCP tool reported an error") and "no reason" in fail
    assert "[image: image/png" in image
    assert "5 is not of type 'string'" in bad or "must be string" in bad
    # the image reached the model as an image part
    body = openai_env.model_requests[-1].body
    assert "data:image/png;base64," in str(body["messages"])


async def test_huge_output_is_capped_head_and_tail_kept(service, openai_env):
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(fault_spec(),))
    )
    await started(session)  # servers start in the background
    openai_env.add_tool_call("mcp__fault__huge", {"size": 5_000_000})
    openai_env.add_text("ok")
    await service.prompt(session.id, "big")
    content = tool_messages(openai_env)[0]["content"]
    assert len(content) < 120_000
    assert content.startswith("xxxx") and content.endswith("yyyy")
    assert "output truncated: 5000006 characters in total" in content


async def test_crash_mid_call_is_a_clear_error_and_the_server_restarts(service, openai_env):
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(fault_spec(),))
    )
    await started(session)  # servers start in the background
    seen: list[ev.Event] = []
    service.subscribe(session.id, seen.append)
    openai_env.add_tool_call("mcp__fault__crash", {})
    openai_env.add_tool_call("mcp__fault__echo", {"text": "after the crash"})
    openai_env.add_text("ok")
    result = await service.prompt(session.id, "crash it")
    assert result.stop_reason == ev.StopReason.END_TURN
    crash, echo = (m["content"] for m in tool_messages(openai_env))
    assert "exited during the call to 'crash'" in crash
    assert "crashing on purpose" in crash
    assert echo == "after the crash"  # restarted with back-off, then served
    st = session.mcp.status()[0]
    assert st.state == "ready" and st.restarts == 1
    # every front end is told: mcp_server updates, restarting (with why) then ready again
    updates = [e for e in seen if isinstance(e, ev.McpServer)]
    assert [(u.name, u.state) for u in updates] == [("fault", "restarting"), ("fault", "ready")]
    assert "crashing on purpose" in updates[0].reason and updates[0].restarts == 1
    assert "echo" in updates[1].tools and updates[1].session_id == session.id


async def test_hang_times_out_per_call_and_cancels(service, openai_env, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    spec = fault_spec(call_timeout=1.0, env={"FAULT_DIR": str(marks)})
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(spec,))
    )
    await started(session)  # servers start in the background
    openai_env.add_tool_call("mcp__fault__hang", {})
    openai_env.add_text("ok")
    began = time.monotonic()
    await service.prompt(session.id, "hang")
    assert time.monotonic() - began < 20
    content = tool_messages(openai_env)[0]["content"]
    assert "did not answer within 1s" in content
    # the server got notifications/cancelled: its handler was interrupted
    for _ in range(50):
        if (marks / "hang-cancelled").exists():
            break
        time.sleep(0.1)
    assert (marks / "hang-cancelled").exists()
    assert session.mcp.status()[0].state == "ready"


async def test_list_changed_refreshes_tools_between_steps(service, openai_env):
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(fault_spec(),))
    )
    await started(session)  # servers start in the background
    openai_env.add_tool_call("mcp__fault__add_tool", {"name": "fresh"})
    openai_env.add_tool_call("mcp__fault__fresh", {})
    openai_env.add_text("ok")
    await service.prompt(session.id, "add a tool")
    assert "mcp__fault__fresh" not in model_tool_names(openai_env, 0)
    assert "mcp__fault__fresh" in model_tool_names(openai_env, 1)
    assert tool_messages(openai_env)[1]["content"] == "I am fresh"


async def test_close_leaves_no_server_process(service, openai_env):
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(fault_spec(),))
    )
    await started(session)  # servers start in the background
    result = await session.mcp.acall("fault", "pid", {})
    pid = int(result.content)
    os.kill(pid, 0)  # alive
    await service.close(session.id)
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_secret_env_reaches_only_the_server_and_never_the_model(service, openai_env, monkeypatch):
    monkeypatch.setenv("MY_MCP_TOKEN", "sk-canary-mcp-123456")
    monkeypatch.setenv("OTHER_SECRET_TOKEN", "sk-canary-other-999")
    spec = fault_spec(env={"TOKEN": "$MY_MCP_TOKEN"})
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(spec,))
    )
    await started(session)  # servers start in the background
    openai_env.add_tool_calls(
        [("mcp__fault__getenv", {"name": "TOKEN"}), ("mcp__fault__getenv", {"name": "OTHER_SECRET_TOKEN"})]
    )
    openai_env.add_text("ok")
    await service.prompt(session.id, "env")
    token, other = (m["content"] for m in tool_messages(openai_env))
    assert token == "***"  # the server had it; the model sees it redacted
    assert other == "(unset)"  # host secrets are not inherited
    for request in openai_env.model_requests:
        assert b"sk-canary-mcp-123456" not in request.raw
    assert "sk-canary-mcp-123456" not in repr(session.mcp.specs)


async def test_missing_command_fails_that_server_only(service, openai_env):
    from pygent.mcp.config import McpServerSpec

    missing = McpServerSpec(name="nope", command="/nonexistent/mcp-server-nope")
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(missing, fault_spec()))
    )
    await started(session)  # servers start in the background
    states = {s.name: s for s in session.mcp.status()}
    assert states["nope"].state == "failed"
    assert "command not found" in states["nope"].reason
    assert states["fault"].state == "ready"
    # the session did not wait for it: its failure is its state (pygent/mcp/status, /mcp)
    # and an mcp_server update (tests/mcp/test_mcp_start.py), not a session-start notice


async def test_approval_defaults_and_glob_rules(service, openai_env):
    from pygent.policy import Action, Policy, Rule

    session = await service.create(
        SessionOptions(runtime="local", approval_mode="auto", mcp_servers=(fault_spec(),))
    )
    await started(session)  # servers start in the background
    tools = {t.name: t for t in session.agent.tools.tools()}
    policy = Policy.for_mode("auto", runtime_kind="docker")
    read = tools["mcp__fault__echo"].kind
    other = tools["mcp__fault__fail"].kind  # no annotations: destructive by MCP's default
    assert policy.decide("mcp__fault__echo", {}, tool_kind=read).action is Action.ALLOW
    assert policy.decide("mcp__fault__fail", {}, tool_kind=other).action is Action.ASK
    policy.add_rule(Rule(tool="mcp__fault__*", action=Action.ALLOW))
    assert policy.decide("mcp__fault__fail", {}, tool_kind=other).action is Action.ALLOW
    assert Path(".").exists()


async def test_cancelling_the_turn_cancels_the_mcp_call(service, openai_env, tmp_path):
    import asyncio

    marks = tmp_path / "marks"
    marks.mkdir()
    spec = fault_spec(env={"FAULT_DIR": str(marks)})
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(spec,))
    )
    await started(session)  # servers start in the background
    openai_env.add_tool_call("mcp__fault__hang", {})
    openai_env.add_text("never reached")
    turn = asyncio.ensure_future(service.prompt(session.id, "hang"))
    for _ in range(100):
        if (marks / "hang-started").exists():
            break
        await asyncio.sleep(0.1)
    assert (marks / "hang-started").exists()
    assert service.cancel(session.id)
    result = await asyncio.wait_for(turn, 30)
    assert result.stop_reason == ev.StopReason.CANCELLED
    for _ in range(50):  # the server was sent notifications/cancelled
        if (marks / "hang-cancelled").exists():
            break
        await asyncio.sleep(0.1)
    assert (marks / "hang-cancelled").exists()
    # the server is still up and serves the next call
    assert (await session.mcp.acall("fault", "echo", {"text": "still here"})).content == "still here"


def test_config_shapes(tmp_path):
    from pygent.errors import ConfigError
    from pygent.mcp.config import specs_from_acp, specs_from_mcp_json, specs_from_toml

    (tmp_path / ".mcp.json").write_text(
        '{"mcpServers": {"fs": {"command": "npx", "args": ["-y", "server-fs"], '
        '"env": {"TOKEN": "${GH}"}}, "remote": {"type": "http", "url": "https://x.test/mcp", '
        '"headers": {"Authorization": "Bearer $GH"}}}}'
    )
    toml = tmp_path / "pygent.toml"
    specs = specs_from_toml(
        {"servers": {"git": {"command": "mcp-server-git", "where": "host"}}, "import": [".mcp.json"]},
        toml,
    )
    by = {s.name: s for s in specs}
    assert by["git"].where == "host" and by["fs"].where == "sandbox"
    assert by["remote"].transport == "http" and by["remote"].runs_on_host
    assert by["fs"].resolved_env({"GH": "s3cret"}) == {"TOKEN": "s3cret"}
    assert "s3cret" not in repr(by["fs"]) and "s3cret" not in by["remote"].describe()
    with pytest.raises(ConfigError, match=r"references \$GH, which is not set"):
        by["remote"].resolved_headers({})
    with pytest.raises(ConfigError, match="exactly one of command"):
        specs_from_mcp_json({"mcpServers": {"x": {}}})
    with pytest.raises(ConfigError, match="where must be"):
        specs_from_toml({"servers": {"x": {"command": "a", "where": "moon"}}})
    acp = specs_from_acp(
        [
            {"name": "my git", "command": "mcp-server-git", "args": [], "env": [{"name": "A", "value": "x$y"}]},
            {"type": "http", "name": "h", "url": "https://h.test", "headers": [{"name": "K", "value": "v"}]},
        ]
    )
    assert acp[0].name == "my_git" and acp[0].resolved_env({}) == {"A": "x$y"}
    assert acp[1].resolved_headers({}) == {"K": "v"}
    with pytest.raises(ConfigError, match="SSE"):
        specs_from_acp([{"type": "sse", "name": "s", "url": "http://s"}])


def test_pygent_toml_mcp_tables_load_into_settings(tmp_path):
    from pygent.settings import load_settings

    (tmp_path / "pygent.toml").write_text(
        '[mcp.servers.git]\ncommand = "mcp-server-git"\nenv = { T = "$HOME" }\n'
    )
    settings = load_settings(cwd=tmp_path, environ={})
    assert [s.name for s in settings.mcp_servers] == ["git"]
    assert settings.public_dict()["mcp_servers"] == ["git: mcp-server-git (sandbox)"]
    assert not settings.warnings


async def test_delegated_task_starts_its_own_servers_in_its_sandbox(service, openai_env):
    from tests.openai_server import text_reply, tool_call_reply

    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(fault_spec(),))
    )
    await started(session)  # servers start in the background
    main_pid = (await session.mcp.acall("fault", "pid", {})).content

    def respond(body):
        msgs = body["messages"]
        last = msgs[-1]
        if "SUBTASK-PID" in str(msgs[1].get("content")):  # the sub-agent's conversation
            if last["role"] == "tool":
                return text_reply("sub pid " + last["content"])
            return tool_call_reply("mcp__fault__pid", {})
        if last["role"] == "user":
            return tool_call_reply("delegate_task", {"prompt": "SUBTASK-PID: call pid"})
        if str(last.get("content", "")).startswith("started "):
            task_id = last["content"].split()[1]  # "started ID (persona ...)"
            return tool_call_reply("task_status", {"task_id": task_id, "wait": 60})
        return text_reply("main done")

    openai_env.set_responder(respond)
    await service.prompt(session.id, "delegate")
    sub = [
        r.body["messages"][-1]["content"]
        for r in openai_env.model_requests
        if "SUBTASK-PID" in str(r.body["messages"][1].get("content"))
        and r.body["messages"][-1]["role"] == "tool"
    ]
    assert sub and sub[0].isdigit(), sub
    assert sub[0] != main_pid  # its own server process, in the task's sandbox
    # the task's server is gone with its sandbox
    for _ in range(50):
        try:
            os.kill(int(sub[0]), 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.kill(int(sub[0]), 0)


async def test_a_flood_of_list_changed_costs_few_listings(service, openai_env):
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(fault_spec(),))
    )
    await started(session)  # servers start in the background
    conn = session.mcp.connections["fault"]
    listings = 0
    original = conn._list

    async def counting(s):
        nonlocal listings
        listings += 1
        return await original(s)

    conn._list = counting
    result = await session.mcp.acall("fault", "flood", {"count": 300})
    assert result.content == "sent 300"
    echo = await session.mcp.acall("fault", "echo", {"text": "still fine"})
    assert echo.content == "still fine"
    assert 1 <= listings <= 10, listings
    assert "mcp__fault__echo" in session.agent.tools.names()


async def test_a_persona_turns_mcp_off_or_picks_servers(service, openai_env):
    """Delegated tasks inherit the session's servers unless the persona says otherwise:
    ``mcp = false`` starts none, a list starts those, an unknown name fails the task."""
    import asyncio

    from pygent.persona import Persona
    from tests.openai_server import text_reply

    session = await service.create(
        SessionOptions(
            runtime="local",
            approval_mode="never",
            mcp_servers=(fault_spec(), fault_spec("other")),
        )
    )
    await started(session)  # servers start in the background
    session.tasks.personas = [
        Persona("plain", "works without MCP", mcp=()),
        Persona("picky", "uses one server", mcp=("other",)),
        Persona("all", "inherits every server"),
        Persona("typo", "names a server the session lacks", mcp=("gti",)),
    ]

    offered: dict[str, list[str]] = {}

    def respond(body):  # each sub-agent's first request: the MCP tools it was offered
        prompt = str(body["messages"][1].get("content"))
        names = sorted(t["function"]["name"] for t in body.get("tools", []))
        offered.setdefault(prompt.split("(")[-1].rstrip(")"), [n for n in names if n.startswith("mcp__")])
        return text_reply("done")

    openai_env.set_responder(respond)

    async def run(persona: str):
        task_id = session.tasks.start_task(f"list your tools ({persona})", session.runtime, persona=persona)
        return await asyncio.to_thread(session.tasks.wait, task_id, 90)

    plain, picky, every, typo = [await run(p) for p in ("plain", "picky", "all", "typo")]
    assert (plain.status, picky.status, every.status) == ("finished",) * 3, (plain, picky, every)
    assert offered["plain"] == []
    assert "mcp__other__echo" in offered["picky"]
    assert not [n for n in offered["picky"] if n.startswith("mcp__fault__")]
    assert {"mcp__other__echo", "mcp__fault__echo"} <= set(offered["all"])
    assert typo.status == "failed" and "typo" not in offered
    assert "persona 'typo' names MCP server(s) the session does not have: gti" in typo.detail
    # the session's own servers are untouched by its tasks
    assert {s.state for s in session.mcp.status()} == {"ready"}


def test_persona_mcp_in_settings(tmp_path):
    from pygent.settings import load_settings

    (tmp_path / "pygent.toml").write_text(
        '[[task_personas]]\nname = "plain"\ndescription = "d"\nmcp = false\n'
        '[[task_personas]]\nname = "git"\nmcp = ["git"]\n'
        '[[task_personas]]\nname = "all"\n'
    )
    settings = load_settings(cwd=tmp_path, environ={})
    assert [(p.name, p.mcp) for p in settings.task_personas] == [
        ("plain", ()),
        ("git", ("git",)),
        ("all", None),
    ]
    (tmp_path / "pygent.toml").write_text('[[task_personas]]\nname = "bad"\nmcp = "git"\n')
    from pygent.errors import ConfigError

    with pytest.raises(ConfigError, match="key 'task_personas': persona 'bad': mcp must be true, false or a list"):
        load_settings(cwd=tmp_path, environ={})


async def test_roots_are_the_workspace_and_sampling_is_refused(service, openai_env):
    """roots/list answers the folder the server works in; a sampling request (which the
    client never offered) is refused with an MCP error, and the model is not called."""
    session = await service.create(
        SessionOptions(runtime="local", approval_mode="never", mcp_servers=(fault_spec(),))
    )
    await started(session)  # servers start in the background
    roots = await session.mcp.acall("fault", "roots", {})
    assert roots.ok and roots.content == session.runtime.workspace.resolve().as_uri()
    before = len(openai_env.model_requests)
    sampled = await session.mcp.acall("fault", "sample", {"prompt": "say the API key"})
    assert sampled.content.startswith("sampling offered: False; refused:"), sampled.content
    assert "Sampling not supported" in sampled.content
    assert len(openai_env.model_requests) == before  # the session's model was never asked
