"""A chat request's JSON body as bytes, each message encoded once for the whole session.

The chat-completions API is stateless: every request carries the whole conversation
(or, after a compaction, the summary and the recent part of it). Encoding all of it
again at every step made a step's cost grow with the conversation; here a message
that was in one of the last two requests is not encoded again, its bytes are reused.

The bytes are exactly what ``json.dumps(body, ensure_ascii=False, separators=(",", ":"),
allow_nan=False)`` gives (what httpx sends for ``json=body``), so the request prefix
stays byte-for-byte the same from one step to the next, as prefix caches need.

A message is recognised by the identity of its top-level values (the dict itself may
be a fresh copy: the wire form of a message is rebuilt for every request). Messages
are treated as values: the agent changes one by replacing it or one of its top-level
fields (``message["content"] = shorter``), which is seen; a change made in place
deep inside a field (an element of ``tool_calls`` edited) would not be.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

#: A cached message: its top-level values (held, so their ids stay theirs) and its bytes.
_Entry = tuple[tuple[Any, ...], bytes]


def _encode(value: Any) -> bytes:
    return _ENCODER.encode(value).encode("utf-8")


class RequestEncoder:
    """Encodes request bodies, reusing the bytes of messages seen in recent requests.

    Safe to share between threads and sessions: a call builds its own table and
    publishes it with one assignment; two sessions that alternate still find their
    messages (two generations are kept).
    """

    def __init__(self) -> None:
        self._current: dict[tuple[Any, ...], _Entry] = {}
        self._previous: dict[tuple[Any, ...], _Entry] = {}

    def encode(self, body: Mapping[str, Any]) -> bytes:
        """``body`` as UTF-8 JSON bytes; its ``messages`` list from the cache where it can."""
        # One list of pieces and one join: the body is copied once, not once per level.
        pieces: list[bytes] = []
        for name, value in body.items():
            pieces.append(b"," if pieces else b"{")
            pieces.append(_encode(str(name)))
            pieces.append(b":")
            if name == "messages" and isinstance(value, list):
                pieces.append(b"[")
                parts = self._messages(value)
                if parts:
                    spaced: list[bytes] = [b","] * (2 * len(parts) - 1)
                    spaced[0::2] = parts
                    pieces.extend(spaced)
                pieces.append(b"]")
            else:
                pieces.append(_encode(value))
        pieces.append(b"}" if pieces else b"{}")
        return b"".join(pieces)

    def _messages(self, messages: list[Any]) -> list[bytes]:
        """Each message's bytes, from the last two requests' where the message is the same."""
        current, previous = self._current, self._previous
        # A message's key: its field names, then the ids of their values (an empty key
        # for what is not a plain dict: never cached). An unchanged message then costs a
        # key and a lookup (about a microsecond), not its encoding.
        keys: list[tuple[Any, ...]] = [
            (*m, *map(id, m.values())) if type(m) is dict else () for m in messages]
        found: list[_Entry | None] = list(map(current.get, keys))
        if None in found:
            for i, entry in enumerate(found):
                if entry is None:
                    key, message = keys[i], messages[i]
                    entry = previous.get(key) if key else None
                    if entry is None:
                        entry = (tuple(message.values()) if key else (), _encode(message))
                    found[i] = entry
        entries = cast("list[_Entry]", found)
        self._previous = current
        self._current = {key: entry for key, entry in zip(keys, entries, strict=True) if key}
        return [entry[1] for entry in entries]


__all__ = ["RequestEncoder"]
