"""Session transcripts for a client that (re)attaches: each live session's updates so far, and a saved session's history as updates.

A page or an editor that attaches to a session it did not see start (``pygent ui``, a
session host, :mod:`pygent.lsp.host`) asks for its transcript
(``pygent/session/transcript``). A host keeps every live session's updates
(:class:`SessionLogs`), merged as they stream (consecutive reply chunks, consecutive
output of one call), as the VS Code host does (``editors/vscode/src/chat/sessions.ts``).
A conversation history (a saved session's file, or a live session's messages where no
log is kept) is turned into the same updates (:func:`history_updates`), so a session
from an earlier run reads like a live one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pygent.compaction import ReplayMarker, replay_markers

if TYPE_CHECKING:
    from pygent import events as ev

log = logging.getLogger(__name__)

#: Beyond this many events a log drops delegated-task chatter, then its oldest events.
MAX_EVENTS = 20_000
#: Output kept per tool call (the page keeps the same tail).
MAX_OUTPUT_CHARS = 200_000
#: Messages of a saved history turned into events (the newest ones).
MAX_HISTORY_MESSAGES = 4_000

Update = dict[str, Any]


class SessionLog:
    """The page events of one session, oldest first."""

    def __init__(self, events: Iterable[Update] = ()) -> None:
        self.events: list[Update] = list(events)
        # Updates arrive from the threads that emit events; snapshots are taken on the loop.
        self._lock = threading.Lock()

    def append(self, update: Update) -> None:
        """Record one update, merging it into the previous one when they are chunks of one stream.

        A ``message_discarded`` is not recorded: it removes the reply chunks it withdraws,
        so a replay shows only the answer that replaced them.
        """
        with self._lock:
            self._append(update)

    def _append(self, update: Update) -> None:
        last = self.events[-1] if self.events else None
        kind = update.get("type")
        if kind == "message_discarded":
            self._discard(update.get("taskId"))
            return
        if (
            last is not None
            and kind == "message_delta"
            and last.get("type") == "message_delta"
            and last.get("taskId") == update.get("taskId")
        ):
            # A new dict, not an in-place edit: snapshots handed out earlier stay as they were.
            self.events[-1] = {**last, "text": last["text"] + update.get("text", "")}
        elif (
            last is not None
            and kind == "tool_output"
            and last.get("type") == "tool_output"
            and last.get("callId") == update.get("callId")
            and last.get("stream") == update.get("stream")
            and last.get("taskId") == update.get("taskId")
        ):
            text = last["text"] + update.get("text", "")
            self.events[-1] = {**last, "text": text[-MAX_OUTPUT_CHARS:]}
        else:
            self.events.append(update)
        if len(self.events) > MAX_EVENTS:
            # Task chatter goes first: the conversation itself is what a replay must show.
            self.events = [
                e for e in self.events if e.get("taskId") is None or e.get("type") == "task_status"
            ]
            if len(self.events) > MAX_EVENTS:
                del self.events[: len(self.events) - MAX_EVENTS]

    def _discard(self, task_id: str | None) -> None:
        """Drop ``task_id``'s reply chunks of its current model call.

        They are the ``message_delta`` events since its previous event of another kind
        (the turn's start, a finished message, a tool call); notices streamed among them
        and other tasks' events stay.
        """
        kept: list[Update] = []
        i = len(self.events)
        while i > 0:
            event = self.events[i - 1]
            if event.get("taskId") == task_id and event.get("type") != "notice":
                if event.get("type") != "message_delta":
                    break
            else:
                kept.append(event)
            i -= 1
        del self.events[i:]
        self.events.extend(reversed(kept))

    def snapshot(self) -> list[Update]:
        with self._lock:
            return list(self.events)


class SessionLogs:
    """The :class:`SessionLog` of every live session of one service, by session id.

    ``record`` is an event listener (any thread; see ``SessionService.subscribe_all``);
    a session's log is dropped when the session is closed (:meth:`drop`), its saved
    history then stands in for it.
    """

    def __init__(self) -> None:
        self.logs: dict[str, SessionLog] = {}
        #: The updates of the turns the last conversation rewind took off, for a redo.
        self._undone: dict[str, list[Update]] = {}

    def record(self, event: ev.Event) -> None:
        from pygent.lsp import convert
        from pygent.lsp import protocol as p

        update = convert.event_update(event)
        if update is not None and event.session_id:
            data = p.unstructure(update)
            if data.get("oldText") is not None:
                # The replaced text is for the clients following live (a whole-file diff);
                # the log keeps the call without it, as a saved history does: a long
                # session of edits would otherwise hold each file once per edit.
                data = {**data, "oldText": None}
            self.log(event.session_id).append(data)

    def log(self, session_id: str) -> SessionLog:
        return self.logs.setdefault(session_id, SessionLog())

    def snapshot(self, session_id: str) -> list[Update]:
        found = self.logs.get(session_id)
        return found.snapshot() if found is not None else []

    def drop(self, session_id: str) -> None:
        self.logs.pop(session_id, None)
        self._undone.pop(session_id, None)

    def follow_agent(self, session_id: str, agent: Any) -> None:
        """:meth:`follow` the agent's conversation as it is now (after a resume, a fork, a
        rewind or a redo), with its compaction markers, for the clients that attach later."""
        store = agent.history_store
        self.follow(session_id, list(agent.history),
                    store.meta_log.get("compaction", []) if store is not None else [])

    def follow(
        self, session_id: str, messages: Iterable[dict[str, Any]], compactions: Sequence[Any] = ()
    ) -> None:
        """Make the log replay the conversation as it is after a rewind or a redo.

        ``messages`` is the session's history now. A rewind cuts the log before the first
        turn it took off (the cut updates are kept for a redo, which puts them back);
        when the log's turns are not the conversation's (a session resumed into this
        host, prompts with attachments), the log is rebuilt from the history instead:
        the replay then shows what a saved session's would.
        """
        history = [m for m in messages if isinstance(m, dict) and m.get("role") != "system"]
        prompts = [_text(m.get("content")) for m in history if m.get("role") == "user"]
        log = self.log(session_id)
        with log._lock:
            undone = self._undone.pop(session_id, [])
            for candidate in (log.events, log.events + undone):
                starts = [
                    i for i, e in enumerate(candidate)
                    if e.get("type") == "turn_started" and e.get("taskId") is None
                ]
                if len(starts) < len(prompts):
                    continue
                if [candidate[i].get("prompt") for i in starts[: len(prompts)]] != prompts:
                    continue
                cut = starts[len(prompts)] if len(starts) > len(prompts) else len(candidate)
                log.events = candidate[:cut]
                if cut < len(candidate):
                    self._undone[session_id] = candidate[cut:]
                return
            log.events = history_updates(history, compactions)


# --- saved histories ---------------------------------------------------------------------------


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a multi-part content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def _image_urls(content: Any) -> list[str]:
    """The URLs of a multi-part message's ``image_url`` parts (a prompt's images)."""
    if not isinstance(content, list):
        return []
    urls = [(p.get("image_url") or {}).get("url") for p in content if isinstance(p, dict)]
    return [u for u in urls if isinstance(u, str)]


def _tool_status(output: str) -> str:
    # The history keeps only the text the model saw; the gate's and the agent's own
    # wordings say whether the call was denied or cancelled rather than run.
    head = output.lstrip()[:40].lower()
    if head.startswith(("denied", "the user denied")):
        return "denied"
    if head.startswith("cancelled"):
        return "cancelled"
    return "completed"


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return {"_raw": raw[:800]}
        return value if isinstance(value, dict) else {"_raw": raw[:800]}
    return {}


def _compaction(marker: ReplayMarker) -> Update:
    return {
        "type": "compaction",
        "taskId": None,
        "ok": True,
        "automatic": marker.automatic,
        "summary": marker.summary,
        "replaced": marker.replaced,
        "tokensBefore": marker.tokens_before,
        "tokensAfter": marker.tokens_after,
        "focus": marker.focus,
        "error": "",
    }


def history_updates(
    messages: Iterable[dict[str, Any]], compactions: Sequence[Any] = ()
) -> list[Update]:
    """Session updates that replay a saved conversation (chat-completions messages).

    Each user message opens a turn and the next one (or the end) closes it, so the page
    shows the prompts, replies and tool calls of every turn, none of them running.
    ``compactions`` are the history file's compaction markers
    (``HistoryFile.meta_log["compaction"]``): each that still applies is shown where
    it was made, with its summary, as it was live.
    """
    everything = [m for m in messages if isinstance(m, dict) and m.get("role") != "system"]
    chosen = everything[-MAX_HISTORY_MESSAGES:]
    skipped = len(everything) - len(chosen)
    markers = [m for m in replay_markers(compactions, everything) if m.position >= skipped]
    out: list[Update] = []
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    open_turn = False

    def end_turn() -> None:
        out.append(
            {
                "type": "turn_ended",
                "taskId": None,
                "stopReason": "end_turn",
                "text": "",
                "error": "",
            }
        )

    for index, message in enumerate(chosen, skipped):
        role = message.get("role")
        if markers and markers[0].position <= index:
            # A compaction made between turns (/compact) follows the turn's end, as live.
            if role == "user" and open_turn:
                end_turn()
                open_turn = False
            while markers and markers[0].position <= index:
                out.append(_compaction(markers.pop(0)))
        if role == "user":
            if open_turn:
                end_turn()
            content = message.get("content")
            # A prompt's images replay too (an ACP session/load shows them).
            out.append({"type": "turn_started", "taskId": None, "prompt": _text(content),
                        "images": _image_urls(content)})
            open_turn = True
        elif role == "assistant":
            text = _text(message.get("content"))
            if text.strip():
                out.append({"type": "message_done", "taskId": None, "text": text})
            for call in message.get("tool_calls") or []:
                if not isinstance(call, dict):
                    continue
                function = call.get("function") or {}
                call_id = str(call.get("id") or "")
                name = str(function.get("name") or "")
                arguments = _arguments(function.get("arguments"))
                calls[call_id] = (name, arguments)
                out.append(
                    {
                        "type": "tool_call_proposed",
                        "taskId": None,
                        "callId": call_id,
                        "tool": name,
                        "arguments": arguments,
                        "preview": "",
                        "locations": [],
                        "oldText": None,  # the file as it was then is not kept
                    }
                )
        elif role == "tool":
            call_id = str(message.get("tool_call_id") or "")
            name, arguments = calls.get(call_id, (str(message.get("name") or ""), {}))
            output = _text(message.get("content"))
            status = _tool_status(output)
            # A command's result starts with "$ <command>" for the model; the card shows
            # the command already, as it does live.
            echo = f"$ {arguments.get('cmd')}\n"
            if name == "bash" and output.startswith(echo):
                output = output[len(echo) :]
            out.append(
                {
                    "type": "tool_call_finished",
                    "taskId": None,
                    "callId": call_id,
                    "tool": name,
                    "ok": status == "completed",
                    "output": output,
                    "status": status,
                }
            )
    if open_turn:
        end_turn()
    out.extend(_compaction(m) for m in markers)  # made after the last message
    return out
