"""Upstream module path for :class:`~pygent.tasks.TaskManager` (``from pygent.task_manager import TaskManager``)."""

from __future__ import annotations

from pygent.tasks import TaskError, TaskInfo, TaskLimitError, TaskManager, UnknownTaskError

__all__ = ["TaskError", "TaskInfo", "TaskLimitError", "TaskManager", "UnknownTaskError"]
