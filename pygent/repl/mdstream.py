"""The assistant's reply rendered as Markdown while it streams.

The whole text is re-rendered (at most ~12 times a second); the lines that have
scrolled out of a short live window are printed for good, so a long answer never
has to be redrawn in full, and the last few lines update in place until the reply
is complete. Only the final render is exact: a line printed early can differ from
what the finished Markdown would show (rarely: a setext heading, a table).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment

from pygent.repl.sanitize import strip_terminal_codes

#: Lines kept in the live window (the rest is printed as it becomes stable).
LIVE_WINDOW = 6
#: Minimum seconds between two re-renders while text streams in.
RENDER_INTERVAL = 0.08


class Lines:
    """Pre-rendered lines of segments as a renderable."""

    def __init__(self, lines: Iterable[list[Segment]]) -> None:
        self.lines = list(lines)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines:
            yield from line
            yield Segment.line()


def _markdown(text: str) -> Any:
    from rich.markdown import Markdown  # ~40 ms: paid at the first reply, not at start-up

    return Markdown(text, code_theme="monokai", hyperlinks=False)


class MarkdownStream:
    """One assistant message being streamed to ``console``.

    Args:
        console: where finished lines are printed.
        show_live: called with a renderable for the live window (or None to clear it).
    """

    def __init__(self, console: Console, show_live: Callable[[Any], None]) -> None:
        self.console = console
        self._show_live = show_live
        self.text = ""
        self._printed = 0
        self._last_render = 0.0
        self.finished = False
        self.dirty = False
        #: Some of the reply is printed for good (above the live window, or all of it).
        self.committed = False

    def add(self, delta: str) -> bool:
        """Append streamed text; re-render when enough time has passed.

        Returns True when text is left unrendered: call :meth:`flush` a little later,
        or a reply that pauses mid-stream would show only its beginning.
        """
        self.text += delta
        if not self.console.is_terminal:
            return False  # a pipe gets the finished text once
        self.dirty = True
        if time.monotonic() - self._last_render >= RENDER_INTERVAL:
            self.flush()
        return self.dirty

    def flush(self) -> None:
        """Render what arrived since the last render (no-op when finished or clean)."""
        if self.dirty and not self.finished:
            self.dirty = False
            self._last_render = time.monotonic()
            self._render(final=False)

    def finish(self) -> None:
        """Print whatever is not printed yet and clear the live window."""
        if self.finished:
            return
        self.finished = True
        if not self.text.strip():
            self._show_live(None)
            return
        if self.console.is_terminal:
            self._render(final=True)
        else:
            # A pipe gets the Markdown as written (what `pygent < task > out.md` wants),
            # and skips rich's Markdown renderer (~60 ms to import, at every exit).
            self.console.print(
                strip_terminal_codes(self.text), markup=False, highlight=False, soft_wrap=True
            )
            self.committed = True

    def discard(self) -> bool:
        """Withdraw the reply: clear the live window and print nothing more.

        Returns True when part of it is printed for good already and cannot be taken
        back (the caller then says that it was discarded).
        """
        if not self.finished:
            self.finished = True
            self.dirty = False
            self._show_live(None)
        return self.committed

    def _render(self, *, final: bool) -> None:
        options = self.console.options.update(height=None)
        lines = self.console.render_lines(
            _markdown(strip_terminal_codes(self.text)), options, pad=False
        )
        while lines and not any(seg.text.strip() for seg in lines[-1]):
            lines.pop()  # trailing blank lines would be printed, then "un-printed"
        stable = len(lines) if final else max(0, len(lines) - LIVE_WINDOW)
        # The live window changes first: printing above it then never redraws a stale tail.
        self._show_live(None if final else Lines(lines[max(stable, self._printed) :]))
        if stable > self._printed:
            self.console.print(Lines(lines[self._printed : stable]), end="")
            self._printed = stable
            self.committed = True
