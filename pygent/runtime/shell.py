"""The persistent-shell protocol: run commands one after another in one long-lived shell.

Why a persistent shell: ``cd``, ``export`` and shell functions carry over between
commands as a user expects, and a command costs a pipe round trip instead of a new
process or ``docker exec``.

The shell is started by :data:`SHELL_LAUNCH`: it reads its commands as a script from
``/dev/fd/3`` (the pipe Pygent writes to) while its standard input, which every
command inherits, is ``/dev/null``; so a command that reads stdin gets EOF at once.
Each command is then one short line, ``eval '<cmd>';__pge <token>``, where ``__pge``
(defined once per shell, read-only in bash) prints an end marker with a fresh random
token, the exit status and the working directory on stdout, and the token on stderr.
The line is short on purpose: a shell reads a pipe one byte at a time, so each byte
costs a system call on the hot path. Where ``/dev/fd`` is missing the shell reads
its standard input instead and each command gets ``</dev/null`` of its own.

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
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pygent.errors import SandboxError
from pygent.runtime.base import (
    STDERR,
    STDOUT,
    CommandResult,
    DirectIO,
    OutputCallback,
    ShellTransport,
)

log = logging.getLogger(__name__)

#: What a shell prints when it cannot fork (bash retries for ~20 s, dash gives up).
_NO_FORK = (b"fork: retry: ", b"Cannot fork", b"fork: Resource temporarily unavailable")

#: Starts the persistent shell (``/bin/sh -c SHELL_LAUNCH``): bash when the image has
#: it, else sh, reading its commands from /dev/fd/3 with /dev/null as stdin.
SHELL_LAUNCH = (
    "exec 3<&0 </dev/null; "
    "if (exec 4</dev/fd/3) 2>/dev/null; then "
    "command -v bash >/dev/null 2>&1 && exec bash --noprofile --norc /dev/fd/3; "
    "exec /bin/sh /dev/fd/3; fi; "
    "exec 0<&3 3<&-; "
    "command -v bash >/dev/null 2>&1 && exec bash --noprofile --norc; exec /bin/sh"
)

#: ``$0`` of a shell started by SHELL_LAUNCH that reads its commands from /dev/fd/3.
SCRIPT_NAME = "/dev/fd/3"

#: Prints the end markers; ``$?`` on entry is the status of the ``eval`` before it.
END_FUNCTION = (
    "__pge() { __pygent_rc=$?; printf '%s\\n' \"$1\" >&2; "
    "printf '%s:%s:%s\\n' \"$1\" \"$__pygent_rc\" \"$PWD\"; }"
)

#: How long a dead shell's last output may trail its exit before the command ends.
EXIT_GRACE = 0.2

# Outcomes of one command.
_DONE, _TIMEOUT, _CAPPED, _NO_FORKS, _LOST = "done", "timeout", "capped", "no-forks", "lost"
_INTERRUPTED = "interrupted"


def shell_quote(text: str) -> str:
    """Quote ``text`` as one POSIX shell word."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def command_line(cmd: str, token: str, redirect: str = "") -> bytes:
    """The line sent for one command; ``redirect`` is " </dev/null" for a shell that
    reads its commands from stdin (no /dev/fd)."""
    return f"eval {shell_quote(cmd)}{redirect};__pge {token}\n".encode()


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
    """One command in flight: the parser state the transport's output feeds.

    ``outcome`` is set once (done, timeout, capped...). On the event loop a *waker*
    resolves the awaiting future; on the synchronous fast path there is none and the
    calling thread reads ``outcome`` after each chunk it feeds.
    """

    __slots__ = ("out", "err", "outcome", "waker", "limit", "_scans", "_done")

    def __init__(self, token: str, out: _Capture, err: _Capture, limit: int) -> None:
        # The token is random and new for each command, so it needs no line start of
        # its own: output without a final newline ends right where the token begins.
        self.out = _Scan(out, f"{token}:".encode(), want_status=True)
        self.err = _Scan(err, f"{token}\n".encode(), want_status=False)
        self._scans = (None, self.out, self.err)  # indexed by stream number
        self.outcome: str | None = None
        self.waker: Callable[[str], None] | None = None
        self.limit = limit
        self._done = [False, False, False]

    def feed(self, stream: int, data: bytes) -> None:
        if stream != STDOUT and stream != STDERR:
            return
        scan = self._scans[stream]
        assert scan is not None
        self._done[stream] = scan.feed(data)
        if self.outcome is not None:
            return
        if self._done[STDOUT] and self._done[STDERR]:
            self.end(_DONE)
        elif self.out.capture.total + self.err.capture.total > self.limit:
            self.end(_CAPPED)
        elif stream == STDERR and b"ork" in data and any(m in data for m in _NO_FORK):
            # Processes left by an earlier command (a fork bomb) fill the process
            # table: stop now rather than retrying until the timeout.
            self.end(_NO_FORKS)

    def end(self, outcome: str) -> None:
        if self.outcome is None:
            self.outcome = outcome
            if self.waker is not None:
                self.waker(outcome)

    def wait(self) -> asyncio.Future[str]:
        """A future for the outcome, on the running loop (set already if it is known)."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if self.outcome is not None:
            future.set_result(self.outcome)
        else:
            def wake(outcome: str) -> None:
                if not future.done():
                    future.set_result(outcome)

            self.waker = wake
        return future

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
            loop = asyncio.get_running_loop()  # child exits are reported on the loop
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


@dataclass
class Running:
    """A command that has been sent to the shell and is not finished yet.

    The synchronous fast path hands one over to the event loop when the command
    outlives its budget, fails or is interrupted (see :meth:`PersistentShell.run_direct`).
    """

    cmd: str
    command: _Command
    receiver: _Receiver
    started: float  # time.monotonic()
    deadline: float | None  # time.monotonic() at which the command times out
    note: str = ""
    #: The exception (KeyboardInterrupt) that stopped the synchronous wait, if any.
    interrupted: BaseException | None = None


class PersistentShell:
    """Runs commands in one shell process, restarting it when it is lost.

    Two ways in: :meth:`run` on the event loop (the agent, editors), and
    :meth:`run_direct`, the synchronous fast path, where the calling thread does the
    blocking I/O itself while the loop leaves the shell's pipes alone. A thread lock
    keeps the two from running commands at the same time.
    """

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
        self._direct: DirectIO | None = None
        self._redirect = " </dev/null"  # until the shell says it reads /dev/fd/3
        self._lock = asyncio.Lock()  # orders the event loop's callers
        self._busy = threading.Lock()  # one command at a time, whichever path runs it
        self.restarts = 0

    async def start(self) -> None:
        """Start the shell and check that it answers."""
        result = await self.run("true", timeout=30)
        if result.exit_code != 0:
            raise SandboxError(
                f"the sandbox shell did not start correctly: {result.output.strip()[:500]}"
            )

    # -- the shell process ----------------------------------------------------------

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
        self._transport, self._receiver = transport, receiver
        # Close the script's pipe for the commands (the shell reads its own copy), start
        # in the last known directory (else the first one), define the end-marker
        # function (read-only in bash, so a command cannot break it).
        protect = " readonly -f __pge 2>/dev/null;" if transport.shell_name == "bash" else ""
        transport.write(
            (
                f"exec 3<&-; cd {shell_quote(self.cwd)} 2>/dev/null"
                f" || cd {shell_quote(self._first_cwd)}\n{END_FUNCTION};{protect}\n"
            ).encode()
        )
        self._redirect = " </dev/null"
        probe = await self._finish(self._send(transport, receiver, 'printf %s "$0"', None, 30))
        if probe.stdout == SCRIPT_NAME:
            self._redirect = ""  # stdin is /dev/null already
        return transport, receiver

    async def _drop(self) -> None:
        transport, self._transport = self._transport, None
        self._receiver = None
        self._direct = None  # the transport is closed: nothing to hand back
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.close()

    async def close(self) -> None:
        await self._drop()

    async def _hold_busy(self) -> None:
        # Contended only while a synchronous caller runs a command: poll gently.
        while not self._busy.acquire(blocking=False):
            await asyncio.sleep(0.001)

    def _leave_direct(self) -> None:
        if self._direct is not None:
            self._direct = None
            if self._transport is not None:
                self._transport.leave_direct()

    # -- one command ----------------------------------------------------------------

    def _begin(self, receiver: _Receiver, cmd: str, on_output: OutputCallback | None,
               timeout: float | None) -> tuple[Running, bytes]:
        token = secrets.token_hex(6)
        out = _Capture("stdout", self.keep_bytes, self.stream_limit, on_output)
        err = _Capture("stderr", self.keep_bytes, self.stream_limit, on_output)
        command = _Command(token, out, err, self.output_limit)
        started = time.monotonic()
        running = Running(cmd, command, receiver, started,
                          None if timeout is None else started + timeout)
        receiver.begin(command)
        return running, command_line(cmd, token, self._redirect)

    def _send(self, transport: ShellTransport, receiver: _Receiver, cmd: str,
              on_output: OutputCallback | None, timeout: float | None) -> Running:
        running, line = self._begin(receiver, cmd, on_output, timeout)
        try:
            transport.write(line)
        except (ConnectionError, OSError) as exc:
            log.warning("shell transport failed: %s", exc)
            running.command.end(_LOST)
        return running

    async def run(
        self, cmd: str, *, timeout: float | None = None, on_output: OutputCallback | None = None
    ) -> CommandResult:
        """Run ``cmd`` on the event loop; see the module docstring for the protocol."""
        async with self._lock:
            await self._hold_busy()
            try:
                self._leave_direct()
                restarted_before = self.restarts
                transport, receiver = await self._ensure()
                running = self._send(transport, receiver, cmd, on_output, timeout)
                if self.restarts != restarted_before:
                    running.note = f"the shell had exited and was restarted in {self.cwd}"
                with contextlib.suppress(ConnectionError, OSError):
                    await transport.drain()
                return await self._finish(running)
            finally:
                self._busy.release()

    async def _finish(self, running: Running) -> CommandResult:
        """Wait for a sent command's outcome on the loop; kill the shell unless it ended."""
        command = running.command
        loop = asyncio.get_running_loop()
        timer = None
        outcome = _LOST
        cancelled = False
        try:
            done = command.wait()
            if running.deadline is not None and command.outcome is None:
                left = max(0.0, running.deadline - time.monotonic())
                timer = loop.call_later(left, command.end, _TIMEOUT)
            outcome = await done
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
        finally:
            if timer is not None:
                timer.cancel()
            command.waker = None
            if running.receiver.command is command:
                running.receiver.command = None
            if cancelled or outcome != _DONE:
                command.finish()
        return self._result(running, outcome)

    def _result(self, running: Running, outcome: str) -> CommandResult:
        command, note = running.command, running.note
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
            elif outcome == _INTERRUPTED:
                note = note or f"interrupted: the command was killed; the shell restarts in {self.cwd}"
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
            command=running.cmd,
            exit_code=exit_code,
            stdout=out.text(),
            stderr=err.text(),
            timed_out=outcome == _TIMEOUT,
            cancelled=outcome == _INTERRUPTED,
            truncated=outcome == _CAPPED or out.truncated or err.truncated,
            output_bytes=out.total + err.total,
            duration=time.monotonic() - running.started,
            note=note,
        )

    # -- the synchronous fast path --------------------------------------------------

    async def prepare_direct(self) -> bool:
        """On the loop: start the shell if needed and give its I/O to synchronous
        callers (the loop stops reading it). False if this transport cannot."""
        async with self._lock:
            await self._hold_busy()
            try:
                if self._direct is not None and self._transport is not None \
                        and self._transport.alive():
                    return True
                self._leave_direct()
                transport, _ = await self._ensure()
                self._direct = transport.enter_direct()
                return self._direct is not None
            finally:
                self._busy.release()

    def run_direct(self, cmd: str, *, timeout: float | None, on_output: OutputCallback | None,
                   budget: float) -> CommandResult | Running | None:
        """Run ``cmd`` from a thread that is not the loop's, doing the I/O itself.

        Returns the result when the command ends within ``budget`` seconds; else the
        :class:`Running` command, still holding the shell, for
        :meth:`finish_handover` on the loop (timeouts, kills, watchdogs and recovery
        all happen there); or None when the fast path is not set up (call
        :meth:`prepare_direct`, or use :meth:`run`).
        """
        if not self._busy.acquire(blocking=False):
            return None
        io, receiver = self._direct, self._receiver
        if io is None or receiver is None or receiver.closed or receiver.command is not None:
            self._busy.release()
            return None
        try:
            running, line = self._begin(receiver, cmd, on_output, timeout)
        except BaseException:  # interrupted before anything was sent: nothing to undo
            receiver.command = None
            self._busy.release()
            raise
        command = running.command
        end = running.started + budget
        if running.deadline is not None:
            end = min(end, running.deadline)
        try:
            io.write_all(line)
            while command.outcome is None:
                if time.monotonic() >= end:
                    return running  # a long command: the loop takes over
                io.wait_and_read(end - time.monotonic())
        except (ConnectionError, OSError) as exc:
            log.warning("shell transport failed: %s", exc)
            command.end(_LOST)
        except BaseException as exc:  # KeyboardInterrupt: the loop kills the command
            running.interrupted = exc
            return running
        if command.outcome != _DONE:
            return running
        receiver.command = None
        self._busy.release()
        return self._result(running, _DONE)

    async def finish_handover(self, running: Running) -> CommandResult:
        """On the loop: finish a command :meth:`run_direct` handed over, then free the shell."""
        try:
            self._leave_direct()  # the loop reads the rest of the output
            if running.interrupted is not None:
                running.command.end(_INTERRUPTED)
            return await self._finish(running)
        finally:
            self._busy.release()
