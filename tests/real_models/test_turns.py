"""Whole turns through Pygent's API against real servers: tool calls, answers, token usage.

SmolLM2-135M at temperature 0 is deterministic but weak: asked to "repeat after me" a
Hermes-style ``<tool_call>`` block it emits exactly that call, llama-server parses it
into a tool call, and after the result it answers with text. llama-cpp-python's
``chatml-function-calling`` handler is another story (see the test below).
"""

from __future__ import annotations

import pytest

from pygent import events as ev
from tests.real_models import servers
from tests.real_models.conftest import each_server
from tests.real_models.servers import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TOOL_PROMPT = (
    "Repeat after me: <tool_call>\n"
    '{"name": "bash", "arguments": {"cmd": "echo pygent"}}\n'
    "</tool_call>"
)


def assert_bash_ran(recorder, history: list[dict], word: str) -> dict:
    """The model's first call ran ``echo <word>``; returns the saved calling message."""
    proposed = recorder.of(ev.ToolCallProposed)
    assert proposed, f"no tool call; events: {[e.type for e in recorder.events]}"
    assert proposed[0].tool == "bash" and proposed[0].arguments == {"cmd": f"echo {word}"}
    finished = recorder.of(ev.ToolCallFinished)[0]
    assert finished.ok and finished.status == "completed", finished
    assert f"\n{word}\n" in finished.output
    calling = next(m for m in history if m.get("tool_calls"))
    assert calling["role"] == "assistant" and not calling.get("content")
    call = calling["tool_calls"][0]
    assert call["function"]["name"] == "bash" and call["id"] == proposed[0].call_id
    result = history[history.index(calling) + 1]
    assert result == {"role": "tool", "tool_call_id": call["id"], "content": finished.output}
    return calling


@each_server(servers.LLAMA_SERVER, servers.LITELLM)
def test_tool_call_then_a_text_answer(model_server: ServerProcess, pygent_env, make_agent) -> None:
    pygent_env(model_server, tools=("bash",))
    agent, recorder = make_agent()
    result = agent.turn(TOOL_PROMPT, max_steps=4)

    assert result.stop_reason == ev.StopReason.END_TURN, result
    assert result.steps == 2, result
    calling = assert_bash_ran(recorder, agent.history, "pygent")
    assert result.text.strip() and "pygent" in result.text  # it answers from the result
    assert [m["role"] for m in agent.history] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert agent.history[1] == {"role": "user", "content": TOOL_PROMPT}
    assert agent.history[2] is calling
    assert agent.history[-1] == {"role": "assistant", "content": result.text}
    # What the user was shown is what was saved.
    assert recorder.shown_text() == result.text
    assert [e.text for e in recorder.of(ev.MessageDone)] == [result.text]
    ended = recorder.of(ev.TurnEnded)
    assert len(ended) == 1 and ended[0].stop_reason == ev.StopReason.END_TURN and not ended[0].error


def test_llama_cpp_python_tool_call_through_a_plain_re_ask(
    llama_cpp_python: ServerProcess, pygent_env, make_agent
) -> None:
    """llama-cpp-python sees tools only with ``tool_choice`` and cannot stream an automatic
    choice (an empty 200 stream): the call must come from one plain re-ask, and from then
    on tool requests go out whole. Its handler never shows the model the tool results and
    answers a text choice with empty content, so the model calls again: the turn ends at
    its step limit, without an error, both requests accepted (content "" beside the call).
    """
    pygent_env(llama_cpp_python, tools=("bash",))
    agent, recorder = make_agent()
    # Plain words: its template HTML-escapes every message, so the quotes of TOOL_PROMPT
    # reach the model as &#34; and come back inside the arguments.
    result = agent.turn("Run echo hello", max_steps=2)

    assert result.stop_reason in (ev.StopReason.MAX_STEPS, ev.StopReason.END_TURN), result
    errors = [n.text for n in recorder.of(ev.Notice) if n.level == "error"]
    assert errors == ([result.error] if result.error else []), errors  # only the step limit
    assert "max_steps" in result.error or not result.error
    assert result.steps == 2, result
    assert_bash_ran(recorder, agent.history, "hello")
    retries = [n.text for n in recorder.of(ev.Notice) if "retrying" in n.text]
    assert not retries, f"the empty stream was retried instead of asked once plainly: {retries}"
    learned = [n.text for n in recorder.of(ev.Notice) if "cannot stream" in n.text]
    assert len(learned) == 1, recorder.of(ev.Notice)


@each_server()
def test_usage_is_reported_or_estimated(
    model_server: ServerProcess, pygent_env, make_agent
) -> None:
    pygent_env(model_server, tools=())
    agent, recorder = make_agent()
    first = agent.turn("What is the capital of France?")
    second = agent.turn("What is the capital of France?")

    assert first.stop_reason == second.stop_reason == ev.StopReason.END_TURN, (first, second)
    assert "Paris" in first.text
    usage = recorder.of(ev.Usage)
    assert len(usage) == 2, usage
    for event in usage:
        assert event.prompt_tokens > 0 and event.completion_tokens > 0, event
    assert usage[1].total_prompt_tokens == usage[0].prompt_tokens + usage[1].prompt_tokens
    # llama-cpp-python ignores stream_options.include_usage: its streams carry no usage.
    estimated = model_server.kind == servers.LLAMA_CPP_PYTHON
    assert [event.estimated for event in usage] == [estimated, estimated], usage
    told = [n for n in recorder.of(ev.Notice) if "usage" in n.text]
    assert len(told) == (1 if estimated else 0), told  # said once, not every call
