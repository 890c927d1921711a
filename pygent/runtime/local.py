"""The local backend: the persistent shell runs on the host, in the workspace directory.

There is no isolation here, which is why the front ends ask before every command in
local mode. What the host can still enforce is enforced: an allow-listed environment
(no API keys), stdin from /dev/null, a process-group kill on timeout and cancel, and
capped output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

from pygent.runtime.base import CommandResult, OutputCallback
from pygent.runtime.sandbox_env import sandbox_environment
from pygent.runtime.shell import PersistentShell


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


class LocalShellTransport:
    """A shell subprocess in its own session, with pipes for stdin/stdout/stderr."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        self.stdout: asyncio.StreamReader = proc.stdout
        self.stderr: asyncio.StreamReader = proc.stderr

    @classmethod
    async def spawn(cls, cwd: Path, env: dict[str, str]) -> LocalShellTransport:
        shell = shutil.which("bash") or "/bin/sh"
        argv = [shell, "--noprofile", "--norc"] if shell.endswith("bash") else [shell]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(cwd),
            env=env,
            start_new_session=True,  # its own session: we can find and kill its children
            limit=1 << 20,
        )
        return cls(proc)

    async def write(self, data: bytes) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(data)
        await self._proc.stdin.drain()

    def alive(self) -> bool:
        return self._proc.returncode is None

    async def kill_children(self) -> None:
        sid = self._proc.pid
        if sys.platform.startswith("linux"):
            # A few passes: a dying parent can fork once more between scan and kill.
            for _ in range(5):
                members = _session_members(sid)
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
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            await self.kill_children()
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._proc.wait(), 5)


class LocalBackend:
    """Runs commands on the host in ``workspace`` through a persistent shell."""

    kind = "local"

    def __init__(self, workspace: Path, *, extra_env: dict[str, str] | None = None,
                 output_limit: int = 64 * 1024 * 1024) -> None:
        self.workspace = workspace
        self._env = sandbox_environment(extra_env, host=True, home=str(workspace))
        self._shell = PersistentShell(
            self._spawn, initial_cwd=str(workspace), output_limit=output_limit
        )

    def describe(self) -> str:
        return "local"

    async def _spawn(self) -> LocalShellTransport:
        return await LocalShellTransport.spawn(self.workspace, self._env)

    async def start(self) -> None:
        await self._shell.start()

    async def run(self, cmd: str, *, timeout: float | None,
                  on_output: OutputCallback | None = None) -> CommandResult:
        return await self._shell.run(cmd, timeout=timeout, on_output=on_output)

    async def close(self) -> None:
        await self._shell.close()
