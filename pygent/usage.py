"""A session's usage: tokens in/out/cached, model calls, cost and context fill, tasks rolled up.

:class:`SessionUsage` is ``agent.usage``. It reads like the dict it used to be
(``usage["prompt_tokens"]``, ``{**usage}``: the two token totals) and carries the rest as
attributes. Every figure is the sum of what the server reported per model call (or the
model layer's estimate, marked ``estimated``), counted once per call that returned a
reply: a retried or cancelled call reports nothing, so nothing is counted twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class UsageTotals:
    """Token and cost totals of one session or one delegated task."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    calls: int = 0
    cost: float = 0.0
    cost_known: bool = True  # False once a call's price was unknown: ``cost`` is partial
    estimated: bool = False

    @property
    def tokens(self) -> int:
        """Input plus output tokens (what a token budget counts)."""
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: UsageTotals) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.calls += other.calls
        self.cost += other.cost
        self.cost_known = self.cost_known and other.cost_known
        self.estimated = self.estimated or other.estimated

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "calls": self.calls,
            "cost": round(self.cost, 6) if self.cost_known else None,
            "estimated": self.estimated,
        }


@dataclass(eq=False)  # compared as the mapping it reads as (Mapping.__eq__)
class SessionUsage(Mapping[str, int]):
    """``agent.usage``: the session's own calls plus its delegated tasks' (``tasks``).

    The totals (``prompt_tokens``...) include the tasks; ``own`` is the session's own
    calls. ``context_tokens`` / ``context_window`` are the size of the last request
    and the model's window (``context_fill`` their ratio).
    """

    own: UsageTotals = field(default_factory=UsageTotals)
    tasks: dict[str, UsageTotals] = field(default_factory=dict)
    context_tokens: int = 0
    context_window: int = 0
    compactions: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    # --- the dict view kept from before: the two token totals ------------------------------

    def __getitem__(self, key: str) -> int:
        if key in ("prompt_tokens", "completion_tokens"):
            return int(getattr(self.total, key))
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("prompt_tokens", "completion_tokens"))

    def __len__(self) -> int:
        return 2

    # --- figures ----------------------------------------------------------------------------

    @property
    def total(self) -> UsageTotals:
        """Own calls and every task's, summed."""
        with self._lock:
            out = UsageTotals()
            out.add(self.own)
            for task in self.tasks.values():
                out.add(task)
            return out

    @property
    def prompt_tokens(self) -> int:
        return self.total.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.total.completion_tokens

    @property
    def cached_tokens(self) -> int:
        return self.total.cached_tokens

    @property
    def calls(self) -> int:
        return self.total.calls

    @property
    def cost(self) -> float | None:
        """USD spent, or None when some call's model had no price."""
        total = self.total
        return total.cost if total.cost_known else None

    @property
    def context_fill(self) -> float:
        """The last request's share of the window (0.0 when the window is not known yet)."""
        return self.context_tokens / self.context_window if self.context_window else 0.0

    def record(self, call: UsageTotals) -> None:
        """Count one model call of this session."""
        with self._lock:
            self.own.add(call)

    def record_task(self, task_id: str, call: UsageTotals) -> None:
        """Count one model call of a delegated task (rolled up into the totals)."""
        with self._lock:
            self.tasks.setdefault(task_id, UsageTotals()).add(call)

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (``/usage``, ``pygent -p --json``, the editors)."""
        total = self.total.to_dict()
        with self._lock:
            tasks = {k: v.to_dict() for k, v in self.tasks.items()}
        return {
            **total,
            "context_tokens": self.context_tokens,
            "context_window": self.context_window,
            "context_fill": round(self.context_fill, 4),
            "compactions": self.compactions,
            "tasks": tasks,
        }


__all__ = ["SessionUsage", "UsageTotals"]
