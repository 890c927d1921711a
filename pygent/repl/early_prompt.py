"""The REPL's prompt before prompt_toolkit is loaded: typing starts at once.

prompt_toolkit takes about a tenth of a second to import and set up, and the session's
core (the agent, the model's HTTP stack, the history file) as long again. A person who
types the first line as soon as the prompt shows should wait for neither: the prompt
is drawn in plain ANSI right after the banner, and a line typed then is read through
the terminal's own line editing (cooked mode: the kernel echoes, and Backspace,
Ctrl-U and Ctrl-W work). Its request goes out as soon as the session's core is ready;
prompt_toolkit is loaded after the core, not before it.

The cooked prompt serves only until the first turn: keys typed while a turn runs
arrive raw (an arrow, a Ctrl-D) and are prompt_toolkit's to read, so a prompt after a
turn waits for it. Once prompt_toolkit is loaded it takes over the prompt: echo is
switched off, the cooked prompt is erased and prompt_toolkit draws its own, with
whatever was typed so far. The characters still in the terminal's line buffer are not lost: switching the
terminal to raw mode makes them readable, so prompt_toolkit reads them as keystrokes
(an arrow key typed early recalls history then). Lines read the early way are added
to the input history.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pygent.repl.lines import PROMPT, TerminalReader, _continues, continuation, quiet_terminal

#: The prompt's look in prompt_toolkit's style ("ansigreen bold"), in plain ANSI.
_STYLE = "\x1b[1;32m"
_RESET = "\x1b[0m"
#: Bracketed paste mode on and off, and the markers the terminal puts around a paste.
_PASTE_ON, _PASTE_OFF = "\x1b[?2004h", "\x1b[?2004l"
_PASTE_START, _PASTE_END = b"\x1b[200~", b"\x1b[201~"


def _styled(prompt: str) -> str:
    return prompt if os.environ.get("NO_COLOR") else f"{_STYLE}{prompt}{_RESET}"


def _write(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # the terminal may be gone (SIGHUP)
        sys.stdout.write(text)
        sys.stdout.flush()


def _rows(echoed: list[tuple[int, bytes]]) -> int:
    """How many terminal rows the echo of these lines took, each after a prompt of the
    given width (a control character echoes as ``^X``: two columns)."""
    width = shutil.get_terminal_size().columns or 80
    rows = 0
    for indent, raw in echoed:
        text = raw.decode(errors="replace")
        shown = indent + len(text) + sum(1 for c in text if c < " ")
        rows += max(1, -(-shown // width))
    return rows


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class EarlyTerminalReader:
    """A :class:`~pygent.repl.lines.TerminalReader` that can be typed into before it loads.

    ``load_after``: prompt_toolkit loads once this future is done (the session's core),
    so a line typed at once does not wait for it."""

    interactive = True

    def __init__(
        self,
        history_path: Path | None,
        commands: Callable[[], Iterable[str]],
        *,
        load_after: asyncio.Future[Any] | None = None,
    ) -> None:
        self._history_path = history_path
        self._commands = commands
        self._gate = load_after
        self._loading: asyncio.Future[TerminalReader] | None = None
        self._early: list[str] = []  # lines read before prompt_toolkit: for its history
        self._cooked: str | None = None  # the prompt drawn in plain ANSI, while it is up
        self._interrupted: asyncio.Future[None] | None = None
        self._had_turn = False  # the cooked prompt is for the first lines only (see busy)
        self._saved: Any = None  # the terminal's settings before echo was switched off

    def _load(self) -> asyncio.Future[TerminalReader]:
        if self._loading is None:
            async def load() -> TerminalReader:
                if self._gate is not None:
                    await asyncio.wait([self._gate])  # its failure is reported by its owner
                reader = await asyncio.to_thread(
                    TerminalReader, self._history_path, self._commands)
                for line in self._early:
                    reader.remember(line)
                return reader

            self._loading = asyncio.ensure_future(load())
        return self._loading

    async def _reader(self) -> TerminalReader:
        return await asyncio.shield(self._load())

    async def read(self, prompt: str = PROMPT, on_shown: Callable[[], None] | None = None) -> str:
        loading = self._load()
        default = ""
        if not loading.done() and not self._had_turn:
            typed = await self._read_cooked(prompt, on_shown, loading)
            if isinstance(typed, str):
                return typed
            on_shown, default = None, "\n".join(typed)  # each but the last was continued
        reader = await self._reader()
        try:
            return await reader.read(prompt, on_shown, default=default)
        finally:
            self._restore_echo()  # after a hand-over (see _hand_over)

    async def _read_cooked(
        self, prompt: str, on_shown: Callable[[], None] | None,
        loading: asyncio.Future[TerminalReader],
    ) -> str | list[str]:
        """A line typed before ``loading`` is done (a str); when it is done first (the
        user still types), the continued lines so far and then the part of the line that
        the terminal gave early."""
        loop = asyncio.get_running_loop()
        fd = sys.stdin.fileno()
        lines: list[str] = []
        # What the terminal echoed, line by line, after how wide a prompt (for a redraw).
        echoed: list[tuple[int, bytes]] = []
        indent = len(prompt)  # the next line's: the prompt's, or none inside a paste
        pending = b""  # a part of a line the terminal gave early (Ctrl-D in its middle)
        pasting = pasted = False
        self._cooked = prompt
        # Bracketed paste: a pasted block arrives between markers, so its newlines stay
        # in the one prompt (as with prompt_toolkit) instead of sending line by line.
        _write(f"{_styled(prompt)}{_PASTE_ON}")
        if on_shown is not None:
            on_shown()
        interrupted = self._interrupted = loop.create_future()
        try:
            while True:
                readable: asyncio.Future[None] = loop.create_future()
                loop.add_reader(fd, _settle, readable)
                try:
                    # Not handed over in the middle of a paste: its end marker would
                    # reach prompt_toolkit without its start.
                    waits: list[asyncio.Future[Any]] = [readable, interrupted]
                    if not pasting:
                        waits.append(loading)
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    loop.remove_reader(fd)
                if interrupted.done():
                    _write("\n")
                    raise KeyboardInterrupt
                if not readable.done():  # prompt_toolkit is ready: it takes the prompt
                    self._hand_over(_rows(echoed))
                    return [*lines, pending.decode(errors="replace")]
                data = os.read(fd, 65536)
                if not data:  # Ctrl-D
                    if not lines and not pending:
                        raise EOFError
                    continue
                if not data.endswith(b"\n"):
                    pending += data
                    continue
                raw = pending + data[:-1]
                pending = b""
                echoed.append((indent, raw))
                indent = len(prompt)
                if _PASTE_START in raw:
                    pasting = pasted = True
                if _PASTE_END in raw:
                    pasting = False
                line = raw.replace(_PASTE_START, b"").replace(_PASTE_END, b"")
                text = line.decode(errors="replace")
                if pasting:  # a newline of the pasted block
                    lines.append(text)
                    indent = 0
                    continue
                if _continues(text):
                    lines.append(text.rstrip(" \t")[:-1])
                    _write(continuation(len(prompt)))
                    continue
                lines.append(text)
                text = "\n".join(lines)
                if pasted:  # the echo showed the markers: draw the prompt again, clean
                    _write(f"\x1b[{_rows(echoed)}A\r\x1b[J{_styled(prompt)}"
                           + text.replace("\n", "\n" + continuation(len(prompt))) + "\n")
                self._early.append(text)
                return text
        finally:
            _write(_PASTE_OFF)
            self._cooked = None
            self._interrupted = None

    def _hand_over(self, rows_above: int) -> None:
        """Stop the terminal's echo and erase the cooked prompt; prompt_toolkit draws its
        own and reads what is still in the line buffer. Echo comes back after its prompt
        (it restores the terminal as it found it: without echo)."""
        import termios

        try:
            fd = sys.stdin.fileno()
            self._saved = termios.tcgetattr(fd)
            silent = list(self._saved)
            silent[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSANOW, silent)
        except (OSError, ValueError, termios.error):
            self._saved = None
        _write((f"\x1b[{rows_above}A" if rows_above else "") + "\r\x1b[J")

    def _restore_echo(self) -> None:
        saved, self._saved = self._saved, None
        if saved is None:
            return
        import termios

        with contextlib.suppress(OSError, ValueError, termios.error):
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSANOW, saved)

    def interrupt(self) -> None:
        """Ctrl-C (SIGINT: the cooked terminal does not pass it as a key) at the prompt."""
        if self._interrupted is not None and not self._interrupted.done():
            self._interrupted.set_result(None)

    async def ask(self, question: str) -> str:
        return await (await self._reader()).ask(question)

    def busy(self) -> contextlib.AbstractContextManager[None]:
        # Keys typed from now on arrive raw (arrows, Ctrl-D): they are prompt_toolkit's
        # to read, so later prompts wait for it (a cooked read would take them as text).
        self._had_turn = True
        return quiet_terminal()

    async def above_prompt(self, show: Callable[[], None]) -> None:
        if self._cooked is not None:  # erased, printed above, drawn again
            _write("\r\x1b[K")
            show()
            _write(_styled(self._cooked))
            return
        await (await self._reader()).above_prompt(show)
