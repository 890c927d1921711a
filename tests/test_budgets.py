"""Budgets enforced before each model call: each limit ends a turn with ``budget`` mid-turn.

Through the API here (the REPL and the editor protocol are in tests/repl and tests/lsp);
the server reports the usage, so the figures the limits are checked against are real.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pygent import Agent
from pygent.budget import Budget, UsageTotals, carve, exceeded
from pygent.events import Event, StopReason
from pygent.runtime import Runtime
from pygent.settings import load_settings
from pygent.tasks import TaskManager
from pygent.tools import ToolRegistry, builtin_tools

USAGE = {"prompt_tokens": 1000, "completion_tokens": 100}


def _agent(openai_server, tmp_path: Path, **env: str) -> Agent:
    base = {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "sk-test-key",
            "PYGENT_MODEL": "test-model", "PYGENT_USE_DOCKER": "0",
            "PYGENT_CONTEXT_WINDOW": "100000", **env}
    settings = load_settings(environ=base, cwd=tmp_path)
    rt = Runtime(settings=settings, workspace=tmp_path / "ws")
    agent = Agent(runtime=rt, settings=settings, tools=ToolRegistry(builtin_tools()),
                  checkpoints=False)
    seen: list[Event] = []
    agent.events.subscribe(seen.append)
    agent.seen = seen  # type: ignore[attr-defined]
    return agent


def _steps(openai_server, n: int, cmd: str = "echo hi") -> None:
    from tests.openai_server import ToolCallsReply, _call

    for i in range(n):
        openai_server.add(ToolCallsReply((_call("bash", {"cmd": cmd}, f"c{i}"),), usage=USAGE))
    openai_server.add_text("never reached", usage=USAGE)


@pytest.mark.parametrize(
    ("env", "limit", "words"),
    [
        ({"PYGENT_BUDGET_TOKENS": "3000"}, "tokens", "token budget of 3,000"),
        ({"PYGENT_BUDGET_CALLS": "2"}, "calls", "limit of 2 model calls"),
        ({"PYGENT_BUDGET_COST": "0.002",
          "PYGENT_PRICES": '{"test-model": {"input": 1.0, "output": 2.0}}'}, "cost",
         "cost budget of $0.002"),
        ({"PYGENT_BUDGET_TIME": "0.6"}, "time", "wall-time budget of 0.6s"),
    ],
)
def test_each_limit_ends_the_turn_mid_turn_with_budget(
    openai_server, tmp_path: Path, env: dict[str, str], limit: str, words: str
) -> None:
    _steps(openai_server, 6, cmd="sleep 0.4" if limit == "time" else "echo hi")
    agent = _agent(openai_server, tmp_path, **env)
    try:
        result = agent.turn("work until stopped", max_steps=20)
        assert result.stop_reason == StopReason.BUDGET
        assert result.steps >= 1  # mid-turn: calls were made and tools ran before the limit
        assert words in result.error and result.error.startswith("budget:")
        ended = [e for e in agent.seen if e.type == "turn_ended"][-1]
        assert ended.stop_reason == StopReason.BUDGET and ended.error == result.error
        assert len(openai_server.chat_requests) == result.steps  # no call past the limit
        # The conversation is valid for the next turn: every call has its result.
        calls = sum(len(m.get("tool_calls") or ()) for m in agent.history)
        assert calls == sum(1 for m in agent.history if m.get("role") == "tool")
    finally:
        agent.close()
        agent.runtime.cleanup()


def test_a_cost_budget_without_a_price_says_so_once_and_tokens_still_count(
    openai_server, tmp_path: Path
) -> None:
    _steps(openai_server, 6)
    agent = _agent(openai_server, tmp_path, PYGENT_BUDGET_COST="0.01", PYGENT_BUDGET_TOKENS="2500")
    try:
        result = agent.turn("go", max_steps=20)
        assert result.stop_reason == StopReason.BUDGET and "token budget" in result.error
        told = [e for e in agent.seen if e.type == "notice" and "no price" in e.text]
        assert len(told) == 1 and agent.usage.cost is None
    finally:
        agent.close()
        agent.runtime.cleanup()


def test_a_task_budget_cannot_exceed_its_parent() -> None:
    parent = Budget(max_tokens=10_000, max_cost=1.0, max_calls=50, max_time=600)
    spent = UsageTotals(prompt_tokens=6000, completion_tokens=1000, calls=20, cost=0.75)
    wanted = Budget(max_tokens=2_000_000, max_cost=5.0, max_calls=200, max_time=None)
    task = carve(parent, spent, 100.0, wanted)
    assert task == Budget(max_tokens=3000, max_cost=0.25, max_calls=30, max_time=500.0)
    smaller = carve(parent, spent, 0.0, Budget(max_tokens=100, max_calls=3))
    assert (smaller.max_tokens, smaller.max_calls) == (100, 3)
    assert carve(Budget(), spent, 0.0, wanted) == wanted  # an unlimited parent leaves the task's own
    spent_all = UsageTotals(prompt_tokens=10_000)
    assert carve(parent, spent_all, 0.0, wanted).max_tokens == 0
    hit = exceeded(Budget(max_tokens=0), UsageTotals(), 0.0, 1, None, whose="task")
    assert hit is not None and hit.limit == "tokens" and "task's token budget" in hit.message


def test_a_delegated_task_gets_a_carved_budget_and_its_usage_rolls_up(
    openai_server, tmp_path: Path
) -> None:
    parent = _agent(openai_server, tmp_path, PYGENT_BUDGET_TOKENS="5000")
    manager = TaskManager(settings=parent.settings)
    manager.attach(parent)
    try:
        openai_server.add_text("parent warm-up", usage=USAGE)
        parent.turn("hello")
        from tests.openai_server import ToolCallsReply, _call

        # The task's own budget asks for far more than the parent has left.
        for i in range(5):
            openai_server.add(ToolCallsReply((_call("bash", {"cmd": "echo t"}, f"t{i}"),),
                                             usage=USAGE))
        task_id = manager.start_task("sub work", parent.runtime,
                                     budget=Budget(max_tokens=1_000_000))
        info = manager.wait(task_id, timeout=30)
        sub = manager.get_agent(task_id)
        assert sub is not None and sub.budget.max_tokens == 5000 - 1100
        assert info.status == "failed" and "task's token budget of 3,900" in info.detail
        # What the task spent is rolled up into the parent's usage (and its budget).
        assert parent.usage.tasks[task_id].calls == sub.usage.calls == 3
        assert parent.usage.calls == 4
        assert parent.usage.prompt_tokens == 4 * 1000
        openai_server.add_text("never", usage=USAGE)
        after = parent.turn("more")
        assert after.stop_reason == StopReason.BUDGET
    finally:
        manager.shutdown(timeout=10)
        parent.close()
        parent.runtime.cleanup()


def test_budgets_prices_and_windows_from_pygent_toml(tmp_path: Path) -> None:
    from pygent.errors import ConfigError
    from pygent.settings import load_settings

    (tmp_path / "pygent.toml").write_text(
        'context_window = 32768\n'
        'compact_threshold = 0.7\n'
        '[budget]\ntokens = 500000\ncost = 2.5\ncalls = 100\ntime = 3600\n'
        '[task_budget]\ntokens = 50000\n'
        '[prices."gpt-4.1-mini"]\ninput = 0.4\noutput = 1.6\ncached_input = 0.1\n'
    )
    s = load_settings(environ={}, cwd=tmp_path)
    assert s.context_window == {"*": 32768} and s.compact_threshold == 0.7
    assert Budget.from_settings(s) == Budget(500000, 2.5, 100, 3600.0)
    assert Budget.for_task(s) == Budget(50000, None, 200, None)
    assert s.prices == {"gpt-4.1-mini": {"input": 0.4, "output": 1.6, "cached_input": 0.1}}
    per_model = load_settings(environ={"PYGENT_CONTEXT_WINDOW": "llama3:8b=8192,gpt-4o=128000"},
                              cwd=tmp_path)
    assert per_model.context_window == {"llama3:8b": 8192, "gpt-4o": 128000}
    for env, words in (
        ({"PYGENT_BUDGET_TOKENS": "lots"}, "PYGENT_BUDGET_TOKENS: expected a whole number"),
        ({"PYGENT_BUDGET_COST": "-1"}, "PYGENT_BUDGET_COST: expected an amount > 0"),
        ({"PYGENT_COMPACT_THRESHOLD": "80"}, "expected a fraction from 0.1 to 1"),
        ({"PYGENT_CONTEXT_WINDOW": "m=12"}, "too small"),
        ({"PYGENT_PRICES": '{"m": {"input": 1}}'}, "needs input and output"),
    ):
        with pytest.raises(ConfigError, match=words):
            load_settings(environ=env, cwd=tmp_path / "nowhere")


def test_a_spent_budget_also_refuses_the_summary_call(openai_server, tmp_path: Path) -> None:
    _steps(openai_server, 4)
    agent = _agent(openai_server, tmp_path, PYGENT_BUDGET_CALLS="3")
    try:
        assert agent.turn("go", max_steps=20).stop_reason == StopReason.BUDGET
        asked = len(openai_server.chat_requests)
        done = agent.compact()
        assert not done.ok and done.error.startswith("budget: the session's limit of 3")
        assert len(openai_server.chat_requests) == asked  # no call was made
    finally:
        agent.close()
        agent.runtime.cleanup()
