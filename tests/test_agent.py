"""The agent core against the scripted OpenAI-compatible server, through the real SDK."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path

import pytest

import pygent
from pygent import Agent, openai_compat
from pygent.events import Event, StopReason
from pygent.runtime import Runtime
from pygent.settings import load_settings
from pygent.tools import ToolRegistry, builtin_tools


@pytest.fixture()
def settings(openai_server, tmp_path: Path):
    env = {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "sk-test-key",
           "PYGENT_MODEL": "test-model", "PYGENT_USE_DOCKER": "0"}
    return load_settings(environ=env, cwd=tmp_path)


@pytest.fixture()
def agent(settings, tmp_path: Path):
    rt = Runtime(settings=settings, workspace=tmp_path / "ws")
    ag = Agent(runtime=rt, settings=settings, tools=ToolRegistry(builtin_tools()))
    events: list[Event] = []
    ag.events.subscribe(events.append)
    ag.seen = events  # type: ignore[attr-defined]
    yield ag
    ag.close()
    rt.cleanup()


def _tool_messages(request) -> list[dict]:
    return [m for m in request.body["messages"] if m.get("role") == "tool"]


def test_step_streams_text_and_records_usage(agent: Agent, openai_server) -> None:
    openai_server.add_text("Hello there, friend.", usage={"prompt_tokens": 11, "completion_tokens": 4})
    msg = agent.step("hi")
    assert msg.content == "Hello there, friend."
    deltas = "".join(e.text for e in agent.seen if e.type == "message_delta")
    assert deltas == "Hello there, friend."
    assert agent.usage == {"prompt_tokens": 11, "completion_tokens": 4}
    body = openai_server.chat_requests[-1].body
    assert body["model"] == "test-model" and body["stream"] is True
    assert body["messages"][0]["role"] == "system" and body["messages"][-1] == {"role": "user", "content": "hi"}


def test_tool_call_runs_in_the_sandbox_and_the_result_goes_back(agent: Agent, openai_server) -> None:
    openai_server.add_tool_call("write_file", {"path": "hello.py", "content": "print('hi from file')\n"})
    openai_server.add_tool_call("bash", {"cmd": "python3 hello.py"})
    openai_server.add_text("It printed hi.")
    result = agent.turn("write and run hello.py")
    assert result.stop_reason == StopReason.END_TURN and result.text == "It printed hi."
    assert (agent.runtime.workspace / "hello.py").read_text() == "print('hi from file')\n"
    last = _tool_messages(openai_server.chat_requests[-1])
    assert "hi from file" in last[-1]["content"] and last[-1]["content"].startswith("$ python3 hello.py")
    kinds = [e.type for e in agent.seen]
    assert kinds.index("tool_call_proposed") < kinds.index("tool_call_started") < kinds.index("tool_call_finished")
    assert any(e.type == "tool_output" and "hi from file" in e.text for e in agent.seen)


def test_parallel_tool_calls_each_get_a_result(agent: Agent, openai_server) -> None:
    openai_server.add_tool_calls([("bash", {"cmd": "echo one"}), ("bash", {"cmd": "echo two"})])
    openai_server.add_text("done")
    agent.turn("two things")
    tools = _tool_messages(openai_server.chat_requests[-1])
    assert [t["content"].splitlines()[1] for t in tools] == ["one", "two"]
    calls = openai_server.chat_requests[-1].body["messages"][-3]["tool_calls"]
    assert [c["id"] for c in calls] == [t["tool_call_id"] for t in tools]


def test_stop_and_ask_user_end_the_turn(agent: Agent, openai_server) -> None:
    openai_server.add_tool_call("stop", {"reason": "all done"})
    assert agent.turn("finish").stop_reason == StopReason.STOP_TOOL
    openai_server.add_tool_call("ask_user", {"prompt": "Which file?", "options": ["a.py", "b.py"]})
    result = agent.turn("edit something")
    assert result.stop_reason == StopReason.ASK_USER
    assert (result.question, result.options) == ("Which file?", ("a.py", "b.py"))


@pytest.mark.parametrize("raw", ['{"cmd": "echo a",', "[]", "null", '"str"'])
def test_malformed_arguments_come_back_as_a_tool_error(agent: Agent, openai_server, raw: str) -> None:
    openai_server.add_tool_call("bash", raw)
    openai_server.add_text("sorry")
    agent.turn("go")
    content = _tool_messages(openai_server.chat_requests[-1])[-1]["content"]
    assert content.startswith("error:") and "not run" in content


def test_unknown_tool_lists_the_available_ones(agent: Agent, openai_server) -> None:
    openai_server.add_tool_call("Bash", {"cmd": "ls"})
    openai_server.add_text("ok")
    agent.turn("go")
    content = _tool_messages(openai_server.chat_requests[-1])[-1]["content"]
    assert "'Bash' does not exist" in content and "bash" in content.split("Available tools:")[1]


def test_missing_and_extra_arguments_are_schema_errors(agent: Agent, openai_server) -> None:
    openai_server.add_tool_calls([("write_file", {"path": "x"}), ("bash", {"cmd": "ls", "sudo": True})])
    openai_server.add_text("ok")
    agent.turn("go")
    a, b = (t["content"] for t in _tool_messages(openai_server.chat_requests[-1]))
    assert "missing required argument(s): content" in a and "unknown argument(s): sudo" in b
    assert not (agent.runtime.workspace / "x").exists()


def test_repeated_failing_call_stops_the_turn(agent: Agent, openai_server) -> None:
    for _ in range(5):
        openai_server.add_tool_call("read_file", {"path": "missing.txt"})
    result = agent.turn("read it")
    assert result.stop_reason == StopReason.ERROR and "repeated the same failing tool call" in result.error


def test_model_error_ends_the_turn_and_keeps_the_session(agent: Agent, openai_server) -> None:
    openai_server.add_text("first answer")
    agent.turn("one")
    openai_server.add_error(401)
    result = agent.turn("two")
    assert result.stop_reason == StopReason.ERROR and "API key" in result.error
    assert "sk-test-key" not in result.error
    openai_server.add_text("back again")
    assert agent.turn("three").text == "back again"
    contents = [m.get("content") for m in openai_server.chat_requests[-1].body["messages"]]
    assert "one" in contents and "first answer" in contents and "two" in contents


def test_cancel_kills_the_command_and_every_call_gets_a_result(agent: Agent, openai_server) -> None:
    marker = f"sleep {random.randint(100_000, 999_999)}"
    openai_server.add_tool_call("bash", {"cmd": marker})

    async def go():
        task = asyncio.ensure_future(agent.arun("sleep please"))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if marker in os.popen("ps -eo args").read():
                break
        started = time.monotonic()
        assert agent.cancel()
        result = await task
        return result, time.monotonic() - started

    result, _elapsed = asyncio.run(go())
    assert result.stop_reason == StopReason.CANCELLED
    assert marker not in os.popen("ps -eo args").read()
    tool_msgs = [m for m in agent.history if m.get("role") == "tool"]
    assert tool_msgs and "cancelled" in tool_msgs[-1]["content"]
    openai_server.add_text("fine")
    assert agent.turn("next").text == "fine"  # the next request is valid


def test_history_file_restores_the_conversation(settings, tmp_path: Path, openai_server) -> None:
    history = tmp_path / "history.jsonl"
    rt = Runtime(settings=settings)
    first = Agent(runtime=rt, settings=settings, history_file=history)
    openai_server.add_text("remembered")
    first.turn("remember this")
    first.close()
    second = Agent(runtime=rt, settings=settings, history_file=history)
    openai_server.add_text("yes")
    second.turn("what did I say?")
    contents = [m.get("content") for m in openai_server.chat_requests[-1].body["messages"]]
    assert "remember this" in contents and "remembered" in contents
    assert "sk-test-key" not in history.read_text()
    second.close()
    rt.cleanup()


def test_system_prompt_follows_the_tool_registry(agent: Agent, openai_server) -> None:
    @agent.tools.tool("shout", "Upper-case a text",
                      {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]})
    def shout(rt, text):
        return text.upper()

    openai_server.add_tool_call("shout", {"text": "hey"})
    openai_server.add_text("ok")
    agent.turn("shout")
    body = openai_server.chat_requests[-1].body
    assert "- shout: Upper-case a text" in body["messages"][0]["content"]
    assert _tool_messages(openai_server.chat_requests[-1])[-1]["content"] == "HEY"
    agent.tools.remove("shout")
    openai_server.add_text("ok")
    agent.turn("again")
    assert "shout" not in json.dumps(openai_server.chat_requests[-1].body["tools"])


def test_disabled_tools_are_not_offered_nor_run(settings, tmp_path: Path, openai_server) -> None:
    rt = Runtime(settings=settings)
    ag = Agent(runtime=rt, settings=settings, disabled_tools=["bash"], tools=ToolRegistry(builtin_tools()))
    openai_server.add_tool_call("bash", {"cmd": "touch pwned"})
    openai_server.add_text("ok")
    ag.turn("go")
    names = [t["function"]["name"] for t in openai_server.chat_requests[0].body["tools"]]
    assert "bash" not in names and not (rt.workspace / "pwned").exists()
    ag.close()
    rt.cleanup()


def test_upstream_custom_model_examples_run_as_written(settings) -> None:
    class EchoModel:
        def chat(self, messages, model, tools):
            last = messages[-1]["content"]
            return openai_compat.Message(role="assistant", content=f"Echo: {last}")

    class BashModel:
        def chat(self, messages, model, tools):
            cmd = messages[-1]["content"]
            call = openai_compat.ToolCall(
                id="1", type="function",
                function=openai_compat.ToolCallFunction(name="bash", arguments=json.dumps({"cmd": cmd})))
            return openai_compat.Message(role="assistant", content=None, tool_calls=[call])

    ag = Agent(model=EchoModel(), settings=settings)
    assert ag.step("test").content == "Echo: test"
    ag.runtime.cleanup()
    ag = Agent(model=BashModel(), settings=settings)
    ag.step("echo hi")
    assert ag.history[-1]["role"] == "tool" and ag.history[-1]["content"] == "$ echo hi\nhi\n"
    ag.runtime.cleanup()


def test_public_api_is_pinned() -> None:
    assert set(pygent.__all__) >= {
        "Agent", "Runtime", "TaskManager", "openai_compat", "load_config", "register_tool", "tool",
        "remove_tool", "clear_tools", "reset_tools", "register_command", "set_custom_model"}
    from pygent.commands import register_command  # noqa: F401
    from pygent.models import set_custom_model  # noqa: F401
    from pygent.runtime import Runtime as R

    assert pygent.Runtime is R


# ---------------------------------------------------------------- partial replies


def test_a_failed_call_keeps_the_shown_text_marked_interrupted(agent: Agent, openai_server) -> None:
    agent.model.max_retries = 0
    openai_server.add_truncated_stream("I will now", tool_name=None)
    openai_server.add_error(400, {"error": {"message": "bad things"}})
    agent.step("go")
    last = agent.history[-1]
    assert last["role"] == "assistant"
    assert last["content"].startswith("I will now\n[interrupted: the model server at ")
    assert "bad things" in last["content"]
    ended = [e for e in agent.seen if e.type == "turn_ended"][-1]
    assert ended.stop_reason is StopReason.ERROR


def test_shown_text_equals_saved_text_after_a_cut_stream(agent: Agent, openai_server) -> None:
    openai_server.add_truncated_stream("The answer is fort", tool_name=None)
    openai_server.add_text("The answer is 42.")
    agent.step("what is it?")
    shown = [e for e in agent.seen if e.type in ("message_delta", "message_discarded")]
    cut = next(i for i, e in enumerate(shown) if e.type == "message_discarded")
    assert "".join(e.text for e in shown[:cut]) == "The answer is fort"
    after = "".join(e.text for e in shown[cut + 1 :])
    assert after == agent.history[-1]["content"] == "The answer is 42."


def test_estimated_usage_is_marked_in_the_event(agent: Agent, openai_server) -> None:
    from tests.openai_server import RawReply

    body = (b'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\n'
            b"data: [DONE]\n\n")
    openai_server.add(RawReply(200, body, "text/event-stream"))
    agent.step("hi")
    usage = [e for e in agent.seen if e.type == "usage"]
    assert len(usage) == 1 and usage[0].estimated and usage[0].total_prompt_tokens > 0
    assert agent.usage_estimated
    assert any(e.type == "notice" and "no token usage" in e.text for e in agent.seen)
