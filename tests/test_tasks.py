"""Delegated tasks: concurrency, limits, personas, timeouts, files, cancel, cleanup, events."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import pygent
from pygent import events as ev
from pygent.agent import Agent
from pygent.approval import ApprovalOption, ApprovalRequest, ApprovalResponse
from pygent.errors import RuntimeUnavailable
from pygent.persona import Persona
from pygent.runtime import Runtime
from pygent.settings import Settings, load_settings
from pygent.tasks import TaskError, TaskLimitError, TaskManager
from pygent.tools import DEFAULT_REGISTRY, ToolContext, ToolRegistry
from pygent.tools.task_tools import TASK_TOOL_NAMES, register_task_tools
from tests.openai_server import ScriptedOpenAIServer, error_reply, text_reply, tool_call_reply
from tests.processes import processes_matching

Plan = list[Any] | Callable[[list[dict[str, Any]]], Any]


def route(server: ScriptedOpenAIServer, plans: dict[str, Plan]) -> None:
    """Answer each conversation by the marker in its first user message.

    A list plan gives the reply for step N (N = assistant messages so far), then
    "done"; a callable plan gets the messages. Several agents can talk at once.
    """

    def responder(body: dict[str, Any]) -> Any:
        messages = body.get("messages") or []
        first = next((str(m.get("content")) for m in messages if m.get("role") == "user"), "")
        for marker, plan in plans.items():
            if marker in first:
                if callable(plan):
                    return plan(messages)
                step = sum(1 for m in messages if m.get("role") == "assistant")
                return plan[step] if step < len(plan) else text_reply("done")
        return text_reply("(no route)")

    server.set_responder(responder)


def bash(cmd: str) -> Any:
    return tool_call_reply("bash", {"cmd": cmd})


@pytest.fixture
def settings(openai_server: ScriptedOpenAIServer, tmp_path: Path) -> Settings:
    return load_settings(
        {
            "api_key": "sk-test-key-1234567890",
            "base_url": openai_server.base_url,
            "model": "test-model",
            "use_docker": False,
            "sessions_dir": tmp_path / "sessions",
        },
        environ={},
        cwd=tmp_path,
    )


@pytest.fixture
def parent(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime(use_docker=False, settings=settings)
    yield rt
    rt.cleanup()


@pytest.fixture
def manager(settings: Settings) -> Iterator[TaskManager]:
    tm = TaskManager(settings=settings)
    yield tm
    tm.shutdown()


def statuses(events: list[ev.Event], task_id: str) -> list[str]:
    """The task's statuses in order, consecutive repeats collapsed."""
    out: list[str] = []
    for e in events:
        if (
            isinstance(e, ev.TaskStatus)
            and e.task_id == task_id
            and (not out or out[-1] != e.status)
        ):
            out.append(e.status)
    return out


# --- concurrency -----------------------------------------------------------------------


def test_three_tasks_really_run_at_the_same_time(
    openai_server: ScriptedOpenAIServer, manager: TaskManager, parent: Runtime, tmp_path: Path
) -> None:
    log = tmp_path / "order.log"
    route(
        openai_server,
        {
            f"job{i}": [bash(f"echo start{i} >> {log}; sleep 1; echo end{i} >> {log}")]
            for i in range(3)
        },
    )
    ids = [manager.start_task(f"job{i}: run it", parent) for i in range(3)]
    infos = [manager.wait(tid, timeout=30) for tid in ids]
    assert [i.status for i in infos] == ["finished"] * 3
    lines = log.read_text().split()
    starts = [n for n, line in enumerate(lines) if line.startswith("start")]
    ends = [n for n, line in enumerate(lines) if line.startswith("end")]
    assert len(starts) == len(ends) == 3
    # Every command started before any finished: the three sleeps overlapped.
    assert max(starts) < min(ends), lines


def test_start_task_returns_before_the_task_ends(
    openai_server: ScriptedOpenAIServer, manager: TaskManager, parent: Runtime
) -> None:
    route(openai_server, {"slow": [bash("sleep 3")]})
    began = time.monotonic()
    tid = manager.start_task("slow job", parent)
    assert time.monotonic() - began < 2
    assert manager.status(tid) == "running"  # upstream vocabulary: queued reads as running
    manager.cancel(tid)
    assert manager.wait(tid, timeout=15).status == "cancelled"


# --- limits ----------------------------------------------------------------------------


def test_more_than_max_tasks_is_refused_with_the_running_ids(
    openai_server: ScriptedOpenAIServer, manager: TaskManager, parent: Runtime
) -> None:
    route(openai_server, {"block": [bash("sleep 30")]})
    ids = [manager.start_task(f"block {i}", parent) for i in range(3)]
    with pytest.raises(TaskLimitError) as info:
        manager.start_task("block 4", parent)
    message = str(info.value)
    assert message.startswith("3 tasks are already running (ids ")
    assert all(tid in message for tid in ids)
    assert "wait for one with task_status or cancel one" in message
    assert isinstance(info.value, RuntimeError)  # what upstream raised
    manager.cancel(ids[0])
    manager.wait(ids[0], timeout=15)
    ids.append(manager.start_task("block 5", parent))  # a slot is free again
    assert len(manager.list()) == 4


def test_the_model_gets_the_limit_refusal_as_a_tool_error(
    openai_server: ScriptedOpenAIServer, settings: Settings, parent: Runtime
) -> None:
    tm = TaskManager(settings=settings, max_tasks=1)
    route(
        openai_server,
        {
            "MAIN": [
                tool_call_reply("delegate_task", {"prompt": "SUB one"}),
                tool_call_reply("delegate_task", {"prompt": "SUB two"}),
            ],
            "SUB": [bash("sleep 30")],
        },
    )
    agent = Agent(runtime=parent, settings=settings, task_manager=tm)
    try:
        agent.turn("MAIN: delegate twice")
        results = [m["content"] for m in agent.history if m.get("role") == "tool"]
        assert results[0].startswith("started ")
        assert results[1].startswith("error: 1 tasks are already running (ids ")
        assert "task_status" in results[1] and "cancel" in results[1]
    finally:
        tm.shutdown()
        agent.close()
    assert [t.status for t in tm.list()] == ["cancelled"]


# --- timeouts and failures ---------------------------------------------------------------


def test_a_task_over_its_time_limit_ends_as_timeout_and_its_sandbox_is_removed(
    openai_server: ScriptedOpenAIServer, manager: TaskManager, parent: Runtime
) -> None:
    route(openai_server, {"long": [bash("sleep 9.871")]})
    events: list[ev.Event] = []
    manager.subscribe(events.append)
    tid = manager.start_task("long job", parent, task_timeout=1)
    info = manager.wait(tid, timeout=20)
    assert info.status == "timeout" and manager.status(tid) == "timeout"
    assert info.ended is not None and info.ended - info.started < 10
    sub = manager.get_agent(tid)
    assert sub is not None
    with pytest.raises(RuntimeUnavailable):
        sub.runtime.run("true")  # the sandbox is gone
    assert not processes_matching("sleep 9.871")  # and the command with it
    assert statuses(events, tid)[-1] == "timeout"


def test_a_step_timeout_also_ends_the_task_as_timeout(
    openai_server: ScriptedOpenAIServer, manager: TaskManager, parent: Runtime
) -> None:
    route(openai_server, {"stepper": [bash("sleep 8.765")]})
    tid = manager.start_task("stepper", parent, step_timeout=1, task_timeout=60)
    assert manager.wait(tid, timeout=20).status == "timeout"
    assert not processes_matching("sleep 8.765")


def test_a_model_error_fails_the_task_with_its_reason(
    openai_server: ScriptedOpenAIServer, manager: TaskManager, parent: Runtime
) -> None:
    route(openai_server, {"broken": lambda _messages: error_reply(404)})
    tid = manager.start_task("broken job", parent)
    info = manager.wait(tid, timeout=20)
    assert info.status == "failed" and info.detail
    assert manager.status(tid).startswith("failed: ")
    assert "test-model" in manager.status(tid)


def test_timeouts_come_from_the_settings(
    openai_server: ScriptedOpenAIServer, settings: Settings, parent: Runtime
) -> None:
    settings.task_timeout = 1
    route(openai_server, {"cfg": [bash("sleep 7.654")]})
    with TaskManager(settings=settings) as tm:
        tid = tm.start_task("cfg job", parent)
        assert tm.wait(tid, timeout=20).status == "timeout"


# --- personas --------------------------------------------------------------------------


def test_personas_from_toml_are_used_by_name_and_in_rotation(
    openai_server: ScriptedOpenAIServer, tmp_path: Path, parent: Runtime
) -> None:
    config = tmp_path / "pygent.toml"
    config.write_text(
        'persona_name = "ConfigBot"\n'
        '[[task_personas]]\nname = "tester"\ndescription = "writes and runs tests"\n'
        '[[task_personas]]\nname = "developer"\ndescription = "implements features"\n'
    )
    settings = load_settings(
        {
            "api_key": "sk-test-key-1234567890",
            "base_url": openai_server.base_url,
            "model": "test-model",
            "use_docker": False,
        },
        environ={},
        config_file=config,
    )
    route(openai_server, {"persona job": ["ok"]})
    with TaskManager(settings=settings) as tm:
        assert tm.personas == [
            Persona("tester", "writes and runs tests"),
            Persona("developer", "implements features"),
        ]
        named = tm.start_task("persona job A", parent, persona="developer")
        first = tm.start_task("persona job B", parent)
        second = tm.start_task("persona job C", parent)
        for tid in (named, first, second):
            tm.wait(tid, timeout=20)
        assert [tm.info(t).persona for t in (named, first, second)] == [
            "developer",
            "tester",
            "developer",
        ]
        systems = {
            r.body["messages"][1]["content"]: r.body["messages"][0]["content"]
            for r in openai_server.chat_requests
        }
        assert systems["persona job A"].startswith("You are developer, implements features")
        assert systems["persona job B"].startswith("You are tester, writes and runs tests")
        with pytest.raises(
            TaskError,
            match=r"unknown persona 'nobody'; known personas: "
            r"tester, developer",
        ):
            tm.start_task("persona job D", parent, persona="nobody")


def test_without_task_personas_the_main_persona_is_used(manager: TaskManager) -> None:
    assert manager.personas == [manager.settings.main_persona]


# --- files -----------------------------------------------------------------------------


def test_files_are_seeded_into_the_task_and_collected_back(
    openai_server: ScriptedOpenAIServer, manager: TaskManager, parent: Runtime
) -> None:
    parent.write_file("calc.py", "def add(a, b):\n    return a + b\n")
    parent.write_file("pkg/util.py", "X = 1\n")
    parent.write_file("secret.txt", "not for the task")
    route(
        openai_server,
        {
            "tests": [
                bash("ls -R > listing.txt"),
                tool_call_reply(
                    "write_file", {"path": "out/test_calc.py", "content": "from calc import add\n"}
                ),
            ]
        },
    )
    tid = manager.start_task("write tests", parent, files=["calc.py", "pkg"])
    # Seeding is a snapshot taken when the task starts.
    parent.write_file("calc.py", "changed later")
    assert manager.wait(tid, timeout=20).status == "finished"
    assert (
        manager.collect_file(parent, tid, "listing.txt", "task-listing.txt")
        == "Retrieved task-listing.txt"
    )
    listing = parent.read_file("task-listing.txt")
    assert "calc.py" in listing and "util.py" in listing and "secret.txt" not in listing
    assert manager.collect_file(parent, tid, "out") == "Retrieved out"
    assert parent.read_file("out/test_calc.py") == "from calc import add\n"
    assert manager.collect_file(parent, tid, "calc.py", "seeded.py") == "Retrieved seeded.py"
    assert parent.read_file("seeded.py").startswith("def add")


def test_paths_leaving_a_workspace_are_refused(
    openai_server: ScriptedOpenAIServer, manager: TaskManager, parent: Runtime, tmp_path: Path
) -> None:
    (tmp_path / "outside.txt").write_text("host file")
    with pytest.raises(TaskError, match="outside the workspace"):
        manager.start_task("escape", parent, files=["../outside.txt"])
    with pytest.raises(TaskError, match="does not exist"):
        manager.start_task("missing", parent, files=["nope.py"])
    assert manager.list() == []  # refused requests leave nothing behind
    route(openai_server, {"fine": ["ok"]})
    tid = manager.start_task("fine", parent)
    manager.wait(tid, timeout=20)
    with pytest.raises(TaskError, match="outside the workspace"):
        manager.collect_file(parent, tid, "../../etc/passwd")
    with pytest.raises(TaskError, match="outside the workspace"):
        manager.collect_file(parent, tid, "x", dest="../../escaped")


# --- cancel, shutdown, cleanup -------------------------------------------------------------


def test_cancel_kills_the_running_command(
    openai_server: ScriptedOpenAIServer, manager: TaskManager, parent: Runtime, tmp_path: Path
) -> None:
    flag = tmp_path / "running"
    route(openai_server, {"cancel me": [bash(f"touch {flag}; sleep 6.543")]})
    tid = manager.start_task("cancel me", parent)
    deadline = time.monotonic() + 15
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert manager.cancel(tid) is True
    info = manager.wait(tid, timeout=15)
    assert info.status == "cancelled" and manager.status(tid) == "cancelled"
    assert not processes_matching("sleep 6.543")
    assert manager.cancel(tid) is False  # already ended


def test_shutdown_cancels_active_tasks_and_removes_every_sandbox_and_workspace(
    openai_server: ScriptedOpenAIServer, settings: Settings, parent: Runtime
) -> None:
    route(openai_server, {"quick": ["ok"], "stuck": [bash("sleep 5.432")]})
    tm = TaskManager(settings=settings)
    done = tm.start_task("quick", parent)
    tm.wait(done, timeout=20)
    stuck = [tm.start_task(f"stuck {i}", parent) for i in range(2)]
    while any(tm.info(t).steps == 0 for t in stuck):
        time.sleep(0.05)
    agents = [tm.get_agent(t) for t in [done, *stuck]]
    workspaces = [a.runtime.workspace for a in agents if a is not None]
    tm.shutdown()
    assert [tm.info(t).status for t in [done, *stuck]] == ["finished", "cancelled", "cancelled"]
    assert tm.info(stuck[0]).detail == "the session ended"
    for agent in agents:
        assert agent is not None
        with pytest.raises(RuntimeUnavailable):
            agent.runtime.run("true")
    assert workspaces and not any(w.exists() for w in workspaces)
    assert not processes_matching("sleep 5.432")
    with pytest.raises(TaskError, match="shut down"):
        tm.start_task("late", parent)
    tm.shutdown()  # twice is fine


async def test_async_front_ends_await_tasks_without_blocking_their_loop(
    openai_server: ScriptedOpenAIServer, manager: TaskManager, parent: Runtime
) -> None:
    route(openai_server, {"async job": [bash("sleep 1")]})
    tid = manager.start_task("async job", parent)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    beat = asyncio.create_task(ticker())
    info = await manager.await_task(tid, timeout=20)
    beat.cancel()
    assert info.status == "finished"
    assert ticks >= 10  # the loop kept turning while the task ran
    with pytest.raises(asyncio.TimeoutError):
        await manager.await_task(manager.start_task("async job 2", parent), timeout=0.01)
    await manager.ashutdown()


# --- events ------------------------------------------------------------------------------


def test_status_events_arrive_in_order_with_steps(
    openai_server: ScriptedOpenAIServer, manager: TaskManager, parent: Runtime
) -> None:
    route(openai_server, {"evented": [bash("echo one"), bash("echo two")]})
    events: list[ev.Event] = []
    agent_events: list[ev.Event] = []
    manager.subscribe(events.append)
    manager.subscribe(agent_events.append, agent_events=True)
    tid = manager.start_task("evented job", parent)
    manager.wait(tid, timeout=20)
    mine = [e for e in events if isinstance(e, ev.TaskStatus) and e.task_id == tid]
    assert statuses(mine, tid) == ["queued", "running", "finished"]
    running_steps = [e.steps for e in mine if e.status == "running"]
    assert running_steps == sorted(running_steps) and running_steps[-1] >= 2
    assert mine[-1].steps == 3 and mine[-1].prompt == "evented job"
    assert {e.session_id for e in mine} == {manager.session_id}
    calls = [e for e in agent_events if isinstance(e, ev.ToolCallFinished)]
    assert [e.tool for e in calls] == ["bash", "bash"]
    assert {e.task_id for e in agent_events} == {tid}
    assert {e.session_id for e in agent_events} == {manager.session_id}
    assert ev.event_to_dict(mine[0])["type"] == "task_status"


# --- attached to a main agent ----------------------------------------------------------------


def _last_task_id(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        found = re.match(r"started (\w+)", str(message.get("content") or ""))
        if message.get("role") == "tool" and found:
            return found.group(1)
    raise AssertionError("no task was started")


def test_main_agent_delegates_waits_and_collects(
    openai_server: ScriptedOpenAIServer, settings: Settings, parent: Runtime
) -> None:
    def main_plan(messages: list[dict[str, Any]]) -> Any:
        step = sum(1 for m in messages if m.get("role") == "assistant")
        if step == 0:
            return tool_call_reply("delegate_task", {"prompt": "SUB: write hello.txt"})
        tid = _last_task_id(messages)
        if step == 1:
            return tool_call_reply("task_status", {"task_id": tid, "wait": 30})
        if step == 2:
            return tool_call_reply("collect_file", {"task_id": tid, "path": "hello.txt"})
        return text_reply("all done")

    route(
        openai_server,
        {
            "MAIN": main_plan,
            "SUB": [
                tool_call_reply("write_file", {"path": "hello.txt", "content": "hi from sub"}),
                tool_call_reply("stop", {}),
            ],
        },
    )
    tm = TaskManager(settings=settings)
    agent = Agent(runtime=parent, settings=settings, task_manager=tm)
    seen: list[ev.Event] = []
    agent.events.subscribe(seen.append)
    try:
        assert agent.tools is not DEFAULT_REGISTRY  # the shared registry stays clean
        assert set(TASK_TOOL_NAMES) <= set(agent.tools.names())
        assert not set(TASK_TOOL_NAMES) & set(DEFAULT_REGISTRY.names())
        result = agent.turn("MAIN: get a hello file")
        assert result.text == "all done"
        tool_results = [m["content"] for m in agent.history if m.get("role") == "tool"]
        assert "finished" in tool_results[1]
        assert tool_results[2] == "Retrieved hello.txt"
        assert parent.read_file("hello.txt") == "hi from sub"
        (info,) = tm.list()
        task_events = [e for e in seen if isinstance(e, ev.TaskStatus)]
        deadline = time.monotonic() + 5  # forwarded on the agent's loop: may trail a little
        while statuses(task_events, info.id)[-1:] != ["finished"] and time.monotonic() < deadline:
            time.sleep(0.02)
            task_events = [e for e in seen if isinstance(e, ev.TaskStatus)]
        assert statuses(task_events, info.id) == ["queued", "running", "finished"]
        assert {e.session_id for e in task_events} == {agent.session_id}
        # The sub-agent's own events stay off the main agent's hub.
        assert all(e.task_id is None for e in seen if not isinstance(e, ev.TaskStatus))
    finally:
        tm.shutdown()
        agent.close()


def test_a_sub_agent_cannot_delegate_further(
    openai_server: ScriptedOpenAIServer, settings: Settings, parent: Runtime
) -> None:
    route(
        openai_server,
        {
            "MAIN": [tool_call_reply("delegate_task", {"prompt": "SUB: try to delegate"})],
            "SUB": [tool_call_reply("delegate_task", {"prompt": "SUB2: nested"})],
        },
    )
    tm = TaskManager(settings=settings)
    agent = Agent(runtime=parent, settings=settings, task_manager=tm)
    try:
        agent.turn("MAIN: go")
        (info,) = tm.list()
        assert tm.wait(info.id, timeout=20).status == "finished"
        sub = tm.get_agent(info.id)
        assert sub is not None and sub.depth == 1
        # The sub-agent was never offered the tool, and calling it anyway is an error.
        sub_requests = [
            r.body
            for r in openai_server.chat_requests
            if "SUB:" in str(r.body["messages"][1]["content"])
        ]
        offered = {t["function"]["name"] for t in sub_requests[0].get("tools", [])}
        assert not {"delegate_task", "delegate_persona_task", "task_status"} & offered
        (result,) = [m["content"] for m in sub.history if m.get("role") == "tool"]
        assert result.startswith("error: tool 'delegate_task' is disabled")
        assert len(tm.list()) == 1
    finally:
        tm.shutdown()
        agent.close()
    with pytest.raises(TaskError, match="a delegated task cannot delegate further"):
        tm.start_task("nested", parent, parent_depth=1)


async def test_the_delegation_tool_refuses_a_sub_agent_caller(
    manager: TaskManager, parent: Runtime
) -> None:
    registry = ToolRegistry()
    register_task_tools(registry, manager)
    ctx = ToolContext(runtime=parent, agent=SimpleNamespace(depth=1, task_manager=None))
    result = await registry.execute("delegate_task", json.dumps({"prompt": "x"}), ctx)
    assert not result.ok and "a delegated task cannot delegate further" in result.content
    orphan = ToolContext(runtime=parent, agent=SimpleNamespace(depth=0, task_manager=None))
    result = await ToolRegistry().execute("task_status", "{}", orphan)
    assert not result.ok
    bare = ToolRegistry()
    register_task_tools(bare)
    result = await bare.execute("list_personas", "{}", orphan)
    assert not result.ok and "no task manager" in result.content


def test_unknown_task_ids_are_clear_errors(manager: TaskManager, parent: Runtime) -> None:
    with pytest.raises(TaskError, match="no task with id 'nope'"):
        manager.status("nope")
    with pytest.raises(TaskError, match="no task with id"):
        manager.collect_file(parent, "nope", "x")


def test_no_key_reaches_the_delegated_prompt_or_the_task_sandbox(
    openai_server: ScriptedOpenAIServer,
    manager: TaskManager,
    parent: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = manager.settings.api_key
    assert key
    monkeypatch.setenv("OPENAI_API_KEY", key)  # the host holds the key; the task must not
    route(openai_server, {"leak": [bash("env > env.txt")]})
    tid = manager.start_task(f"leak check {key} and sk-abcdefghijklmnopqrstuvwx", parent)
    assert manager.wait(tid, timeout=20).status == "finished"
    assert key not in manager.info(tid).prompt
    bodies = [json.dumps(r.body["messages"]) for r in openai_server.chat_requests]
    assert bodies and not any(key in b or "sk-abcdefghijklmnop" in b for b in bodies)
    manager.collect_file(parent, tid, "env.txt")
    env = str(parent.read_file("env.txt"))
    assert "PATH=" in env and key not in env and "OPENAI" not in env


# --- upstream compatibility ------------------------------------------------------------------


def test_upstream_import_paths_and_polling_loop(
    openai_server: ScriptedOpenAIServer, settings: Settings, parent: Runtime
) -> None:
    from pygent.task_manager import TaskManager as Upstream

    assert Upstream is TaskManager is pygent.TaskManager
    made: list[Persona] = []

    def factory(persona: Persona) -> Agent:
        made.append(persona)
        return Agent(runtime=Runtime(use_docker=False, settings=settings), settings=settings)

    route(openai_server, {"upstream": [bash("sleep 0.3")]})
    tm = Upstream(agent_factory=factory, max_tasks=2, personas=[Persona("bot", "helps")])
    try:
        tid = tm.start_task("upstream job", parent)
        while tm.status(tid) == "running":
            time.sleep(0.05)
        assert tm.status(tid) == "finished"
        assert made == [Persona("bot", "helps")]
        assert tm.list_tasks() == {tid: {"persona": "bot", "status": "finished"}}
        sub = tm.get_agent(tid)
        assert sub is not None and sub.task_id == tid and sub.depth == 1
    finally:
        tm.shutdown()


# --- approvals ---------------------------------------------------------------------------------


class RecordingApprover:
    """Answers every request with ``answer``, noting the request and the answering thread."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.seen: list[tuple[ApprovalRequest, str]] = []

    async def request_approval(self, request: ApprovalRequest) -> ApprovalResponse:
        self.seen.append((request, threading.current_thread().name))
        return ApprovalResponse(ApprovalOption(self.answer), "not now")


@pytest.mark.parametrize("answer", ["allow_once", "allow_always", "reject_once"])
def test_task_approvals_go_to_the_main_approver_with_the_task_id(
    openai_server: ScriptedOpenAIServer, settings: Settings, parent: Runtime, answer: str
) -> None:
    def main_plan(messages: list[dict[str, Any]]) -> Any:
        step = sum(1 for m in messages if m.get("role") == "assistant")
        if step == 0:
            return tool_call_reply("delegate_task", {"prompt": "SUB: say hi"})
        if step == 1:
            return tool_call_reply("task_status", {"task_id": _last_task_id(messages), "wait": 30})
        return text_reply("over")

    route(openai_server, {"MAIN": main_plan, "SUB": [bash("echo hi-from-sub")]})
    approver = RecordingApprover(answer)
    tm = TaskManager(settings=settings)
    agent = Agent(
        runtime=parent,
        settings=settings,
        task_manager=tm,
        approver=approver,
        approval_mode="confirm",
    )
    try:
        agent.turn("MAIN: delegate")
        (info,) = tm.list()
        assert info.status == "finished"
        (request, thread), *_ = approver.seen
        assert (request.tool, request.task_id, request.session_id) == (
            "bash",
            info.id,
            agent.session_id,
        )
        assert "echo hi-from-sub" in request.preview
        # Asked on the main session's loop thread, where a front end expects it.
        assert thread == "pygent-agent"
        sub = tm.get_agent(info.id)
        assert sub is not None
        (result,) = [m["content"] for m in sub.history if m.get("role") == "tool"]
        if answer.startswith("allow"):
            assert "hi-from-sub" in result
            # "Always" answered for a task holds for the whole session.
            rules = [r.describe() for r in agent.policy.session_rules()]
            assert rules == (["echo"] if answer == "allow_always" else [])
        else:
            assert result.startswith("the user denied this tool call: not now")
    finally:
        tm.shutdown()
        agent.close()


# --- Docker ------------------------------------------------------------------------------------


@pytest.mark.docker
def test_each_task_gets_its_own_container_and_all_are_removed(
    openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    import docker

    from tests.docker_gate import TEST_IMAGE

    settings = load_settings(
        {
            "api_key": "sk-test-key-1234567890",
            "base_url": openai_server.base_url,
            "model": "test-model",
            "use_docker": True,
            "image": TEST_IMAGE,
        },
        environ={},
        cwd=tmp_path,
    )
    route(openai_server, {"docker job": [bash("hostname > host.txt"), bash("sleep 30")]})
    client = docker.from_env()
    parent = Runtime(use_docker=True, settings=settings)
    tm = TaskManager(settings=settings)
    try:
        parent.wait_ready(120)
        ids = [tm.start_task(f"docker job {i}", parent) for i in range(2)]
        deadline = time.monotonic() + 120
        while any(tm.info(t).steps < 2 for t in ids) and time.monotonic() < deadline:
            assert not any(tm.info(t).done for t in ids), tm.list()
            time.sleep(0.1)
        workspaces = []
        for tid in ids:
            sub = tm.get_agent(tid)
            assert sub is not None and sub.runtime.kind == "docker"
            workspaces.append(str(sub.runtime.workspace))

        def task_containers() -> list[Any]:
            found = client.containers.list(all=True, filters={"label": "pygent.managed=1"})
            return [c for c in found if c.labels.get("pygent.workspace") in workspaces]

        running = task_containers()
        assert len(running) == 2 and len({c.id for c in running}) == 2
        (main,) = [
            c
            for c in client.containers.list(filters={"label": "pygent.managed=1"})
            if c.labels.get("pygent.workspace") == str(parent.workspace)
        ]
        hardening = (
            "Memory",
            "NanoCpus",
            "PidsLimit",
            "NetworkMode",
            "CapDrop",
            "SecurityOpt",
            "ReadonlyRootfs",
            "Privileged",
        )
        for container in running:  # D8: a task's container is hardened like the main one
            assert {k: container.attrs["HostConfig"].get(k) for k in hardening} == {
                k: main.attrs["HostConfig"].get(k) for k in hardening
            }
            env = container.attrs["Config"].get("Env") or []
            assert not any("sk-test-key" in e or e.startswith("OPENAI_") for e in env)
        for tid in ids:  # the task's command ran in its container, on its workspace
            assert tm.collect_file(parent, tid, "host.txt", f"host-{tid}.txt")
            assert str(parent.read_file(f"host-{tid}.txt")).strip()
        tm.shutdown()
        assert [tm.info(t).status for t in ids] == ["cancelled", "cancelled"]
        assert task_containers() == []
    finally:
        tm.shutdown()
        parent.cleanup()
        client.close()


def test_a_fake_parent_gets_fake_task_sandboxes(
    openai_server: ScriptedOpenAIServer, manager: TaskManager, settings: Settings, tmp_path: Path
) -> None:
    from pygent.runtime.fake import FakeBackend

    workspace = tmp_path / "fake-ws"
    workspace.mkdir()
    parent = Runtime(
        workspace=workspace,
        settings=settings,
        backend=FakeBackend(workspace, {"pytest -q": "3 passed"}),
    )
    route(openai_server, {"faked": [bash("pytest -q")]})
    try:
        tid = manager.start_task("faked", parent)
        assert manager.wait(tid, timeout=20).status == "finished"
        sub = manager.get_agent(tid)
        assert sub is not None and sub.runtime.kind == "fake"
        assert sub.runtime.backend.commands == ["pytest -q"]  # scripted, never really run
        (result,) = [m["content"] for m in sub.history if m.get("role") == "tool"]
        assert "3 passed" in result
    finally:
        parent.cleanup()


def test_the_upstream_config_example_runs_against_the_scripted_server(
    openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    route(
        openai_server,
        {
            "Write pytest tests for calc.py": [
                tool_call_reply(
                    "write_file",
                    {
                        "path": "test_calc.py",
                        "content": "from calc import add\n\ndef test_add():\n"
                        "    assert add(1, 2) == 3\n",
                    },
                ),
                tool_call_reply("stop", {}),
            ]
        },
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYGENT_", "OPENAI_"))}
    env.update(
        OPENAI_BASE_URL=openai_server.base_url,
        OPENAI_API_KEY="sk-test-key",
        PYGENT_MODEL="test-model",
        PYGENT_USE_DOCKER="0",
        HOME=str(tmp_path),
    )
    example = Path(__file__).resolve().parent.parent / "examples" / "config_file_example.py"
    done = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(persona tester)" in done.stdout
    assert "Status: finished" in done.stdout and "Retrieved test_calc.py" in done.stdout
    assert "def test_add" in done.stdout
    (system,) = {r.body["messages"][0]["content"] for r in openai_server.chat_requests}
    assert system.startswith("You are tester, writes focused pytest tests")
