"""The persistent-shell protocol: run commands one after another in one long-lived shell.

Why a persistent shell: ``cd``, ``export`` and shell functions carry over between
commands as a user expects, and a command costs a pipe round trip instead of a new
process or ``docker exec``. Each command is one line,
``eval '<cmd>' </dev/null;__pygent_end <token>``, where ``__pygent_end`` (defined once
per shell, read-only in bash) prints an end marker carrying a fresh random token, the
exit status and the working directory on stdout, and the token on stderr. The line is
short on purpose: a shell reads a pipe one byte at a time, so every byte costs a
system call on the hot path.

The transports push output straight into this module's parser from their protocol
callbacks (no reader tasks, no per-command tasks), so a command costs one wake-up of
the awaiting coroutine: about the socket round trip itself.

A timeout, a cancel or the output cap kills the shell *with* the command, then a new
shell starts in the same directory: killing only the command would let the rest of a
command list run (``sleep 100; rm -rf x``). Exported variables do not survive that.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from pygent.errors import SandboxError
from pygent.runtime.base import STDERR, STDOUT, CommandResult, OutputCallback, ShellTransport

log = logging.getLogger(__name__)

#: What a shell prints when it cannot fork (bash retries for ~20 s, dash gives up).
_NO_FORK = (b"fork: retry: ", b"Cannot fork", b"fork: Resource temporarily unavailable")

#: Prints the end markers; ``$?`` on entry is the status of the ``eval`` before it.
END_FUNCTION = (
    "__pygent_end() { __pygent_rc=$?; printf '\\n%s\\n' \"$1\" >&2; "
    "printf '\\n%s:%s:%s\\n' \"$1\" \"$__pygent_rc\" \"$PWD\"; }"
)

#: How long a dead shell's last output may trail its exit before the command ends.
EXIT_GRACE = 0.2

# Outcomes of one command.
_DONE, _TIMEOUT, _CAPPED, _NO_FORKS, _LOST = "done", "timeout", "capped", "no-forks", "lost"


def shell_quote(text: str) -> str:
    """Quote ``text`` as one POSIX shell word."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


class _Capture:
    """Keeps the head and the tail of one stream and counts every byte."""

    __slots__ = ("name", "keep", "head", "tail", "total", "_streamed", "_stream_limit",
                 "_on_output", "_decoder")

    def __init__(self, name: str, keep: int, stream_limit: int, on_output: OutputCallback | None):
        self.name = name
        self.keep = keep
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self._streamed = 0
        self._stream_limit = stream_limit
        self._on_output = on_output
        self._decoder: codecs.IncrementalDecoder | None = None

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if self._on_output is not None and self._streamed < self._stream_limit:
            self._stream(data[: self._stream_limit - self._streamed])
        self.total += len(data)
        room = self.keep - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.keep:
                del self.tail[: len(self.tail) - self.keep]

    def _stream(self, data: bytes) -> None:
        assert self._on_output is not None
        if self._decoder is None:
            self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._streamed += len(data)
        text = self._decoder.decode(data)
        if self._streamed >= self._stream_limit:
            text += "\n[live output paused: too much output]\n"
        if text:
            self._on_output(self.name, text)

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        if not self.tail:
            return head
        tail = self.tail.decode("utf-8", errors="replace")
        if self.truncated:
            skipped = self.total - len(self.head) - len(self.tail)
            return f"{head}\n... [{skipped} bytes omitted] ...\n{tail}"
        return head + tail


def _marker_prefix_len(buf: bytes, marker: bytes) -> int:
    """Length of the longest tail of ``buf`` that is a proper prefix of ``marker``."""
    start = max(len(buf) - len(marker) + 1, 0)
    idx = buf.find(marker[:1], start)
    while idx != -1:
        if marker.startswith(buf[idx:]):
            return len(buf) - idx
        idx = buf.find(marker[:1], idx + 1)
    return 0


class _Scan:
    """Finds one command's end marker in one stream, passing what precedes it on.

    Only a tail that could be the start of the marker is held back, so short output
    (a prompt, ``one\\n``) streams at once instead of at the next chunk.
    """

    __slots__ = ("capture", "marker", "held", "found", "status")

    def __init__(self, capture: _Capture, marker: bytes, want_status: bool) -> None:
        self.capture = capture
        self.marker = marker
        self.held = b""
        self.found = False
        # After the stdout marker: "rc:cwd\n", collected until its newline.
        self.status: bytearray | None = bytearray() if want_status else None

    def feed(self, data: bytes) -> bool:
        """Take a chunk; True once the marker (and its status line) is complete."""
        if self.found:
            if self.status is not None and not self.status.endswith(b"\n"):
                self.status += data  # the status line split across chunks
                return b"\n" in self.status
            return True  # output after the marker (a background job): dropped
        buf = self.held + data if self.held else data
        idx = buf.find(self.marker)
        if idx < 0:
            keep = _marker_prefix_len(buf, self.marker)
            self.capture.feed(buf[: len(buf) - keep] if keep else buf)
            self.held = buf[len(buf) - keep :] if keep else b""
            return False
        self.capture.feed(buf[:idx])
        self.held = b""
        self.found = True
        if self.status is None:
            return True
        self.status += buf[idx + len(self.marker) :]
        return b"\n" in self.status

    def finish(self) -> None:
        """The stream ended without a marker: what was held back is output too."""
        if not self.found and self.held:
            self.capture.feed(self.held)
            self.held = b""

    def status_line(self) -> str:
        raw = bytes(self.status or b"").partition(b"\n")[0]
        return raw.decode("utf-8", errors="replace")


class _Command:
    """One command in flight: the parser state the transport's callbacks feed."""

    __slots__ = ("out", "err", "outcome", "limit", "_scans", "_done")

    def __init__(self, token: str, out: _Capture, err: _Capture, limit: int,
                 outcome: asyncio.Future[str]) -> None:
        self.out = _Scan(out, f"\n{token}:".encode(), want_status=True)
        self.err = _Scan(err, f"\n{token}\n".encode(), want_status=False)
        self._scans = (None, self.out, self.err)  # indexed by stream number
        self.outcome = outcome
        self.limit = limit
        self._done = [False, False, False]

    def feed(self, stream: int, data: bytes) -> None:
        if stream not in (STDOUT, STDERR):
            return
        scan = self._scans[stream]
        assert scan is not None
        self._done[stream] = scan.feed(data)
        if self.outcome.done():
            return
        if self._done[STDOUT] and self._done[STDERR]:
            self.outcome.set_result(_DONE)
        elif self.out.capture.total + self.err.capture.total > self.limit:
            self.outcome.set_result(_CAPPED)
        elif stream == STDERR and any(m in data for m in _NO_FORK):
            # Processes left by an earlier command (a fork bomb) fill the process
            # table: stop now rather than retrying until the timeout.
            self.outcome.set_result(_NO_FORKS)

    def end(self, outcome: str) -> None:
        if not self.outcome.done():
            self.outcome.set_result(outcome)

    def finish(self) -> None:
        self.out.finish()
        self.err.finish()


class _Receiver:
    """One shell's :class:`ShellReceiver`: routes output to the command in flight.

    Output that arrives between commands (a background job printing) is kept, a
    bounded amount per stream, and shown at the start of the next command's output,
    as a terminal would show it.
    """

    def __init__(self, keep: int) -> None:
        self.command: _Command | None = None
        self.closed = False
        self._keep = keep
        self._stray: dict[int, bytearray] = {STDOUT: bytearray(), STDERR: bytearray()}
        self._exit_timer: asyncio.TimerHandle | None = None

    def shell_output(self, stream: int, data: bytes) -> None:
        command = self.command
        if command is not None:
            command.feed(stream, data)
            return
        stray = self._stray.get(stream)
        if stray is not None:
            stray += data
            if len(stray) > self._keep:
                del stray[: len(stray) - self._keep]

    def shell_closed(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.command is not None:
            self.command.end(_LOST)

    def shell_exited(self) -> None:
        """The process exited (its pipes may stay open in a background job)."""
        if not self.closed and self._exit_timer is None:
            loop = asyncio.get_running_loop()
            self._exit_timer = loop.call_later(EXIT_GRACE, self.shell_closed)

    def begin(self, command: _Command) -> None:
        self.command = command
        for stream, stray in self._stray.items():
            if stray:
                scan = command.out if stream == STDOUT else command.err
                scan.capture.feed(bytes(stray))
                stray.clear()
        if self.closed:
            command.end(_LOST)


class PersistentShell:
    """Runs commands in one shell process, restarting it when it is lost."""

    def __init__(
        self,
        spawn: Callable[[], Awaitable[ShellTransport]],
        *,
        initial_cwd: str,
        keep_bytes: int = 32_768,
        output_limit: int = 64 * 1024 * 1024,
        stream_limit: int = 2 * 1024 * 1024,
    ) -> None:
        """
        Args:
            spawn: starts a fresh shell transport (local process or container exec).
            initial_cwd: the directory commands start in (the workspace).
            keep_bytes: bytes kept from the head and from the tail of each stream.
            output_limit: total output after which the command is killed.
            stream_limit: bytes forwarded live to ``on_output`` per stream.
        """
        self._spawn = spawn
        self.cwd = initial_cwd
        self._first_cwd = initial_cwd
        self.keep_bytes = keep_bytes
        self.output_limit = output_limit
        self.stream_limit = stream_limit
        self._transport: ShellTransport | None = None
        self._receiver: _Receiver | None = None
        self._lock = asyncio.Lock()
        self.restarts = 0

    async def start(self) -> None:
        """Start the shell and check that it answers."""
        await self._ensure()
        result = await self.run("true", timeout=30)
        if result.exit_code != 0:
            raise SandboxError(
                f"the sandbox shell did not start correctly: {result.output.strip()[:500]}"
            )

    async def _ensure(self) -> tuple[ShellTransport, _Receiver]:
        transport, receiver = self._transport, self._receiver
        if transport is not None and receiver is not None and transport.alive() \
                and not receiver.closed:
            return transport, receiver
        if transport is not None:
            await self._drop()
            self.restarts += 1
        transport = await self._spawn()
        receiver = _Receiver(self.keep_bytes)
        transport.attach(receiver)
        # Start in the last known directory (else the first one), with the end-marker
        # function defined; in bash it is read-only, so a command cannot break it.
        protect = "readonly -f __pygent_end 2>/dev/null; " if transport.shell_name == "bash" else ""
        init = (
            f"cd {shell_quote(self.cwd)} 2>/dev/null || cd {shell_quote(self._first_cwd)}\n"
            f"{END_FUNCTION}; {protect}\n"
        )
        transport.write(init.encode())
        self._transport, self._receiver = transport, receiver
        return transport, receiver

    async def _drop(self) -> None:
        transport, self._transport = self._transport, None
        self._receiver = None
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.close()

    async def close(self) -> None:
        await self._drop()

    async def run(
        self, cmd: str, *, timeout: float | None = None, on_output: OutputCallback | None = None
    ) -> CommandResult:
        """Run ``cmd``; see the module docstring for the protocol."""
        async with self._lock:
            return await self._run_locked(cmd, timeout, on_output)

    async def _run_locked(
        self, cmd: str, timeout: float | None, on_output: OutputCallback | None
    ) -> CommandResult:
        restarted_before = self.restarts
        transport, receiver = await self._ensure()
        note = ""
        if self.restarts != restarted_before:
            note = f"the shell had exited and was restarted in {self.cwd}"
        token = "__PYGENT_" + secrets.token_hex(8)
        out = _Capture("stdout", self.keep_bytes, self.stream_limit, on_output)
        err = _Capture("stderr", self.keep_bytes, self.stream_limit, on_output)
        loop = asyncio.get_running_loop()
        command = _Command(token, out, err, self.output_limit, loop.create_future())
        started = time.monotonic()
        timer = None
        cancelled = False
        outcome = _LOST
        receiver.begin(command)
        try:
            transport.write(f"eval {shell_quote(cmd)} </dev/null;__pygent_end {token}\n".encode())
            await transport.drain()
            if timeout is not None:
                timer = loop.call_later(timeout, command.end, _TIMEOUT)
            outcome = await command.outcome
            if outcome != _DONE:
                # Kill the shell together with its children: killing only the children
                # would let a command list go on (`sleep 100; rm -rf x` would still rm).
                # A lost shell is dropped too, so the next command starts a new one.
                await self._drop()
        except asyncio.CancelledError:
            cancelled = True
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._drop())
            self.restarts += 1
            raise
        except (ConnectionError, OSError) as exc:
            log.warning("shell transport failed: %s", exc)
            outcome = _LOST
            await self._drop()
        finally:
            if timer is not None:
                timer.cancel()
            receiver.command = None
            if cancelled or outcome != _DONE:
                command.finish()
        return self._result(cmd, command, outcome, note, time.monotonic() - started)

    def _result(self, cmd: str, command: _Command, outcome: str, note: str,
                duration: float) -> CommandResult:
        out, err = command.out.capture, command.err.capture
        exit_code: int | None = None
        if outcome == _DONE:
            rc, _, cwd = command.out.status_line().partition(":")
            exit_code = int(rc) if rc.strip().lstrip("-").isdigit() else None
            if cwd:
                self.cwd = cwd
        else:
            self.restarts += 1  # the shell was dropped: the next command starts a new one
            if outcome in (_TIMEOUT, _CAPPED):
                note = note or (
                    f"the shell was restarted in {self.cwd} after the kill "
                    "(exported variables were reset)"
                )
            note = note or (
                "the shell exited or stopped answering; a new shell starts in "
                f"{self.cwd} (exported variables were reset)"
            )
        if outcome == _NO_FORKS:
            note = (
                "the sandbox ran out of processes (something, such as a fork bomb, kept "
                "starting them): every process the commands started was killed; the next "
                "command starts fresh"
            )
        return CommandResult(
            command=cmd,
            exit_code=exit_code,
            stdout=out.text(),
            stderr=err.text(),
            timed_out=outcome == _TIMEOUT,
            truncated=outcome == _CAPPED or out.truncated or err.truncated,
            output_bytes=out.total + err.total,
            duration=duration,
            note=note,
        )
