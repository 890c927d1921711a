"""Folding long command output to its head and tail, fed chunk by chunk as it streams.

Memory stays bounded however much a command prints (``yes`` for a minute): the
first ``head`` lines and the last ``tail`` lines are kept, the rest is counted.
"""

from __future__ import annotations

import threading
from collections import deque

from pygent.repl.sanitize import strip_terminal_codes

#: A single line longer than this is cut (a minified file printed by ``cat``).
MAX_LINE = 2000


class OutputFold:
    """Streamed text kept as head lines + tail lines + a count of what lies between."""

    def __init__(self, head: int = 12, tail: int = 12) -> None:
        self._head_max = head
        self._head: list[str] = []
        self._tail: deque[str] = deque(maxlen=tail)
        self._partial: dict[str, str] = {}  # per stream: stderr must not split a stdout line
        self._hidden = 0
        self._lock = threading.Lock()  # fed on the loop, read by the Live refresh thread
        self.total_lines = 0
        self.total_chars = 0

    def feed(self, text: str, stream: str = "stdout") -> None:
        """Add a chunk of output (any split, escape codes allowed) from ``stream``."""
        if not text:
            return
        with self._lock:
            self.total_chars += len(text)
            lines = (self._partial.pop(stream, "") + text).split("\n")
            rest = lines.pop()
            if len(rest) > MAX_LINE * 4:  # a never-ending line: flush it in pieces
                lines.append(rest)
            elif rest:
                self._partial[stream] = rest
            for line in lines:
                self._add(line)

    def _add(self, line: str) -> None:
        line = strip_terminal_codes(line)
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE] + f" … [{len(line) - MAX_LINE} more characters]"
        self.total_lines += 1
        if len(self._head) < self._head_max:
            self._head.append(line)
            return
        if len(self._tail) == self._tail.maxlen:
            self._hidden += 1
        self._tail.append(line)

    def lines(self, *, tail_only: int | None = None) -> tuple[list[str], int, list[str]]:
        """(head lines, number of hidden lines, tail lines) including a pending partial line.

        ``tail_only`` gives just the last N lines (the live view while a command runs).
        """
        with self._lock:
            head, tail, hidden = list(self._head), list(self._tail), self._hidden
            for partial in self._partial.values():
                tail.append(strip_terminal_codes(partial)[:MAX_LINE])
        if tail_only is not None:
            every = head + tail
            shown = every[-tail_only:] if tail_only else []
            return [], hidden + len(every) - len(shown), shown
        return head, hidden, tail

    def text(self) -> str:
        """The folded output as one string with a ``… N lines hidden …`` marker."""
        head, hidden, tail = self.lines()
        middle = [f"… {hidden} more lines …"] if hidden else []
        return "\n".join(head + middle + tail)

    @property
    def empty(self) -> bool:
        with self._lock:
            return self.total_chars == 0
