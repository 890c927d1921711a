"""Compaction: a model-written summary replaces the older part of the conversation in requests.

The agent's history keeps every message (and so does the history file: a compaction
is recorded there as a ``{"_meta": {"compaction": ...}}`` marker, not a deletion); what
changes is the request: the system prompt, then one message holding the summary, then
the recent messages verbatim from :attr:`Compacted.cut` on (:func:`request_view`).

This module holds the pure parts, so their cost can be measured apart from the model
call: where to cut (:func:`choose_cut`: never between a tool call and its result),
the transcript the summariser reads (tool outputs trimmed first), the summary request
and the checks on its answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pygent.context_window import CHARS_PER_TOKEN, message_tokens
from pygent.errors import PygentError

#: Compact automatically when a request would fill this share of the window.
DEFAULT_THRESHOLD = 0.8
#: The recent messages kept verbatim: up to this share of the window.
KEEP_RECENT = 0.25
#: A summary longer than this share of the window defeats the purpose: it fails.
MAX_SUMMARY = 0.2
#: What the summariser reads may fill this share of the window.
MAX_TRANSCRIPT = 0.6
#: Tool outputs and tool-call arguments are cut to this many characters in the transcript.
TOOL_CHARS = 600
ARGUMENT_CHARS = 300

SUMMARY_HEADER = "[Pygent: summary of the earlier part of this conversation, which was compacted]"

SUMMARIZER = """You summarise a coding assistant's conversation so the assistant can continue \
the work without it. Write a structured summary in Markdown with exactly these sections:
## Task
## Decisions
## Files touched
## State of the work
## Open questions
Be specific (paths, commands, names, numbers, errors). Do not invent anything. Do not call tools."""


@dataclass(frozen=True)
class Compacted:
    """The compaction in force: requests use ``summary`` instead of history[1:cut]."""

    cut: int
    summary: str
    #: history[cut - 1] when compacted: a history rewound or rebuilt since no longer
    #: holds this very object there, and the compaction no longer applies.
    last: Any = None

    def applies_to(self, history: Sequence[Any]) -> bool:
        return self.cut <= len(history) and (self.last is None or history[self.cut - 1] is self.last)

    @cached_property
    def message(self) -> dict[str, Any]:
        """The summary's message, the same object in every request: its bytes are encoded
        once (pygent/request_body.py), not at every step."""
        return summary_message(self.summary)


class CompactionError(PygentError):
    """Why a compaction could not be made; the conversation stays as it was."""


def summary_message(summary: str) -> dict[str, Any]:
    """The message that stands for the compacted part in every later request."""
    return {"role": "user", "content": f"{SUMMARY_HEADER}\n\n{summary}"}


def request_view(history: list[dict[str, Any]], compacted: Compacted | None) -> list[dict[str, Any]]:
    """The messages the next request carries: everything, or system + summary + recent.

    The summary message is built once per compaction (:attr:`Compacted.message`), so
    the request's bytes stay the same between steps and are encoded once.
    """
    if compacted is None or not compacted.applies_to(history):
        return history
    return [history[0], compacted.message, *history[compacted.cut:]]


def choose_cut(history: Sequence[Mapping[str, Any]], start: int, keep_tokens: int) -> int | None:
    """Where the verbatim part begins: recent messages worth ``keep_tokens`` at most.

    ``start`` is the first message that may be summarised (1: after the system prompt;
    a previous cut: the old summary is summarised again with what follows). The cut
    never lands on a tool result (it would lose its call), keeps at least the last
    message, and leaves at least two messages to summarise; None when there are not.
    """
    n = len(history)
    cut = n - 1
    used = message_tokens(history[cut])
    while cut - 1 > start and used + message_tokens(history[cut - 1]) <= keep_tokens:
        cut -= 1
        used += message_tokens(history[cut])
    while cut < n and history[cut].get("role") == "tool":
        cut += 1  # the results go with their call: into the summarised part
    if cut >= n:  # the tail is one call and its results: keep it all, cut before the call
        cut = n - 1
        while cut > start and history[cut].get("role") == "tool":
            cut -= 1
    if cut - start < 2:
        return None
    return cut


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multi-part content: keep the text, name the rest
        return " ".join(str(p.get("text", f"({p.get('type', 'part')})")) for p in content
                        if isinstance(p, Mapping))
    return "" if content is None else str(content)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters trimmed ...]\n{text[-half:]}"


def transcript(messages: Sequence[Mapping[str, Any]], *, previous: str = "",
               tool_chars: int = TOOL_CHARS) -> str:
    """The older messages as plain text for the summariser, tool outputs trimmed first."""
    lines: list[str] = []
    if previous:
        lines.append(f"EARLIER SUMMARY:\n{previous}")
    names: dict[str, str] = {}
    for message in messages:
        role = message.get("role")
        text = _text(message.get("content"))
        if role == "assistant":
            if text.strip():
                lines.append(f"ASSISTANT: {text}")
            for call in message.get("tool_calls") or ():
                fn = call.get("function") or {}
                names[str(call.get("id"))] = str(fn.get("name"))
                args = _cut(str(fn.get("arguments", "")), ARGUMENT_CHARS)
                lines.append(f"ASSISTANT CALLS {fn.get('name')}({args})")
        elif role == "tool":
            name = names.get(str(message.get("tool_call_id")), "tool")
            lines.append(f"RESULT OF {name}: {_cut(text, tool_chars)}")
        elif role == "user":
            lines.append(f"USER: {text}")
        elif role == "system":
            lines.append(f"SYSTEM: {text}")
    return "\n\n".join(lines)


def summary_request(older: Sequence[Mapping[str, Any]], window: int, *, previous: str = "",
                    focus: str = "") -> list[dict[str, Any]]:
    """The messages that ask the model for the summary, sized to fit ``window``."""
    limit = int(window * MAX_TRANSCRIPT) * CHARS_PER_TOKEN
    text = transcript(older, previous=previous)
    for tool_chars in (200, 80):  # tool outputs go first, then the middle of the text
        if len(text) <= limit:
            break
        text = transcript(older, previous=previous, tool_chars=tool_chars)
    text = _cut(text, max(1000, limit))
    words = int(window * MAX_SUMMARY * 0.5)  # well inside the limit check_summary enforces
    ask = ("Summarise the conversation above in the five sections. It will replace the "
           f"conversation, so keep everything needed to continue, in at most {words:,} words.")
    if focus.strip():
        ask += f"\nFocus especially on: {focus.strip()}"
    return [
        {"role": "system", "content": SUMMARIZER},
        {"role": "user", "content": f"CONVERSATION:\n\n{text}\n\n---\n{ask}"},
    ]


def summary_limit(window: int) -> int:
    """The longest summary in characters (MAX_SUMMARY of the window)."""
    return int(window * MAX_SUMMARY) * CHARS_PER_TOKEN


def too_long(window: int) -> CompactionError:
    return CompactionError(f"the summary is too long (more than {int(MAX_SUMMARY * 100)}% "
                           f"of the {window:,}-token window)")


def check_summary(text: str | None, window: int) -> str:
    """The summary, stripped; raises :class:`CompactionError` when it is unusable."""
    summary = (text or "").strip()
    if not summary:
        raise CompactionError("the model returned an empty summary")
    if len(summary) > summary_limit(window):
        raise too_long(window)
    return summary


def fingerprint(message: Mapping[str, Any]) -> str:
    """A short digest of a message: the marker names the last summarised one by it."""
    raw = json.dumps(message, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]


def marker(history: Sequence[Mapping[str, Any]], cut: int, summary: str,
           focus: str = "", *, automatic: bool = False,
           tokens: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """What the history file records: the cut as an index into its messages (no system),
    and the fingerprint of the message before it (a rewound or reset file no longer
    matches, and the marker is then ignored). ``at`` is how many messages there were
    when it was made, so a replay of the saved conversation shows the marker where it
    was shown live (the file's line order is lost when a rewind rewrites the file)."""
    return {"cut": cut - 1, "last": fingerprint(history[cut - 1]), "summary": summary,
            "focus": focus, "at": len(history) - 1, "automatic": automatic,
            "tokens_before": tokens[0], "tokens_after": tokens[1]}


def from_marker(value: Any, messages: Sequence[Mapping[str, Any]]) -> Compacted | None:
    """The compaction a history file's marker describes, if it still fits ``messages``
    (the file's messages, without the system prompt)."""
    if not isinstance(value, Mapping):
        return None
    cut, summary, last = value.get("cut"), value.get("summary"), value.get("last")
    if not isinstance(cut, int) or not isinstance(summary, str) or not 1 <= cut < len(messages):
        return None
    if last is not None and fingerprint(messages[cut - 1]) != last:
        return None  # the conversation was rewound or reset since
    return Compacted(cut + 1, summary, messages[cut - 1])


@dataclass(frozen=True)
class ReplayMarker:
    """A compaction as a replay of the saved conversation shows it: after ``position``
    of its messages (no system prompt), with what the live marker said."""

    position: int
    summary: str
    replaced: int
    focus: str = ""
    automatic: bool = False
    tokens_before: int = 0
    tokens_after: int = 0


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def replay_markers(values: Sequence[Any], messages: Sequence[Mapping[str, Any]]) -> list[ReplayMarker]:
    """The compactions a history file recorded (its markers, oldest first) that still fit
    ``messages`` (the file's messages, without the system prompt), placed in order.

    A marker whose summarised part was rewound away or replaced (reset, another
    conversation) is left out, as the agent leaves it out of its requests. One recorded
    before markers carried ``at`` is placed at its cut.
    """
    out: list[ReplayMarker] = []
    previous_cut = 0
    for value in values:
        if from_marker(value, messages) is None:
            continue
        cut = int(value["cut"])
        at = _count(value.get("at")) or cut
        position = max(min(at, len(messages)), out[-1].position if out else 0)
        out.append(ReplayMarker(
            position=position, summary=str(value["summary"]),
            replaced=max(cut - previous_cut, 0), focus=str(value.get("focus") or ""),
            automatic=value.get("automatic") is True,
            tokens_before=_count(value.get("tokens_before")),
            tokens_after=_count(value.get("tokens_after"))))
        previous_cut = cut
    return out


def tools_tokens(schemas: list[dict[str, Any]]) -> int:
    """Estimated tokens of the tool schemas a request carries."""
    return len(json.dumps(schemas)) // CHARS_PER_TOKEN if schemas else 0


__all__ = [
    "DEFAULT_THRESHOLD",
    "Compacted",
    "CompactionError",
    "ReplayMarker",
    "check_summary",
    "choose_cut",
    "from_marker",
    "marker",
    "replay_markers",
    "request_view",
    "summary_message",
    "summary_request",
    "transcript",
]
