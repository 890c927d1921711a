"""A bounded plain-text log of what the session showed, written by ``/save`` and on a crash."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from pygent.redact import redact_secrets

#: Entries longer than this are cut: the transcript is for reading, the history is exact.
MAX_ENTRY = 20_000


class Transcript:
    """The last ``max_entries`` things said or shown, with a time stamp each."""

    def __init__(self, max_entries: int = 2000) -> None:
        self._entries: deque[str] = deque(maxlen=max_entries)

    def add(self, who: str, text: str) -> None:
        if len(text) > MAX_ENTRY:
            text = text[:MAX_ENTRY] + f"\n[... {len(text) - MAX_ENTRY} characters cut ...]"
        stamp = time.strftime("%H:%M:%S")
        self._entries.append(f"[{stamp}] {who}:\n{text.rstrip()}\n")

    def write(self, path: Path) -> None:
        """Write the transcript (secrets redacted) to ``path``."""
        path.write_text(redact_secrets("\n".join(self._entries)), encoding="utf-8")

    def __len__(self) -> int:
        return len(self._entries)
