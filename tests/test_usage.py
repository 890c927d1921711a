"""Usage figures equal the server's reported usage, summed once per answered call.

Retried attempts (a 500 then a success) and cancelled calls report nothing and are
not counted; cached prompt tokens, cost and the context fill come with every figure.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pygent import Agent
from pygent.events import Event, StopReason
from pygent.runtime import Runtime
from pygent.settings import load_settings
from pygent.tools import ToolRegistry, builtin_tools
from tests.openai_server import ToolCallsReply, _call


def _agent(openai_server, tmp_path: Path, **env: str) -> Agent:
    base = {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "sk-test-key",
            "PYGENT_MODEL": "test-model", "PYGENT_USE_DOCKER": "0",
            "PYGENT_CONTEXT_WINDOW": "20000", **env}
    settings = load_settings(environ=base, cwd=tmp_path)
    rt = Runtime(settings=settings, workspace=tmp_path / "ws")
    agent = Agent(runtime=rt, settings=settings, tools=ToolRegistry(builtin_tools()),
                  checkpoints=False)
    agent.model.retry_base_delay = 0.01  # the retry is what is tested, not its back-off
    seen: list[Event] = []
    agent.events.subscribe(seen.append)
    agent.seen = seen  # type: ignore[attr-defined]
    return agent


def _usage(prompt: int, completion: int, cached: int = 0) -> dict:
    out: dict = {"prompt_tokens": prompt, "completion_tokens": completion}
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def test_usage_is_the_sum_of_reported_usage_without_double_counting(
    openai_server, tmp_path: Path
) -> None:
    agent = _agent(openai_server, tmp_path,
                   PYGENT_PRICES='{"test-model": {"input": 2.0, "output": 8.0, "cached_input": 0.5}}')
    try:
        openai_server.add(ToolCallsReply((_call("bash", {"cmd": "echo a"}, "a"),),
                                         usage=_usage(1200, 30, cached=1000)))
        openai_server.add_error(500)  # retried: the failed attempt reports no usage
        openai_server.add_text("done", usage=_usage(1300, 12, cached=1100))
        result = agent.turn("go")
        assert result.stop_reason == StopReason.END_TURN
        assert len(openai_server.chat_requests) == 3
        u = agent.usage
        assert (u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.calls) == (2500, 42, 2100, 2)
        assert agent.usage == {"prompt_tokens": 2500, "completion_tokens": 42}
        expected = ((200 * 2.0 + 1000 * 0.5 + 30 * 8.0) + (200 * 2.0 + 1100 * 0.5 + 12 * 8.0)) / 1e6
        assert u.cost is not None and abs(u.cost - expected) < 1e-9
        events = [e for e in agent.seen if e.type == "usage"]
        assert [e.prompt_tokens for e in events] == [1200, 1300]
        last = events[-1]
        assert (last.total_prompt_tokens, last.total_cached_tokens, last.total_calls) == (2500, 2100, 2)
        assert last.context_window == 20000 and last.context_tokens == 1300
        assert last.total_cost is not None and abs(last.total_cost - expected) < 1e-6
        assert abs(u.context_fill - 1300 / 20000) < 1e-9
        assert u.to_dict()["context_fill"] == round(1300 / 20000, 4)
    finally:
        agent.close()
        agent.runtime.cleanup()


def test_a_cancelled_call_is_not_counted(openai_server, tmp_path: Path) -> None:
    agent = _agent(openai_server, tmp_path)
    try:
        openai_server.add_text("first", usage=_usage(100, 5))
        agent.turn("one")
        openai_server.add_stall(5.0, partial_text="partial")
        timer = threading.Timer(0.5, agent.cancel)
        timer.start()
        started = time.monotonic()
        cancelled = agent.turn("two")
        timer.join()
        assert cancelled.stop_reason == StopReason.CANCELLED and time.monotonic() - started < 4
        assert (agent.usage.prompt_tokens, agent.usage.completion_tokens, agent.usage.calls) == (100, 5, 1)
        openai_server.add_text("third", usage=_usage(150, 7))
        agent.turn("three")
        assert (agent.usage.prompt_tokens, agent.usage.completion_tokens, agent.usage.calls) == (250, 12, 2)
    finally:
        agent.close()
        agent.runtime.cleanup()


def test_the_summary_call_counts_as_a_call(openai_server, tmp_path: Path) -> None:
    agent = _agent(openai_server, tmp_path)
    try:
        for i in range(4):
            openai_server.add(ToolCallsReply((_call("bash", {"cmd": f"echo {i}"}, f"c{i}"),),
                                             usage=_usage(100, 5)))
        openai_server.add_text("ok", usage=_usage(100, 5))
        agent.turn("work")
        openai_server.add_text("## Task\nsummary", usage=_usage(400, 20))
        assert agent.compact().ok
        assert (agent.usage.calls, agent.usage.prompt_tokens, agent.usage.compactions) == (6, 900, 1)
    finally:
        agent.close()
        agent.runtime.cleanup()
