"""Budgets the core enforces before every model call: tokens, cost, model calls, wall time.

A :class:`Budget` is a set of limits (None: no limit). The agent asks
:func:`exceeded` before each model call; a limit that is spent, or that the next
request would overrun, ends the turn with the stop reason ``budget`` and a message
naming the limit. A delegated task's budget is :func:`carve` d out of what its parent
has left, so a task can never spend more than the session that started it, and what
the task spends is rolled up into the parent's usage (:mod:`pygent.usage`).

Costs come from a price table per model (USD per million tokens, ``[prices]`` in
``pygent.toml`` or ``PYGENT_PRICES``); a model with no price has no cost, and a cost
budget for it is not enforced (Pygent says so once; the token budget still is).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pygent.usage import UsageTotals

#: A delegated task's budget when none is configured: generous, but a runaway
#: sub-agent cannot burn through a whole account (docs/long-sessions.md).
DEFAULT_TASK_TOKENS = 2_000_000
DEFAULT_TASK_CALLS = 200


@dataclass(frozen=True)
class Budget:
    """Limits for one session or task; None means unlimited.

    Attributes:
        max_tokens: input plus output tokens over all model calls.
        max_cost: USD, from the price table (ignored for a model without a price).
        max_calls: model calls.
        max_time: seconds of wall time since the session's (or task's) first turn.
    """

    max_tokens: int | None = None
    max_cost: float | None = None
    max_calls: int | None = None
    max_time: float | None = None

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.max_tokens, self.max_cost, self.max_calls, self.max_time))

    def to_dict(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "max_cost": self.max_cost,
                "max_calls": self.max_calls, "max_time": self.max_time}

    @classmethod
    def from_settings(cls, settings: Any) -> Budget:
        """The session budget of ``PYGENT_BUDGET_*`` / ``[budget]``."""
        return cls(settings.budget_tokens, settings.budget_cost, settings.budget_calls,
                   settings.budget_time)

    @classmethod
    def for_task(cls, settings: Any) -> Budget:
        """A delegated task's own budget (``[task_budget]``, else the generous default)."""
        return cls(settings.task_budget_tokens or DEFAULT_TASK_TOKENS, settings.task_budget_cost,
                   settings.task_budget_calls or DEFAULT_TASK_CALLS, None)


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float | None = None

    def cost(self, prompt: int, completion: int, cached: int = 0) -> float:
        cached = min(cached, prompt)
        rate = self.input if self.cached_input is None else self.cached_input
        return ((prompt - cached) * self.input + cached * rate + completion * self.output) / 1e6


def price_for(prices: Mapping[str, Mapping[str, float]], model: str) -> Price | None:
    """The configured price of ``model`` (exact name, then ``*``), or None."""
    entry = prices.get(model) or prices.get("*")
    if not entry:
        return None
    return Price(float(entry["input"]), float(entry["output"]),
                 float(entry["cached_input"]) if "cached_input" in entry else None)


def call_usage(prompt: int, completion: int, cached: int, estimated: bool,
               price: Price | None) -> UsageTotals:
    """One model call's usage with its cost (``cost_known`` False without a price)."""
    return UsageTotals(prompt, completion, cached, 1,
                       price.cost(prompt, completion, cached) if price else 0.0,
                       price is not None, estimated)


def _less(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def carve(parent: Budget, spent: UsageTotals, elapsed: float, wanted: Budget) -> Budget:
    """A task's budget: ``wanted``, cut to what ``parent`` has left after ``spent``.

    Never more than the parent's remainder on any limit, so a task cannot exceed the
    budget of the session that started it.
    """
    left = Budget(
        None if parent.max_tokens is None else max(0, parent.max_tokens - spent.tokens),
        None if parent.max_cost is None else max(0.0, parent.max_cost - spent.cost),
        None if parent.max_calls is None else max(0, parent.max_calls - spent.calls),
        None if parent.max_time is None else max(0.0, parent.max_time - elapsed),
    )
    out = Budget(
        _less(wanted.max_tokens, left.max_tokens),  # type: ignore[arg-type]
        _less(wanted.max_cost, left.max_cost),
        _less(wanted.max_calls, left.max_calls),  # type: ignore[arg-type]
        _less(wanted.max_time, left.max_time),
    )
    return replace(out, max_tokens=None if out.max_tokens is None else int(out.max_tokens),
                   max_calls=None if out.max_calls is None else int(out.max_calls))


@dataclass(frozen=True)
class BudgetHit:
    """Which limit stopped the turn (``tokens``, ``cost``, ``calls``, ``time``) and why."""

    limit: str
    message: str


def exceeded(budget: Budget, spent: UsageTotals, elapsed: float, next_prompt: int,
             price: Price | None, *, whose: str = "session") -> BudgetHit | None:
    """The limit the next model call would break, or None.

    Args:
        budget: the limits.
        spent: what was spent so far (own calls and rolled-up tasks).
        elapsed: seconds since the budget's clock started.
        next_prompt: the estimated prompt tokens of the next request.
        price: the model's price, or None (the cost limit is then not enforced).
        whose: ``session`` or ``task``, for the message.
    """
    if budget.max_calls is not None and spent.calls >= budget.max_calls:
        calls = "call" if budget.max_calls == 1 else "calls"
        return BudgetHit("calls", f"budget: the {whose}'s limit of {budget.max_calls:,} model "
                                  f"{calls} is reached ({spent.calls:,} made)")
    if budget.max_tokens is not None and spent.tokens + next_prompt > budget.max_tokens:
        return BudgetHit("tokens", f"budget: the {whose}'s token budget of "
                                   f"{budget.max_tokens:,} is spent ({spent.tokens:,} used; the "
                                   f"next request needs ~{next_prompt:,} more)")
    if budget.max_cost is not None and price is not None:
        upcoming = price.cost(next_prompt, 0)
        if spent.cost + upcoming > budget.max_cost:
            return BudgetHit("cost", f"budget: the {whose}'s cost budget of "
                                     f"${budget.max_cost:.4g} is spent (${spent.cost:.4f} used)")
    if budget.max_time is not None and elapsed >= budget.max_time:
        return BudgetHit("time", f"budget: the {whose}'s wall-time budget of "
                                 f"{budget.max_time:g}s is spent ({elapsed:.0f}s)")
    return None


class BudgetClock:
    """When the budget's wall time started: at the first turn, not at construction."""

    def __init__(self) -> None:
        self.started: float | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started


__all__ = [
    "DEFAULT_TASK_CALLS",
    "DEFAULT_TASK_TOKENS",
    "Budget",
    "BudgetClock",
    "BudgetHit",
    "Price",
    "call_usage",
    "carve",
    "exceeded",
    "price_for",
]
