"""The runtime contract: what a sandbox backend (docker, local, fake) must provide.

A backend is shaped like a transport: start it, run commands in it, close it.
File operations do not go through the backend: the workspace is a host directory
(bind-mounted at ``/workspace`` in Docker mode) and :mod:`pygent.runtime.workspace`
reads and writes it safely from the host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

#: Called with (stream, text) as a command produces output; stream is "stdout" or "stderr".
OutputCallback = Callable[[str, str], None]


@dataclass(frozen=True)
class CommandResult:
    """What one command did. ``exit_code`` is None when it never finished."""

    command: str
    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    cancelled: bool = False
    truncated: bool = False  # output over the cap: head and tail kept, command killed
    output_bytes: int = 0
    duration: float = 0.0
    note: str = ""  # e.g. "the shell was restarted" or "sandbox container was recreated"

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.cancelled)

    @property
    def output(self) -> str:
        """stdout then stderr, as a person reading a terminal expects."""
        if self.stdout and self.stderr:
            sep = "" if self.stdout.endswith("\n") else "\n"
            return self.stdout + sep + self.stderr
        return self.stdout or self.stderr

    def format(self) -> str:
        """The upstream text form: the command, its output, then any status line."""
        text = f"$ {self.command}\n{self.output}"
        status = self.status_line()
        if status:
            if not text.endswith("\n"):
                text += "\n"
            text += status
        return text

    def status_line(self) -> str:
        parts = []
        if self.timed_out:
            parts.append(
                f"[timed out after {self.duration:.0f}s: the command and its children were killed]"
            )
        elif self.cancelled:
            parts.append("[cancelled: the command and its children were killed]")
        elif self.exit_code not in (0, None):
            parts.append(f"[exit code {self.exit_code}]")
        if self.truncated:
            parts.append(
                f"[output truncated: {self.output_bytes} bytes in total; head and tail kept]"
            )
        if self.note:
            parts.append(f"[{self.note}]")
        return "\n".join(parts)


#: Stream numbers, as Docker's multiplexed stream frames and file descriptors number them.
STDOUT = 1
STDERR = 2


class ShellReceiver(Protocol):
    """Where a :class:`ShellTransport` delivers the shell's output, as it arrives.

    Called on the event loop, straight from the transport's protocol callbacks (no
    reader task in between): this is the per-command hot path.
    """

    def shell_output(self, stream: int, data: bytes) -> None:
        """``data`` arrived on ``stream`` (:data:`STDOUT` or :data:`STDERR`)."""

    def shell_closed(self) -> None:
        """The shell's output ended: it exited or its connection was lost."""

    def shell_exited(self) -> None:
        """The shell process exited; its last output may still trail (a background
        job can hold its pipes open), so the receiver decides when to stop waiting."""


class DirectIO(Protocol):
    """Blocking access to a shell transport from a thread that is not the loop's.

    The synchronous API's fast path (``Runtime.run``) uses it so that a command costs
    one wake-up of the calling thread instead of hand-offs between threads. While it
    is handed out the event loop does not read the transport; output still goes to
    the transport's receiver, fed by the calling thread.
    """

    def write_all(self, data: bytes) -> None:
        """Write all of ``data`` to the shell's input, blocking as needed.

        Raises:
            ConnectionError: the shell's input is closed.
        """

    def wait_and_read(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for output and feed what came to the receiver
        (the end of the output too)."""


class ShellTransport(Protocol):
    """A running shell process: bytes in, output pushed to a :class:`ShellReceiver`.

    Implemented by a local subprocess and by a Docker exec socket; the persistent
    shell protocol in :mod:`pygent.runtime.shell` runs on top of either.
    """

    #: "bash" or "sh": what the transport started.
    shell_name: str

    def attach(self, receiver: ShellReceiver) -> None:
        """Deliver all output from now on (and any received so far) to ``receiver``."""

    def write(self, data: bytes) -> None:
        """Queue bytes for the shell's stdin without waiting.

        Raises:
            ConnectionError: the shell's input is closed.
        """

    async def drain(self) -> None:
        """Wait until queued input is below the transport's high-water mark."""

    def alive(self) -> bool:
        """True while the shell process runs."""

    async def kill_children(self) -> None:
        """Kill every process the shell started (their whole process groups and
        sessions), leaving the shell itself alive."""

    async def close(self) -> None:
        """Kill the shell and everything under it; idempotent."""

    def enter_direct(self) -> DirectIO | None:
        """On the loop: stop reading and hand out blocking I/O (None if not possible now)."""

    def leave_direct(self) -> None:
        """On the loop: take the I/O back and read it again."""


class Backend(Protocol):
    """A sandbox backend. All methods run on the runtime's own event loop."""

    kind: str  # "docker" | "local" | "fake"
    workspace: Path  # host directory holding the workspace

    def describe(self) -> str:
        """A short label for banners: ``Docker (python:3.12-slim)`` or ``local``."""

    async def start(self) -> None:
        """Make the sandbox ready (create the container, start the shell)."""

    async def run(
        self,
        cmd: str,
        *,
        timeout: float | None,
        on_output: OutputCallback | None = None,
    ) -> CommandResult:
        """Run one command. Cancelling the awaiting task kills the command."""

    async def close(self) -> None:
        """Stop everything this backend started; idempotent."""


class DirectBackend(Backend, Protocol):
    """A backend with the synchronous fast path (local and Docker; see ``Runtime.run``)."""

    async def prepare_direct(self) -> bool:
        """On the loop: make :meth:`run_direct` possible; False if it cannot be now."""

    def run_direct(self, cmd: str, *, timeout: float | None,
                   on_output: OutputCallback | None, budget: float) -> object:
        """From another thread: a :class:`CommandResult` if the command ended within
        ``budget`` seconds, None if not set up, else a hand-over for
        :meth:`finish_handover`."""

    async def finish_handover(self, item: Any) -> CommandResult:
        """On the loop: finish what :meth:`run_direct` handed over."""
