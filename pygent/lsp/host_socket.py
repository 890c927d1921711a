"""The session host's Unix socket: where it lives and who may use it.

Standard library only: ``pygent lsp --stdio`` checks for a host here before anything
heavy loads. The socket is ``host.sock`` in a folder private to the user
(``$XDG_RUNTIME_DIR/pygent``, else ``/tmp/pygent-$UID``; ``PYGENT_HOST_DIR``): the
folder must be a real directory owned by the user with mode 0700 (created so when
missing), the socket has mode 0600. A folder owned by someone else, or that others may
enter, is refused with :class:`HostDirError`: whoever controls it could stand in for
the host and see every prompt. ``host.lock`` beside it is held (``flock``) by the
running host and holds its pid, so two hosts never serve one socket and a socket file
left by a killed host is known to be stale.

A connection speaks LSP unless its first line is :data:`ACP_HELLO` (``pygent acp``
joining the host, :func:`join_acp`): the host then answers :data:`ACP_READY` and runs
the ACP agent for that connection itself, and ``pygent acp`` only copies bytes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

from pygent.errors import ConfigError

SOCKET_NAME = "host.sock"
LOCK_NAME = "host.lock"
#: The longest path a Unix socket can have on Linux (``sun_path``, with its NUL).
MAX_SOCKET_PATH = 107


class HostDirError(ConfigError):
    """The host folder is not private to this user (or cannot be made)."""


def socket_path(host_dir: Path) -> Path:
    return host_dir / SOCKET_NAME


def page_url_path(host_dir: Path) -> Path:
    """Where ``pygent serve --websocket`` keeps its chat page's address (with the token)."""
    return host_dir / "page.url"


def check_dir(host_dir: Path, *, create: bool = True) -> Path:
    """Make sure ``host_dir`` is a directory of this user's that nobody else may enter;
    creates it (mode 0700) when missing and ``create``. Returns it."""
    if create:
        try:
            host_dir.parent.mkdir(parents=True, exist_ok=True)
            host_dir.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise HostDirError(
                f"cannot create the host folder {host_dir}: {exc.strerror}"
            ) from None
    try:
        info = os.lstat(host_dir)
    except FileNotFoundError:
        raise HostDirError(f"the host folder {host_dir} does not exist") from None
    if not stat.S_ISDIR(info.st_mode):
        raise HostDirError(
            f"the host folder {host_dir} is not a directory (a symlink or a file)",
            hint="remove it, or set PYGENT_HOST_DIR to a folder of your own",
        )
    if info.st_uid != os.getuid():
        raise HostDirError(
            f"the host folder {host_dir} belongs to user id {info.st_uid}, not to you "
            f"({os.getuid()}): refusing to use it",
            hint="someone else may be waiting for your sessions there; set "
            "PYGENT_HOST_DIR (or XDG_RUNTIME_DIR) to a folder of your own",
        )
    if info.st_mode & 0o077:
        raise HostDirError(
            f"the host folder {host_dir} has mode {stat.S_IMODE(info.st_mode):04o}: others "
            "may enter it; refusing to use it",
            hint=f"chmod 700 {host_dir}",
        )
    path = socket_path(host_dir)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise HostDirError(
            f"the host socket path {path} is too long for a Unix socket",
            hint="set PYGENT_HOST_DIR to a shorter folder",
        )
    return host_dir


def connect(host_dir: Path, timeout: float = 2.0) -> socket.socket | None:
    """A connection to the running host, or None when none answers (no socket file, a
    stale one, or a folder that fails :func:`check_dir`: nothing to join there)."""
    path = socket_path(host_dir)
    try:
        if not path.exists():
            return None
    except OSError as exc:
        raise HostDirError(f"cannot look into the host folder {host_dir}: {exc.strerror}") from None
    check_dir(host_dir, create=False)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(os.fspath(path))
    except OSError:
        sock.close()
        return None
    sock.settimeout(None)
    return sock


def running_pid(host_dir: Path) -> int | None:
    """The pid of the host holding ``host.lock``, or None when no host holds it."""
    lock = host_dir / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            text = os.read(fd, 32).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else -1
        return None  # nobody holds it
    finally:
        os.close(fd)


def take_lock(host_dir: Path) -> int | None:
    """Hold ``host.lock`` for this process (the fd, kept open for the host's life), or
    None when another host holds it."""
    fd = os.open(host_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def wait_until_answers(host_dir: Path, timeout: float, alive: Any = None) -> bool:
    """Poll until the host socket answers (``alive()`` false: give up early)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock = connect(host_dir)
        if sock is not None:
            sock.close()
            return True
        if alive is not None and not alive():
            return False
        time.sleep(0.1)
    return False


# --- ACP connections --------------------------------------------------------------------------

#: The first bytes of an ACP connection (an LSP client's are ``Content-Length:``), followed
#: by the options of ``pygent acp`` as one JSON object and a newline.
ACP_HELLO = b"pygent-acp/1 "
#: The host's answer: it runs the ACP agent for this connection from the next byte on.
ACP_READY = b"pygent-acp/1 ready"
#: The host's answer when it cannot (the SDK missing in the host...): the reason follows.
ACP_REFUSED = b"pygent-acp/1 error "
#: The longest hello or answer line.
MAX_HELLO = 1 << 16


def join_acp(sock: socket.socket, options: dict[str, Any], timeout: float = 30.0) -> str | None:
    """Ask the host on ``sock`` to serve ACP on it with ``options``; None when it will
    (the next bytes are ACP frames both ways), else why not."""
    sock.settimeout(timeout)
    try:
        sock.sendall(ACP_HELLO + json.dumps(options).encode() + b"\n")
        line = b""
        while not line.endswith(b"\n"):  # a byte at a time: nothing after it is read here
            byte = sock.recv(1)
            if not byte:
                return "the session host closed the connection (a host too old to serve ACP?)"
            line += byte
            if len(line) > MAX_HELLO:
                return "the session host's answer is not an ACP answer"
    except TimeoutError:
        return f"the session host did not answer within {timeout:g}s (too old to serve ACP?)"
    except OSError as exc:
        return f"the session host's connection failed: {exc.strerror or exc}"
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(None)
    line = line.rstrip(b"\r\n")
    if line == ACP_READY:
        return None
    if line.startswith(ACP_REFUSED):
        return line[len(ACP_REFUSED) :].decode("utf-8", "replace")
    return "the session host's answer is not an ACP answer (a host too old to serve ACP?)"

