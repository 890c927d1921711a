"""What a delegated task looks like from outside: its states, its snapshot, its errors."""

from __future__ import annotations

from dataclasses import dataclass

from pygent.errors import PygentError

QUEUED = "queued"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
TIMEOUT = "timeout"
CANCELLED = "cancelled"
#: States in which a task holds a slot (counts against ``max_tasks``).
ACTIVE = frozenset({QUEUED, RUNNING})


class TaskError(PygentError, RuntimeError):
    """A task request was refused or failed (also a ``RuntimeError``, as upstream raised)."""


class TaskLimitError(TaskError):
    """``max_tasks`` tasks are already running."""


class UnknownTaskError(TaskError):
    """No task has this id."""


@dataclass(frozen=True)
class TaskInfo:
    """A snapshot of one delegated task.

    ``status`` is one of queued, running, finished, failed, timeout, cancelled;
    ``started``/``ended`` are ``time.time()`` values (``ended`` is None while active);
    ``detail`` says why a task failed, timed out or was cancelled.
    """

    id: str
    persona: str
    prompt: str
    status: str
    steps: int = 0
    started: float = 0.0
    ended: float | None = None
    detail: str = ""

    @property
    def done(self) -> bool:
        return self.status not in ACTIVE

    def status_text(self) -> str:
        """The upstream status string: ``running``, ``finished``, ``failed: <reason>``..."""
        if self.status == QUEUED:
            # Upstream had no queued state; callers loop ``while status == "running"``.
            return RUNNING
        if self.status == FAILED and self.detail:
            return f"{FAILED}: {self.detail}"
        return self.status
