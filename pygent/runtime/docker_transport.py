"""A shell inside a Docker container, reached through a Docker exec socket (a ShellTransport).

One ``docker exec`` starts the shell (bash when the image has it, else sh) with
stdin attached; its hijacked HTTP connection carries stdin one way and Docker's
multiplexed stdout/stderr frames (8-byte header: stream, 0, 0, 0, big-endian
length) the other. The frames are split straight into two ``asyncio.StreamReader``
objects from the socket's protocol callback, so a command costs a socket round
trip, not a ``docker exec`` (about 0.05 ms against 20-140 ms).

Killing a command's processes needs a second process in the container, because the
shell is busy. A *killer* shell is started once per transport, beside the shell (the
transport is ready when both are), and then only reads requests on its stdin: it scans
``/proc`` with shell builtins alone, so it still works when a fork bomb has used up the
pids limit (a new ``docker exec`` could not even start then). It stops everything it
may signal (``kill -STOP -1``), resumes the shell, then SIGKILLs every process except
PID 1 (init), the shell and itself. The container's keeper process runs under another
uid, so neither the killer nor a user's ``kill -9 -1`` can take the container down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from typing import TYPE_CHECKING, Any

from pygent.errors import RuntimeUnavailable, SandboxError
from pygent.runtime.base import STDERR, STDOUT, DirectIO, ShellReceiver
from pygent.runtime.docker_engine import import_docker
from pygent.runtime.shell import SHELL_LAUNCH

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

#: bash when the image has it (``cd``/``export`` behave as users expect), else POSIX sh,
#: reading its commands from /dev/fd/3 (see :data:`pygent.runtime.shell.SHELL_LAUNCH`).
SHELL_COMMAND = ["/bin/sh", "-c", SHELL_LAUNCH]

#: Created by the killer when its Pygent is gone (see KILLER_SCRIPT); the keeper exits.
OWNER_GONE = "/dev/shm/.pygent-owner-gone"

#: The killer: builtins only (no fork), so it works with the pids limit exhausted.
#: ``k PID`` kills everything but PID 1, PID and itself; ``x`` spares only itself, then exits.
#: End of input without ``x`` means Pygent is gone (killed, crashed): it kills every
#: process the commands left and creates OWNER_GONE, so the keeper exits and the
#: container stops within seconds instead of running on until the next reaper.
#: With PYGENT_OWNER_GRACE=N (remote engines, whose connection may drop and come back) it
#: first waits up to N seconds for a newer killer (a reconnected Pygent's, registered in
#: /dev/shm): then the container stays up for it.
KILLER_SCRIPT = r"""
exec 2>/dev/null
: >/dev/shm/.pygent-killer-$$
k() {
  kill -STOP -1; kill -STOP -1
  [ "$1" -gt 0 ] && kill -CONT "$1"
  i=0
  while [ "$i" -lt 10 ]; do
    n=0
    for f in /proc/[0-9]*/stat; do
      p=${f#/proc/}; p=${p%/stat}
      case $p in 1|$$|$1) continue ;; esac
      read -r l <"$f" || continue
      s=${l##*") "}; s=${s%% *}
      case $s in Z|X|x) continue ;; esac
      kill -9 "$p" && n=$((n+1))
    done
    [ "$n" -eq 0 ] && break
    i=$((i+1))
  done
  [ "$1" -gt 0 ] && kill -CONT "$1"
}
while read -r cmd arg; do
  case $cmd in
    k) k "$arg"; echo ok ;;
    x) k 0; rm -f /dev/shm/.pygent-killer-$$; echo ok; exit 0 ;;
    p) echo ok ;;
  esac
done
k 0
rm -f /dev/shm/.pygent-killer-$$
i=0
while [ "$i" -lt "${PYGENT_OWNER_GRACE:-0}" ]; do
  for f in /dev/shm/.pygent-killer-*; do
    p=${f##*-}
    [ -d "/proc/$p" ] && [ "$p" != "$$" ] && exit 0
  done
  sleep 1
  i=$((i+1))
done
: >@OWNER_GONE@
""".replace("@OWNER_GONE@", OWNER_GONE)

#: Bytes an :class:`Inbox` keeps per stream (the killer's answers, a broken shell's junk).
INBOX_LIMIT = 1 << 20
HANDSHAKE_TIMEOUT = 30.0
#: How often a synchronous caller waiting on the socket looks at the clock, seconds.
DIRECT_WAKE = 0.02
#: How long a synchronous write may wait for the shell to read its input, seconds.
DIRECT_SEND_TIMEOUT = 5.0
KILL_TIMEOUT = 10.0
_READY = b"__PYGENT_READY:"


class Inbox:
    """A :class:`ShellReceiver` that buffers output for small request/answer exchanges
    (the handshake, the killer); the persistent shell replaces it with its own."""

    def __init__(self) -> None:
        self.buffers: dict[int, bytearray] = {STDOUT: bytearray(), STDERR: bytearray()}
        self.closed = False
        self._changed = asyncio.Event()

    def shell_output(self, stream: int, data: bytes) -> None:
        buf = self.buffers.get(stream)
        if buf is not None and len(buf) < INBOX_LIMIT:
            buf += data[: INBOX_LIMIT - len(buf)]
            self._changed.set()

    def shell_closed(self) -> None:
        self.closed = True
        self._changed.set()

    def shell_exited(self) -> None:
        pass  # an exec's connection closes when its process is done: shell_closed follows

    async def readline(self, stream: int = STDOUT) -> bytes:
        """The next line from ``stream``; what is left (maybe b"") once it closed."""
        buf = self.buffers[stream]
        while True:
            idx = buf.find(b"\n")
            if idx >= 0:
                line = bytes(buf[: idx + 1])
                del buf[: idx + 1]
                return line
            if self.closed:
                line = bytes(buf)
                buf.clear()
                return line
            self._changed.clear()
            await self._changed.wait()

    async def read_all(self, stream: int) -> bytes:
        """Everything ``stream`` sent until it closed."""
        while not self.closed:
            self._changed.clear()
            await self._changed.wait()
        return bytes(self.buffers[stream])


class _DemuxProtocol(asyncio.Protocol):
    """Splits Docker's multiplexed stream frames and hands each payload to a receiver."""

    def __init__(self, receiver: ShellReceiver, early: bytes = b"") -> None:
        self._early = early  # read before the socket was handed over: goes first
        self.receiver = receiver
        self._header = bytearray()
        self._kind = 0
        self._remaining = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._early:
            early, self._early = self._early, b""
            self.data_received(early)

    def data_received(self, data: bytes) -> None:
        pos, size = 0, len(data)
        receiver = self.receiver
        # Docker sends a frame per write of the command (4 KiB for most programs); the
        # payloads of one stream in a row within a read go on as one chunk: one parse and
        # one output event per read, not per frame. Stream changes keep their order.
        run: list[bytes] = []
        run_kind = STDOUT
        while pos < size:
            if self._remaining:
                n = min(self._remaining, size - pos)
                # 1 stdout, 2 stderr; 0 (stdin echo) and anything else is dropped.
                if self._kind == STDOUT or self._kind == STDERR:
                    if run and run_kind != self._kind:
                        receiver.shell_output(run_kind, b"".join(run))
                        run = []
                    run_kind = self._kind
                    run.append(data if (pos == 0 and n == size) else data[pos : pos + n])
                pos += n
                self._remaining -= n
                continue
            if not self._header and size - pos >= 8:
                self._kind = data[pos]
                self._remaining = int.from_bytes(data[pos + 4 : pos + 8], "big")
                pos += 8
                continue
            need = 8 - len(self._header)
            self._header += data[pos : pos + need]
            pos += need
            if len(self._header) == 8:
                self._kind = self._header[0]
                self._remaining = int.from_bytes(self._header[4:8], "big")
                self._header.clear()
        if run:
            receiver.shell_output(run_kind, run[0] if len(run) == 1 else b"".join(run))

    def switch(self, receiver: ShellReceiver) -> None:
        self.receiver = receiver
        if self.closed:
            receiver.shell_closed()

    def eof_received(self) -> bool:
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()
        self._drained.set()

    def _finish(self) -> None:
        if not self.closed:
            self.closed = True
            self.receiver.shell_closed()

    def pause_writing(self) -> None:
        self._drained.clear()

    def resume_writing(self) -> None:
        self._drained.set()

    async def drain(self) -> None:
        if not self._drained.is_set():
            await self._drained.wait()


class _SocketDirect:
    """The exec socket, read and written by a synchronous caller (see DirectIO): the
    same frame parser and receiver as on the loop, fed from blocking calls.

    While handed out the socket is blocking with a short receive timeout, so a wait is
    one ``recv`` system call rather than ``poll`` then ``recv``: system calls are the
    larger part of a command's cost here. :meth:`release` makes it non-blocking again
    before the loop reads it.
    """

    def __init__(self, sock: socket.socket, protocol: _DemuxProtocol) -> None:
        self._sock = sock
        self._protocol = protocol
        sock.setblocking(True)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(DIRECT_WAKE))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(DIRECT_SEND_TIMEOUT))

    def release(self) -> None:
        with contextlib.suppress(OSError):  # already closed: nothing to give back
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(0))
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(0))
            self._sock.setblocking(False)

    def write_all(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except BlockingIOError as exc:  # SO_SNDTIMEO: the shell stopped reading
            raise ConnectionResetError("the sandbox shell is not reading its input") from exc
        except OSError as exc:
            raise ConnectionResetError(f"the exec connection to the sandbox broke: {exc}") from exc

    def wait_and_read(self, timeout: float) -> None:
        # Returns within DIRECT_WAKE at most (the receive timeout); the caller keeps time.
        try:
            data = self._sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self._protocol.data_received(data)
        else:
            self._protocol.eof_received()


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def _hijack_exec(api: Any, exec_id: str) -> tuple[socket.socket, bytes]:
    """Start an exec with stdin attached; return its raw socket and any bytes already read.

    ``exec_start(socket=True)`` alone would drop bytes that http.client buffered past
    the 101 response headers (an early error message), so the request is made the
    same way the SDK makes it and the response's buffer is drained here.
    """
    try:
        res = api._post_json(
            api._url("/exec/{0}/start", exec_id),
            headers={"Connection": "Upgrade", "Upgrade": "tcp"},
            data={"Tty": False, "Detach": False},
            stream=True,
        )
        api._raise_for_status(res)
        fp = res.raw._fp.fp
        raw_sock = fp.raw._sock
    except AttributeError:  # a different SDK layout: fall back to the public call
        got = api.exec_start(exec_id, socket=True)
        raw_sock = getattr(got, "_sock", got)
        return raw_sock.dup(), b""
    if isinstance(raw_sock, ssl.SSLSocket):
        res.close()
        raise RuntimeUnavailable(
            "a Docker engine reached over TLS is not supported for the sandbox shell",
            hint="use the local socket (unset DOCKER_HOST) or an SSH tunnel to it",
        )
    raw_sock.setblocking(False)
    early = b""
    with contextlib.suppress(OSError, ValueError):
        early = fp.peek(1 << 16) or b""
    sock = raw_sock.dup()  # ours alone: closing the HTTP response must not close it
    with contextlib.suppress(OSError):  # best effort: only our dup of the socket matters
        res.close()
    return sock, early


class ExecStream:
    """One process started with ``docker exec`` and stdin attached."""

    def __init__(
        self,
        client: docker.DockerClient,
        exec_id: str,
        transport: asyncio.Transport,
        protocol: _DemuxProtocol,
        sock: socket.socket,
    ) -> None:
        self._client = client
        self.exec_id = exec_id
        self._transport = transport
        self._protocol = protocol
        self._sock = sock  # the transport's socket, for the synchronous fast path
        self._direct: _SocketDirect | None = None
        #: Output lands here until :meth:`attach` hands the stream to another receiver.
        self.inbox = protocol.receiver if isinstance(protocol.receiver, Inbox) else Inbox()

    @classmethod
    async def open(
        cls,
        client: docker.DockerClient,
        container_id: str,
        cmd: list[str],
        *,
        user: str,
        workdir: str = "/workspace",
        environment: dict[str, str] | None = None,
    ) -> ExecStream:
        """Create and start the exec (in a thread: the SDK blocks) and attach to it."""

        def start() -> tuple[str, socket.socket, bytes]:
            exec_id = client.api.exec_create(
                container_id,
                cmd,
                stdin=True,
                stdout=True,
                stderr=True,
                tty=False,
                user=user,
                workdir=workdir,
                environment=environment or {},
            )["Id"]
            sock, early = _hijack_exec(client.api, exec_id)
            return exec_id, sock, early

        exec_id, sock, early = await asyncio.to_thread(start)
        loop = asyncio.get_running_loop()
        inbox = Inbox()
        try:
            if sock.family == socket.AF_UNIX:
                transport, protocol = await loop.create_unix_connection(
                    lambda: _DemuxProtocol(inbox, early), sock=sock
                )
            else:
                transport, protocol = await loop.create_connection(
                    lambda: _DemuxProtocol(inbox, early), sock=sock
                )
        except BaseException:
            sock.close()
            raise
        return cls(client, exec_id, transport, protocol, sock)

    def attach(self, receiver: ShellReceiver) -> None:
        """Send all output from now on to ``receiver``, starting with what the inbox holds."""
        inbox = self.inbox
        for stream, buf in inbox.buffers.items():
            if buf:
                receiver.shell_output(stream, bytes(buf))
                buf.clear()
        self._protocol.switch(receiver)

    def write(self, data: bytes) -> None:
        if self._transport.is_closing():
            raise ConnectionResetError("the exec connection to the sandbox is closed")
        self._transport.write(data)

    async def drain(self) -> None:
        await self._protocol.drain()

    async def send(self, data: bytes) -> None:
        """Write and wait for the transport to take it."""
        self.write(data)
        await self.drain()

    def alive(self) -> bool:
        return not self._protocol.closed and not self._transport.is_closing()

    def enter_direct(self) -> _SocketDirect | None:
        """On the loop: stop reading the socket and hand it to a synchronous caller."""
        if not self.alive() or self._transport.get_write_buffer_size():
            return None  # queued input must go first, in order
        self._transport.pause_reading()
        self._direct = _SocketDirect(self._sock, self._protocol)
        return self._direct

    def leave_direct(self) -> None:
        direct, self._direct = self._direct, None
        if direct is not None:
            direct.release()
        if not self._transport.is_closing():
            self._transport.resume_reading()

    def close(self) -> None:
        self._transport.close()

    async def exit_code(self) -> int | None:
        """The exec's exit code once it finished (None while running or unknown)."""
        sdk = import_docker()
        try:
            info = await asyncio.to_thread(self._client.api.exec_inspect, self.exec_id)
        except (sdk.errors.DockerException, OSError) as exc:
            log.debug("cannot inspect exec %s: %s", self.exec_id[:12], exc)
            return None
        return None if info.get("Running") else info.get("ExitCode")


class DockerShellTransport:
    """The persistent shell in a container, plus its builtin-only killer."""

    def __init__(
        self,
        client: docker.DockerClient,
        container_id: str,
        shell: ExecStream,
        pid: int,
        shell_name: str,
        *,
        user: str,
        owner_grace: int = 0,
    ) -> None:
        self._client = client
        self._container_id = container_id
        self._owner_grace = owner_grace
        self._lost = False
        self._shell = shell
        self.pid = pid  # the shell's PID inside the container
        self.shell_name = shell_name  # "bash" or "sh"
        self._user = user
        self._killer: ExecStream | None = None
        self._killer_task: asyncio.Future[ExecStream] | None = None
        self._kill_lock = asyncio.Lock()
        self._closed = False
        self._aborted = False
        #: Set when a kill request failed: the backend then replaces the container.
        self.kill_failed = False

    @classmethod
    async def spawn(
        cls,
        client: docker.DockerClient,
        container_id: str,
        *,
        user: str,
        environment: dict[str, str],
        workdir: str = "/workspace",
        owner_grace: int = 0,
        prelude: str = "",
    ) -> DockerShellTransport:
        """Start the shell in ``container_id`` and wait until it answers.

        ``owner_grace``: seconds the container outlives a lost connection, waiting for
        Pygent to reconnect (remote engines); 0 stops it at once.
        ``prelude``: shell code run before the shell starts (limits the engine did not
        apply, see pygent.runtime.podman.shell_limits).

        Raises:
            SandboxError: the shell could not start (no /bin/sh, a broken image); the
                message carries what the shell printed and its exit code.
        """
        # The killer starts beside the shell, and the sandbox is ready only with both up:
        # it must exist before a fork bomb, and before Pygent can be killed with commands
        # left running (its end of input is what stops the container then).
        killer_task = asyncio.ensure_future(
            _open_killer(client, container_id, user=user, owner_grace=owner_grace))
        killer_task.add_done_callback(_retrieve)
        try:
            shell = await ExecStream.open(
                client, container_id, [*SHELL_COMMAND[:2], prelude + SHELL_COMMAND[2]],
                user=user, workdir=workdir, environment=environment,
            )
        except BaseException:
            _close_when_open(killer_task)
            raise
        try:
            pid, name = await asyncio.wait_for(_handshake(shell), HANDSHAKE_TIMEOUT)
            # A killer that cannot start now (no free pid) is started again when needed.
            await asyncio.wait([killer_task], timeout=HANDSHAKE_TIMEOUT)
        except asyncio.TimeoutError:
            shell.close()
            _close_when_open(killer_task)
            raise SandboxError(
                f"the sandbox shell did not answer within {HANDSHAKE_TIMEOUT:.0f} s"
            ) from None
        except BaseException:
            shell.close()
            _close_when_open(killer_task)
            raise
        transport = cls(client, container_id, shell, pid, name, user=user,
                        owner_grace=owner_grace)
        if killer_task.done() and not killer_task.cancelled() and not killer_task.exception():
            transport._killer = killer_task.result()
        else:  # still starting (or failed: _get_killer starts another when needed)
            transport._killer_task = asyncio.ensure_future(transport._open_killer(killer_task))
            transport._killer_task.add_done_callback(_retrieve)
        return transport

    async def _open_killer(self, opening: asyncio.Future[ExecStream] | None = None) -> ExecStream:
        """Start a killer (or finish ``opening``, the one started beside the shell) and
        keep it as this transport's."""
        self._killer = await (opening if opening is not None else _open_killer(
            self._client, self._container_id, user=self._user, owner_grace=self._owner_grace))
        return self._killer

    async def _get_killer(self) -> ExecStream:
        if self._killer is not None and self._killer.alive():
            return self._killer
        task = self._killer_task
        if task is not None and not task.done():
            return await asyncio.shield(task)
        if self._killer is not None:
            self._killer.close()
            self._killer = None
        # Gone (a user's `kill -9 -1` took it): start another; needs a free pid.
        self._killer_task = asyncio.ensure_future(self._open_killer())
        self._killer_task.add_done_callback(_retrieve)
        return await asyncio.shield(self._killer_task)

    def attach(self, receiver: ShellReceiver) -> None:
        self._shell.attach(receiver)

    def write(self, data: bytes) -> None:
        self._shell.write(data)

    async def drain(self) -> None:
        await self._shell.drain()

    def enter_direct(self) -> DirectIO | None:
        return None if self._closed else self._shell.enter_direct()

    def leave_direct(self) -> None:
        self._shell.leave_direct()

    def alive(self) -> bool:
        return not self._closed and self._shell.alive()

    def connection_lost(self) -> bool:
        """Both the shell's and the killer's connections ended, and not by our hand: the
        connection to the engine dropped (a shell's own `exit` leaves the killer's up)."""
        return self._lost if self._closed else self._lost_now()

    async def _killer_answers(self) -> bool:
        killer = self._killer
        if killer is None or not killer.alive():
            return False
        sdk = import_docker()
        async with self._kill_lock:
            try:
                await killer.send(b"p\n")
                line = await asyncio.wait_for(killer.inbox.readline(), 2.0)
            except (asyncio.TimeoutError, OSError, SandboxError, sdk.errors.DockerException):
                return False
        return line.strip() == b"ok"

    def _lost_now(self) -> bool:
        killer = self._killer
        return (not self._aborted and not self._shell.alive()
                and killer is not None and not killer.alive())

    async def kill_children(self) -> None:
        """Kill every process in the container except init, the keeper and the shell."""
        await self._kill(f"k {self.pid}\n")

    async def _kill(self, request: str) -> bool:
        sdk = import_docker()
        async with self._kill_lock:
            try:
                killer = await asyncio.wait_for(self._get_killer(), KILL_TIMEOUT)
                await killer.send(request.encode())
                line = await asyncio.wait_for(killer.inbox.readline(), KILL_TIMEOUT)
            except (sdk.errors.NotFound, ConnectionError) as exc:
                log.info("could not kill processes: the sandbox container is gone (%s)", exc)
                self.kill_failed = True
                return False
            except (asyncio.TimeoutError, OSError, SandboxError, sdk.errors.DockerException) as exc:
                log.warning("could not kill processes in the sandbox: %s", exc or type(exc))
                self.kill_failed = True
                return False
            if line.strip() != b"ok":
                log.info("the sandbox killer exited before answering (container gone?)")
                self.kill_failed = True
                return False
            return True

    async def exit_code(self) -> int | None:
        """The shell's exit code once it has exited (None while it runs or if unknown)."""
        return await self._shell.exit_code()

    def abort(self) -> None:
        """Drop the connections now without killing anything (the container is going away
        or its state is unknown); the shell's readers see EOF at once."""
        self._aborted = True
        self._shell.close()
        if self._killer is not None:
            self._killer.close()

    async def close(self) -> None:
        """Kill the shell and every process it left, then drop the connections."""
        if self._closed:
            return
        if not self._aborted and not self._shell.alive():
            # The shell's connection ended: did the killer's too (a dropped connection)?
            # Asked before the kill below, which would open a new killer.
            self._lost = not await self._killer_answers()
        self._closed = True
        if not self._aborted:
            await self._kill("x\n")
        self._shell.close()
        if self._killer is not None:
            self._killer.close()
        task = self._killer_task
        if task is not None and not task.done():
            task.cancel()


async def _handshake(shell: ExecStream) -> tuple[int, str]:
    """Ask the new shell for its PID; on EOF raise SandboxError with what it printed."""
    await shell.send(b'printf \'__PYGENT_READY:%s:%s\\n\' "$$" "${BASH_VERSION:+bash}"\n')
    junk = b""
    while True:
        line = await shell.inbox.readline()
        if not line:
            break
        if line.startswith(_READY):
            pid_text, _, name = line[len(_READY) :].decode().strip().partition(":")
            return int(pid_text), name or "sh"
        junk += line
    err = b""
    with contextlib.suppress(asyncio.TimeoutError):
        err = (await asyncio.wait_for(shell.inbox.read_all(STDERR), 2))[:4096]
    code = await shell.exit_code()
    text = (junk + err).decode("utf-8", errors="replace").strip()
    raise SandboxError(
        "the sandbox shell exited at once"
        + (f" (exit {code})" if code is not None else "")
        + (f": {text[:1000]}" if text else ""),
        hint="the image needs /bin/sh for this architecture; try PYGENT_IMAGE=python:3.12-slim",
    )


async def _open_killer(
    client: docker.DockerClient, container_id: str, *, user: str, owner_grace: int
) -> ExecStream:
    """Start the killer shell (see KILLER_SCRIPT) in the container."""
    return await ExecStream.open(
        client,
        container_id,
        ["/bin/sh", "-c", KILLER_SCRIPT],
        user=user,
        workdir="/",
        environment={"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C",
                     "PYGENT_OWNER_GRACE": str(owner_grace)},
    )


def _close_when_open(task: asyncio.Future[ExecStream]) -> None:
    """Close the killer a failed start opened (or will open)."""
    def close(fut: asyncio.Future[ExecStream]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            fut.result().close()
    task.add_done_callback(close)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a background task's failure as seen (it is reported where it is awaited)."""
    if not fut.cancelled() and fut.exception() is not None:
        log.debug("sandbox killer did not start: %s", fut.exception())
