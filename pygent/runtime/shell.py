"""The persistent-shell protocol: run commands one after another in one long-lived shell.

Why a persistent shell: ``cd``, ``export`` and shell functions carry over between
commands as a user expects, and a command costs a pipe round trip instead of a new
process or ``docker exec``. Each command is sent as ``eval '<cmd>' </dev/null``
followed by an end marker carrying a fresh random token, the exit status and the
working directory. A timeout, a cancel or the output cap kills every process the
shell started (``ShellTransport.kill_children``); if the shell itself is stuck or
gone (a builtin loop, ``exit``, ``exec >file``), it is replaced by a new one in the
same working directory.

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
from typing import Any

from pygent.errors import SandboxError
from pygent.runtime.base import CommandResult, OutputCallback, ShellTransport

log = logging.getLogger(__name__)

#: What a shell prints when it cannot fork (bash retries for ~20 s, dash gives up).
_NO_FORK = (b"fork: retry: ", b"Cannot fork", b"fork: Resource temporarily unavailable")


def shell_quote(text: str) -> str:
    """Quote ``text`` as one POSIX shell word."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


class _Capture:
    """Keeps the head and the tail of one stream and counts every byte."""

    def __init__(self, name: str, keep: int, stream_limit: int, on_output: OutputCallback | None):
        self.name = name
        self.keep = keep
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self._streamed = 0
        self._stream_limit = stream_limit
        self._on_output = on_output
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

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
        self._streamed += len(data)
        text = self._decoder.decode(data)
        if self._streamed >= self._stream_limit:
            text += "\n[live output paused: too much output]\n"
        if text and self._on_output is not None:
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
        self.keep_bytes = keep_bytes
        self.output_limit = output_limit
        self.stream_limit = stream_limit
        self._transport: ShellTransport | None = None
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

    async def _ensure(self) -> ShellTransport:
        if self._transport is not None and self._transport.alive():
            return self._transport
        if self._transport is not None:
            await self._drop()
            self.restarts += 1
        transport = await self._spawn()
        # Start in the last known directory; fall back to the initial one.
        init = f"cd {shell_quote(self.cwd)} 2>/dev/null || cd {shell_quote(self._initial_cwd)}\n"
        await transport.write(init.encode())
        self._transport = transport
        return transport

    @property
    def _initial_cwd(self) -> str:
        return getattr(self, "_first_cwd", self.cwd)

    async def _drop(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.close()

    async def close(self) -> None:
        await self._drop()

    async def run(
        self, cmd: str, *, timeout: float | None = None, on_output: OutputCallback | None = None
    ) -> CommandResult:
        """Run ``cmd``; see the module docstring for the protocol."""
        if not hasattr(self, "_first_cwd"):
            self._first_cwd = self.cwd
        async with self._lock:
            return await self._run_locked(cmd, timeout, on_output)

    async def _run_locked(
        self, cmd: str, timeout: float | None, on_output: OutputCallback | None
    ) -> CommandResult:
        restarted_before = self.restarts
        transport = await self._ensure()
        note = ""
        if self.restarts != restarted_before:
            note = f"the shell had exited and was restarted in {self.cwd}"
        token = "__PYGENT_" + secrets.token_hex(10)
        script = (
            f"eval {shell_quote(cmd)} </dev/null\n"
            f"__pygent_rc=$?; printf '\\n{token}:%s:%s\\n' \"$__pygent_rc\" \"$PWD\"; "
            f"printf '\\n{token}\\n' >&2\n"
        )
        out = _Capture("stdout", self.keep_bytes, self.stream_limit, on_output)
        err = _Capture("stderr", self.keep_bytes, self.stream_limit, on_output)
        marker_out = f"\n{token}:".encode()
        marker_err = f"\n{token}\n".encode()
        started = time.monotonic()
        over_cap = asyncio.Event()
        no_forks: list[bool] = []  # set when the shell says it cannot start a process

        def feed(cap: _Capture) -> Callable[[bytes], None]:
            def _feed(data: bytes) -> None:
                cap.feed(data)
                if out.total + err.total > self.output_limit:
                    over_cap.set()
                elif cap is err and any(m in data for m in _NO_FORK):
                    # Processes left by an earlier command (a fork bomb) fill the
                    # process table: stop now rather than retrying until the timeout.
                    no_forks.append(True)
                    over_cap.set()

            return _feed

        status: dict[str, str] = {}
        pump_out = asyncio.ensure_future(
            _pump(transport.stdout, marker_out, feed(out), status, want_status=True)
        )
        pump_err = asyncio.ensure_future(_pump(transport.stderr, marker_err, feed(err), status))
        both = asyncio.gather(pump_out, pump_err)
        timed_out = cancelled = capped = False
        lost = False
        try:
            await transport.write(script.encode())
            cap_wait = asyncio.ensure_future(over_cap.wait())
            waiters: set[asyncio.Future[Any]] = {both, cap_wait}
            done, _ = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            cap_wait.cancel()
            if both not in done:
                capped = over_cap.is_set() and not no_forks
                timed_out = not over_cap.is_set()
                lost = True
                # Kill the shell together with its children: killing only the children
                # would let a command list go on (`sleep 100; rm -rf x` would still rm).
                await self._drop()
                await _wait_quiet(both, 1.0)
        except asyncio.CancelledError:
            cancelled = True
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._drop())
            self.restarts += 1
            raise
        except (ConnectionError, OSError) as exc:
            log.warning("shell transport failed: %s", exc)
            lost = True
        finally:
            if not both.done():
                both.cancel()
            # Always retrieve the result so a cancelled pump never logs "never retrieved".
            both.add_done_callback(lambda f: f.cancelled() or f.exception())
        if not lost and both.done() and not both.cancelled() and both.exception() is None:
            eof = pump_out.result() is None or pump_err.result() is None
            lost = eof
        exit_code: int | None = None
        if not lost:
            rc, _, cwd = status.get("line", "").partition(":")
            exit_code = int(rc) if rc.strip().lstrip("-").isdigit() else None
            if cwd:
                self.cwd = cwd
        else:
            # The shell is stuck or gone: replace it on the next command.
            await self._drop()
            self.restarts += 1
            if timed_out or capped:
                note = note or (
                    f"the shell was restarted in {self.cwd} after the kill "
                    "(exported variables were reset)"
                )
            note = note or (
                "the shell exited or stopped answering; a new shell starts in "
                f"{self.cwd} (exported variables were reset)"
            )
        if no_forks:
            note = (
                "the sandbox ran out of processes (something, such as a fork bomb, kept "
                "starting them): every process the commands started was killed; the next "
                "command starts fresh"
            )
        if timed_out or capped or no_forks:
            exit_code = None if exit_code in (None, 0) else exit_code
        return CommandResult(
            command=cmd,
            exit_code=exit_code,
            stdout=out.text(),
            stderr=err.text(),
            timed_out=timed_out,
            cancelled=cancelled,
            truncated=capped or out.truncated or err.truncated,
            output_bytes=out.total + err.total,
            duration=time.monotonic() - started,
            note=note,
        )


async def _wait_quiet(fut: asyncio.Future, timeout: float) -> bool:
    """Wait for ``fut`` up to ``timeout`` without cancelling it; True if it finished."""
    done, _ = await asyncio.wait({fut}, timeout=timeout)
    return bool(done)


def _marker_prefix_len(buf: bytes, marker: bytes, hold: int) -> int:
    """Length of the longest tail of ``buf`` that is a proper prefix of ``marker``."""
    start = max(len(buf) - hold, 0)
    idx = buf.find(marker[:1], start)
    while idx != -1:
        if marker.startswith(buf[idx:]):
            return len(buf) - idx
        idx = buf.find(marker[:1], idx + 1)
    return 0


async def _pump(
    reader: asyncio.StreamReader,
    marker: bytes,
    sink: Callable[[bytes], None],
    status: dict[str, str],
    *,
    want_status: bool = False,
) -> bytes | None:
    """Feed ``reader`` to ``sink`` until ``marker``; None on EOF (the shell died)."""
    buf = b""
    hold = len(marker) - 1
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            sink(buf)
            return None
        buf += chunk
        idx = buf.find(marker)
        if idx >= 0:
            sink(buf[:idx])
            rest = buf[idx + len(marker) :]
            if want_status:
                while b"\n" not in rest:
                    more = await reader.read(4096)
                    if not more:
                        return None
                    rest += more
                line, _, rest = rest.partition(b"\n")
                status["line"] = line.decode("utf-8", errors="replace")
            return rest
        # Hold back only a tail that could be the start of the marker, so short
        # output (a prompt, "one\n") streams at once instead of at the next chunk.
        keep = _marker_prefix_len(buf, marker, hold)
        if len(buf) > keep:
            sink(buf[: len(buf) - keep])
            buf = buf[len(buf) - keep :]
