"""The conversation history on disk: crash-safe append-only JSONL (see docs/sessions.md).

``disk`` holds the format's constants and durable file primitives, ``scan`` reads and
salvages files, ``repair`` keeps tool calls answered, ``file`` is :class:`HistoryFile`.
"""

from pygent.history.disk import FORMAT_VERSION, INTERRUPTED_RESULT
from pygent.history.file import HistoryFile
from pygent.history.repair import repair_tool_calls
from pygent.history.scan import LoadReport

__all__ = ["FORMAT_VERSION", "INTERRUPTED_RESULT", "HistoryFile", "LoadReport", "repair_tool_calls"]
