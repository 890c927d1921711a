"""The local backend: the persistent shell runs on the host, in the workspace directory.

There is no isolation here, which is why the front ends ask before every command in
local mode. What the host can still enforce is enforced: an allow-listed environment
(no API keys, and none left readable in this process's ``/proc/PID/environ``), stdin
from /dev/null, capped output, and a kill on timeout, cancel and close that reaches
every process the commands started, including those that left the shell's session
(``setsid``, double forks): each shell carries a random tag in its environment, which
its descendants inherit. A tiny watcher process kills the tagged processes when this
process dies, even by ``kill -9``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pygent.runtime.base import STDERR, STDOUT, CommandResult, OutputCallback, ShellReceiver
from pygent.runtime.sandbox_env import sandbox_environment, scrub_exec_environ
from pygent.runtime.shell import SHELL_LAUNCH, PersistentShell, Running

log = logging.getLogger(__name__)

#: The variable that tags every process a local backend's shell starts.
TAG_VARIABLE = "PYGENT_SANDBOX_ID"

#: The watcher: waits until its stdin, the read end of a pipe, reports end-of-file
#: (Pygent closed it or died), then kills every process whose environment carries the
#: tag ($1). Builtins, ``grep`` and ``kill`` only; it is not tagged itself. (The pipe is
#: stdin, not ``<&N``: dash refuses descriptors above 9 with "Bad fd number", and a
#: language server holding a few connections is past 9.)
_WATCHER = (
    'read _; for _ in 1 2 3; do for d in /proc/[0-9]*; do '
    'grep -qsaxzF "$1" "$d/environ" && kill -9 "${d#/proc/}" 2>/dev/null; done; done'
)


def tagged_processes(tag: str, exclude: int = -1) -> list[int]:
    """PIDs whose exec-time environment contains ``TAG_VARIABLE=tag`` (Linux /proc scan).

    The environment survives ``setsid``, double forks and re-parenting, unlike the
    session and process group, so this finds what a command left behind anywhere.
    """
    needle = f"{TAG_VARIABLE}={tag}".encode()
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                data = fh.read()
        except OSError:  # gone meanwhile, or another user's process
            continue
        if needle in data.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def _session_members(sid: int) -> list[int]:
    """PIDs whose session is ``sid`` (Linux /proc scan), excluding ``sid`` itself."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == sid:
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        # fields: state ppid pgrp session ...
        if len(fields) > 3 and fields[3] == str(sid):
            pids.append(int(entry.name))
    return pids


class _ShellProcessProtocol(asyncio.SubprocessProtocol):
    """Pushes the shell's pipe output straight to its receiver (no reader tasks)."""

    def __init__(self) -> None:
        self.receiver: ShellReceiver | None = None
        self._early: list[tuple[int, bytes]] = []  # output before a receiver attached
        self._open_pipes = {STDOUT, STDERR}
        self._writable = asyncio.Event()
        self._writable.set()
        self.exited = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self.receiver is not None:
            self.receiver.shell_output(fd, data)
        else:
            self._early.append((fd, data))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open_pipes.discard(fd)
        if not self._open_pipes and self.receiver is not None:
            self.receiver.shell_closed()  # all output is in

    def process_exited(self) -> None:
        self.exited.set()
        if self.receiver is not None:
            self.receiver.shell_exited()  # a background job may hold the pipes open

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def attach(self, receiver: ShellReceiver) -> None:
        self.receiver = receiver
        early, self._early = self._early, []
        for fd, data in early:
            receiver.shell_output(fd, data)
        if not self._open_pipes:
            receiver.shell_closed()
        elif self.exited.is_set():
            receiver.shell_exited()

    async def drain(self) -> None:
        await self._writable.wait()


class _PipesDirect:
    """The shell's pipes, read and written by a synchronous caller (see DirectIO)."""

    def __init__(self, stdin_fd: int, readers: dict[int, int],
                 protocol: _ShellProcessProtocol) -> None:
        self._stdin = stdin_fd
        self._readers = readers  # fd -> stream
        self._protocol = protocol
        self._poller = select.poll()
        for fd in readers:
            self._poller.register(fd, select.POLLIN)

    def write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._stdin, view):]
            except BlockingIOError:  # the pipe is full: the shell is still reading
                select.select([], [self._stdin], [], 1.0)
            except BrokenPipeError as exc:
                raise ConnectionResetError("the shell's input is closed") from exc

    def wait_and_read(self, timeout: float) -> None:
        for fd, _events in self._poller.poll(timeout * 1000):
            stream = self._readers.get(fd)
            if stream is None:
                continue
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if data:
                self._protocol.pipe_data_received(stream, data)
            else:  # end of this pipe: the loop's transport sees it too when it resumes
                self._poller.unregister(fd)
                del self._readers[fd]
                self._protocol.pipe_connection_lost(stream, None)


class LocalShellTransport:
    """A shell subprocess in its own session, with pipes for stdin/stdout/stderr."""

    def __init__(self, transport: asyncio.SubprocessTransport, protocol: _ShellProcessProtocol,
                 shell_name: str, tag: str = "") -> None:
        self._transport = transport
        self._protocol = protocol
        self._tag = tag
        self.shell_name = shell_name
        self.pid: int = transport.get_pid()
        stdin = transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        self._stdin = stdin

    @classmethod
    async def spawn(cls, cwd: Path, env: dict[str, str],
                    wrapper: Sequence[str] = ()) -> LocalShellTransport:
        """Start the shell in ``cwd``; ``env[TAG_VARIABLE]``, if set, tags its descendants.

        ``wrapper`` is a command the shell runs under (``bwrap ... --``: the bubblewrap
        sandbox of :mod:`pygent.runtime.bwrap`); its process is the one this holds.
        """
        # Which shell SHELL_LAUNCH will exec: bash when it is on the sandbox's PATH.
        is_bash = shutil.which("bash", path=env.get("PATH")) is not None
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.subprocess_exec(
            _ShellProcessProtocol,
            *wrapper,
            "/bin/sh",
            "-c",
            SHELL_LAUNCH,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(cwd),
            env=env,
            start_new_session=True,  # its own session: we can find and kill its children
        )
        return cls(transport, protocol, "bash" if is_bash else "sh", env.get(TAG_VARIABLE, ""))

    def attach(self, receiver: ShellReceiver) -> None:
        self._protocol.attach(receiver)

    def write(self, data: bytes) -> None:
        if self._stdin.is_closing():
            raise ConnectionResetError("the shell's input is closed")
        self._stdin.write(data)

    async def drain(self) -> None:
        await self._protocol.drain()

    def alive(self) -> bool:
        return self._transport.get_returncode() is None

    def enter_direct(self) -> _PipesDirect | None:
        if self._stdin.is_closing() or self._stdin.get_write_buffer_size():
            return None  # queued input must go first, in order
        readers: dict[int, int] = {}
        for stream in (STDOUT, STDERR):
            pipe = self._transport.get_pipe_transport(stream)
            if isinstance(pipe, asyncio.ReadTransport) and not pipe.is_closing():
                pipe.pause_reading()
                readers[pipe.get_extra_info("pipe").fileno()] = stream
        stdin_fd = self._stdin.get_extra_info("pipe").fileno()
        return _PipesDirect(stdin_fd, readers, self._protocol)

    def leave_direct(self) -> None:
        for stream in (STDOUT, STDERR):
            pipe = self._transport.get_pipe_transport(stream)
            if isinstance(pipe, asyncio.ReadTransport) and not pipe.is_closing():
                pipe.resume_reading()

    async def kill_children(self) -> None:
        sid = self.pid
        if sys.platform.startswith("linux"):
            # A few passes: a dying parent can fork once more between scan and kill.
            for _ in range(5):
                members = set(_session_members(sid))
                if self._tag:  # processes that left the session (setsid, daemons)
                    members.update(tagged_processes(self._tag, exclude=sid))
                if not members:
                    break
                for pid in members:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                await asyncio.sleep(0.01)
        else:  # pragma: no cover - non-Linux hosts
            proc = await asyncio.create_subprocess_exec("pkill", "-KILL", "-s", str(sid))
            await proc.wait()

    async def close(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            await self.kill_children()
            with contextlib.suppress(ProcessLookupError):
                self._transport.kill()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._protocol.exited.wait(), 5)
        self._transport.close()


class LocalBackend:
    """Runs commands on the host in ``workspace`` through a persistent shell."""

    kind = "local"

    def __init__(self, workspace: Path, *, extra_env: dict[str, str] | None = None,
                 output_limit: int = 64 * 1024 * 1024) -> None:
        self.workspace = workspace
        self._env = sandbox_environment(extra_env, host=True, home=str(workspace))
        self.tag = secrets.token_hex(8)
        self._env[TAG_VARIABLE] = self.tag
        self._shell = PersistentShell(
            self._spawn, initial_cwd=str(workspace), output_limit=output_limit
        )
        self._watcher: asyncio.subprocess.Process | None = None
        self._lifeline: int | None = None  # write end of the watcher's pipe
        # A command can read its parent's /proc/PID/environ: take the secrets this
        # process was started with out of it (os.environ keeps them for Pygent).
        scrub_exec_environ()

    def describe(self) -> str:
        return "local"

    async def _spawn(self) -> LocalShellTransport:
        return await LocalShellTransport.spawn(self.workspace, self._env)

    async def start(self) -> None:
        if sys.platform.startswith("linux") and self._watcher is None:
            await self._start_watcher()
        await self._shell.start()

    async def _start_watcher(self) -> None:
        """Start the process that kills this backend's leftovers if Pygent dies."""
        read_end, write_end = os.pipe()  # both close-on-exec; the watcher gets read_end
        try:
            self._watcher = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", _WATCHER, "pygent-watcher", f"{TAG_VARIABLE}={self.tag}",
                stdin=read_end, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to Pygent's group must not stop it
                env={"PATH": "/usr/bin:/bin"},
            )
        except OSError as exc:  # no /bin/sh: the close-time kill still works
            log.warning("could not start the local clean-up watcher: %s", exc)
            os.close(write_end)
        else:
            self._lifeline = write_end
        finally:
            os.close(read_end)

    async def run(self, cmd: str, *, timeout: float | None,
                  on_output: OutputCallback | None = None) -> CommandResult:
        return await self._shell.run(cmd, timeout=timeout, on_output=on_output)

    async def prepare_direct(self) -> bool:
        """On the loop: set up the synchronous fast path (see :meth:`run_direct`)."""
        return await self._shell.prepare_direct()

    def run_direct(self, cmd: str, *, timeout: float | None, on_output: OutputCallback | None,
                   budget: float) -> CommandResult | Running | None:
        """The synchronous fast path: see :meth:`PersistentShell.run_direct`."""
        return self._shell.run_direct(cmd, timeout=timeout, on_output=on_output, budget=budget)

    async def finish_handover(self, running: Running) -> CommandResult:
        return await self._shell.finish_handover(running)

    async def close(self) -> None:
        await self._shell.close()
        if sys.platform.startswith("linux"):
            # Background jobs and daemons the commands left (`server &`, `setsid x`).
            for pid in tagged_processes(self.tag):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        watcher, self._watcher = self._watcher, None
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        if watcher is not None:
            with contextlib.suppress(ProcessLookupError):
                watcher.kill()  # nothing left for it to do
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(watcher.wait(), 5)
