"""Reading the user's input: prompt_toolkit on a terminal, plain lines from a pipe.

Both readers raise ``EOFError`` at the end of input (Ctrl-D) and ``KeyboardInterrupt``
for Ctrl-C at the prompt. Multi-line input on a terminal: Alt+Enter (or Esc, Enter)
inserts a newline, and a line ending in a backslash continues on the next line; a
paste keeps its newlines. The same backslash rule works for piped input.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

PROMPT = "vc> "


class LineReader(Protocol):
    """Where prompts and answers come from."""

    interactive: bool

    async def read(self, prompt: str = PROMPT, on_shown: Callable[[], None] | None = None) -> str:
        """The next prompt; the history remembers it. ``on_shown`` runs as it appears."""

    async def ask(self, question: str) -> str:
        """A one-line answer (approvals, ask_user menus); not saved in the history."""

    def busy(self) -> contextlib.AbstractContextManager[None]:
        """While a turn runs: keys typed are kept for the next prompt, not echoed."""


def _continues(text: str) -> bool:
    """A trailing, unescaped backslash asks for another line."""
    stripped = text.rstrip(" \t")
    return stripped.endswith("\\") and not stripped.endswith("\\\\")


def continuation(width: int) -> str:
    """The prompt of a continued line: dots as wide as the prompt (``... ``)."""
    return "." * (width - 1) + " "


@contextlib.contextmanager
def quiet_terminal() -> Iterator[None]:
    """While a turn runs: the terminal neither echoes nor edits lines (see busy)."""
    # Without this the terminal is in cooked mode during a turn: typed keys echo
    # into the live display, and a Ctrl-D becomes an end-of-file that makes the
    # next prompt_toolkit prompt stop reading. Ctrl-C still raises SIGINT (ISIG).
    try:
        import termios
    except ImportError:  # not a POSIX terminal (Windows)
        yield
        return
    try:
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (OSError, ValueError, termios.error):
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ICANON | termios.ECHO)
    quiet[6] = list(saved[6])
    quiet[6][termios.VMIN], quiet[6][termios.VTIME] = 1, 0
    try:
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
        yield
    finally:
        with contextlib.suppress(OSError, termios.error):  # the terminal may be gone (SIGHUP)
            termios.tcsetattr(fd, termios.TCSANOW, saved)


class TerminalReader:
    """prompt_toolkit with history across runs and multi-line editing."""

    interactive = True

    def __init__(self, history_path: Path | None, commands: Callable[[], Iterable[str]]) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import Completer, Completion
        from prompt_toolkit.formatted_text import FormattedText
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings
        from prompt_toolkit.styles import Style

        history: Any = InMemoryHistory()
        if history_path is not None:
            try:
                history_path.parent.mkdir(parents=True, exist_ok=True)
                history = FileHistory(str(history_path))
            except OSError as exc:  # no writable data dir: history for this run only
                log.warning("input history not saved: %s", exc)

        class SlashCompleter(Completer):
            """Completes command names after a leading slash (Tab)."""

            def get_completions(self, document: Any, complete_event: Any) -> Any:
                text = document.text_before_cursor
                if not text.startswith("/") or " " in text:
                    return
                for name in sorted(commands()):
                    if name.startswith(text):
                        yield Completion(name, start_position=-len(text))

        keys = KeyBindings()

        @keys.add("enter")
        def _enter(event: Any) -> None:
            buffer = event.current_buffer
            if (
                _continues(buffer.document.text_before_cursor)
                and buffer.document.is_cursor_at_the_end
            ):
                buffer.delete_before_cursor(1)
                buffer.insert_text("\n")
            else:
                buffer.validate_and_handle()

        @keys.add("escape", "enter")
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        self._prompt_text = FormattedText
        self._session: Any = PromptSession(
            history=history,
            key_bindings=keys,
            multiline=True,  # Enter is bound above: it submits unless the line continues
            completer=SlashCompleter(),
            complete_while_typing=False,
            enable_history_search=False,
            prompt_continuation=lambda width, line, wrap: continuation(width),
            style=Style.from_dict({"prompt": "ansigreen bold", "question": "ansiyellow bold"}),
        )
        self._asker: Any = PromptSession(style=self._session.style)

    async def read(
        self, prompt: str = PROMPT, on_shown: Callable[[], None] | None = None, *, default: str = ""
    ) -> str:
        # pre_run is called just before the prompt is first drawn, with no await in
        # between: a task it schedules runs once the prompt is on screen.
        return await self._session.prompt_async(
            self._prompt_text([("class:prompt", prompt)]), handle_sigint=False,
            pre_run=on_shown, default=default,
        )

    def remember(self, line: str) -> None:
        """Add a line read before this reader existed to the input history."""
        self._session.history.append_string(line)

    async def ask(self, question: str) -> str:
        return await self._asker.prompt_async(
            self._prompt_text([("class:question", question)]), handle_sigint=False
        )

    def busy(self) -> contextlib.AbstractContextManager[None]:
        return quiet_terminal()

    async def above_prompt(self, show: Callable[[], None]) -> None:
        """Print with ``show`` above the prompt (if one is up) and draw it again below."""
        from prompt_toolkit.application import run_in_terminal

        await run_in_terminal(show)


class PipeReader:
    """Lines from a non-terminal stdin, read by a daemon thread (so exit never waits on it)."""

    interactive = False

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream if stream is not None else sys.stdin
        self._queue: asyncio.Queue[str | None] | None = None
        self._thread: threading.Thread | None = None

    def _start(self) -> asyncio.Queue[str | None]:
        if self._queue is None:
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[str | None] = asyncio.Queue()

            def pump() -> None:
                try:
                    for line in self._stream:
                        loop.call_soon_threadsafe(queue.put_nowait, line)
                except (OSError, ValueError) as exc:  # stdin closed under us: its end
                    log.debug("stdin closed: %s", exc)
                finally:
                    # A closed loop means nobody is reading any more.
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(queue.put_nowait, None)

            self._queue = queue
            self._thread = threading.Thread(target=pump, name="pygent-stdin", daemon=True)
            self._thread.start()
        return self._queue

    async def _line(self) -> str:
        line = await self._start().get()
        if line is None:
            self._queue.put_nowait(None)  # type: ignore[union-attr]  # stay at EOF
            raise EOFError
        return line.rstrip("\n").rstrip("\r")

    async def read(self, prompt: str = PROMPT, on_shown: Callable[[], None] | None = None) -> str:
        if on_shown is not None:
            on_shown()
        parts = [await self._line()]
        while _continues(parts[-1]):
            parts[-1] = parts[-1].rstrip(" \t")[:-1]
            try:
                parts.append(await self._line())
            except EOFError:
                break
        return "\n".join(parts)

    async def ask(self, question: str) -> str:
        return await self._line()

    def busy(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()
