"""The persistent shell where /dev/fd cannot be opened (some minimal containers).

SHELL_LAUNCH then falls back to reading commands from stdin, and each command must get
``</dev/null`` of its own. A socket as the shell's stdin makes ``/dev/fd/3`` unopenable
(ENXIO) on Linux, which reproduces that case with a real bash.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pygent.runtime.base import STDERR, STDOUT, ShellReceiver
from pygent.runtime.shell import SHELL_LAUNCH, PersistentShell

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")


class SocketStdinShell:
    """A real shell whose stdin is a socket; output pushed to the receiver by two tasks."""

    shell_name = "bash"

    def __init__(self, proc: asyncio.subprocess.Process, sock: socket.socket) -> None:
        self._proc, self._sock = proc, sock
        self._pumps: list[asyncio.Task[None]] = []

    @classmethod
    async def spawn(cls, cwd: Path) -> SocketStdinShell:
        ours, theirs = socket.socketpair()
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", SHELL_LAUNCH, stdin=theirs.fileno(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=cwd)
        theirs.close()
        return cls(proc, ours)

    def attach(self, receiver: ShellReceiver) -> None:
        async def pump(reader: asyncio.StreamReader, stream: int) -> None:
            while chunk := await reader.read(65536):
                receiver.shell_output(stream, chunk)
            receiver.shell_closed()

        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._pumps = [asyncio.ensure_future(pump(self._proc.stdout, STDOUT)),
                       asyncio.ensure_future(pump(self._proc.stderr, STDERR))]

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    async def drain(self) -> None:
        pass

    def alive(self) -> bool:
        return self._proc.returncode is None

    async def kill_children(self) -> None:
        pass

    async def close(self) -> None:
        if self._proc.returncode is None:
            self._proc.kill()
        await self._proc.wait()
        for task in self._pumps:
            task.cancel()
        self._sock.close()

    def enter_direct(self) -> None:
        return None

    def leave_direct(self) -> None:
        pass


async def test_without_dev_fd_commands_still_get_eof_on_stdin(tmp_path: Path) -> None:
    async def spawn() -> SocketStdinShell:
        return await SocketStdinShell.spawn(tmp_path)

    shell = PersistentShell(spawn, initial_cwd=str(tmp_path))
    try:
        await shell.start()
        probe = await shell.run('echo "$0"', timeout=10)
        assert probe.stdout.strip() in ("bash", "/bin/sh", "sh")  # read from stdin, not /dev/fd/3
        # Without its own </dev/null, `cat` would read (and eat) the next command.
        result = await shell.run("cat; echo after-cat", timeout=10)
        assert result.stdout == "after-cat\n" and not result.timed_out
        await shell.run("mkdir -p sub && cd sub && export X=kept", timeout=10)
        assert (await shell.run("echo $X; pwd", timeout=10)).stdout == f"kept\n{tmp_path}/sub\n"
    finally:
        await shell.close()
