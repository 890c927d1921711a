"""Which Docker engine Pygent talks to, whether it can see this machine's folders, and the
ssh tunnel that reaches an engine named ``ssh://``.

The engine is the one the docker CLI would use: ``DOCKER_HOST`` (``unix://``, ``tcp://``
with ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``, ``ssh://user@host[:port]``), else the
current Docker context (``DOCKER_CONTEXT`` or ``docker context use``), else the local
socket. An ``ssh://`` engine is reached through ``ssh -L`` forwarding a private local unix
socket to the remote engine's socket: the SDK and the sandbox shell's exec socket then
work exactly as with a local engine, and ssh uses the user's own configuration and keys.
When ssh exits (a dropped connection), the tunnel starts it again with back-off, so the
next API call reconnects.

A remote engine cannot bind-mount the workspace: :func:`engine_sees_folders` finds out by
asking the engine to create (not start) a container with a bind mount of a fresh folder
made here; an engine on another machine (or in another mount namespace) answers "bind
source path does not exist". ``PYGENT_WORKSPACE_MODE`` (auto, mount, transfer) overrides.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pygent.errors import RuntimeUnavailable

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

#: How long ssh may take to set the tunnel up (seconds).
SSH_CONNECT_TIMEOUT = 20.0
#: Back-off between reconnection attempts of a dropped ssh tunnel (seconds).
SSH_RETRY = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class Endpoint:
    """Where the engine is: ``url`` as the docker CLI spells it, and its TLS settings."""

    url: str
    tls: Any = None  # a docker.tls.TLSConfig from a context, else None
    context: str | None = None

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0] if "://" in self.url else "unix"

    @property
    def local(self) -> bool:
        """A socket on this machine (``unix://``, ``npipe://``): it sees our folders."""
        return self.scheme in ("unix", "npipe")

    def describe(self) -> str:
        where = self.url if self.scheme != "ssh" else self.url.split("?", 1)[0]
        return f"{where} (context {self.context})" if self.context else where


def endpoint() -> Endpoint:
    """The engine the docker CLI would use here (see the module docstring)."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        return Endpoint(host)
    name = os.environ.get("DOCKER_CONTEXT")
    try:
        from docker.context import ContextAPI

        ctx = ContextAPI.get_context(name) if name else ContextAPI.get_current_context()
    except Exception as exc:  # noqa: BLE001 - a broken context store: say which, use the default
        if name:
            raise RuntimeUnavailable(
                f"the Docker context {name!r} cannot be read: {exc}",
                hint="check `docker context ls`, or unset DOCKER_CONTEXT",
            ) from exc
        ctx = None
    if ctx is None:
        if name:
            raise RuntimeUnavailable(
                f"there is no Docker context {name!r}", hint="check `docker context ls`"
            )
        return Endpoint("unix:///var/run/docker.sock")
    if ctx.Name == "default" or not ctx.Host:
        return Endpoint("unix:///var/run/docker.sock", context=None)
    return Endpoint(ctx.Host, tls=ctx.TLSConfig or None, context=ctx.Name)


# -- the ssh tunnel -------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """ssh gets SIGTERM when Pygent dies (even by SIGKILL): no tunnel outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setsid()


class SshTunnel:
    """``ssh -N -L LOCAL.sock:REMOTE.sock`` to an ``ssh://[user@]host[:port]`` engine,
    restarted when it exits until :meth:`close`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise RuntimeUnavailable(
                f"DOCKER_HOST {url!r} names no host", hint="use ssh://user@host[:port]"
            )
        self.url = url
        self.target = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname
        self.port = parts.port
        self._dir = tempfile.mkdtemp(prefix="pygent-ssh-")
        os.chmod(self._dir, 0o700)
        self.path = os.path.join(self._dir, "docker.sock")
        self.remote_socket = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._lock = threading.Lock()
        self.reconnects = 0
        self._watcher: threading.Thread | None = None

    def _ssh(self, *args: str) -> list[str]:
        ssh = shutil.which("ssh")
        if ssh is None:
            raise RuntimeUnavailable(
                f"DOCKER_HOST is {self.url} but there is no ssh client here",
                hint="install OpenSSH's client (apt-get install openssh-client)",
            )
        port = ["-p", str(self.port)] if self.port else []
        return [ssh, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(SSH_CONNECT_TIMEOUT)}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                *port, *args, self.target]

    def _find_remote_socket(self) -> str:
        """The engine socket on the remote machine: its DOCKER_HOST, else the default."""
        cmd = [*self._ssh(), 'echo "${DOCKER_HOST:-unix:///var/run/docker.sock}"']
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=SSH_CONNECT_TIMEOUT,
                                 stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeUnavailable(
                f"ssh to {self.target} did not answer within {SSH_CONNECT_TIMEOUT:.0f} s",
                hint=f"check `ssh {self.target} docker info`",
            ) from exc
        if out.returncode != 0:
            raise RuntimeUnavailable(
                f"ssh to {self.target} failed: {out.stderr.strip()[-300:] or out.returncode}",
                hint=f"check `ssh {self.target} docker info` (a key in ssh-agent or "
                "~/.ssh/config; Pygent runs ssh with BatchMode, it cannot ask for a password)",
            )
        host = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        if not host.startswith("unix://"):
            raise RuntimeUnavailable(
                f"the engine on {self.target} is not on a unix socket ({host})",
                hint="point DOCKER_HOST at that address directly (tcp:// with TLS)",
            )
        return host[len("unix://"):]

    def start(self) -> None:
        """Open the tunnel and wait until the local socket answers."""
        with self._lock:
            if not self.remote_socket:
                self.remote_socket = self._find_remote_socket()
            self._spawn()
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="pygent-ssh", daemon=True)
            self._watcher.start()

    def _spawn(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        cmd = self._ssh("-N", "-o", "ExitOnForwardFailure=yes", "-o", "StreamLocalBindUnlink=yes",
                        "-L", f"{self.path}:{self.remote_socket}")
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + SSH_CONNECT_TIMEOUT
        while not os.path.exists(self.path):
            if self._proc.poll() is not None:
                err = (self._proc.stderr.read() if self._proc.stderr else b"").decode(
                    "utf-8", "replace").strip()
                raise RuntimeUnavailable(
                    f"the ssh tunnel to {self.target} ended: {err[-300:] or self._proc.returncode}",
                    hint=f"check `ssh {self.target} docker info`",
                )
            if time.monotonic() > deadline:
                self._proc.kill()
                raise RuntimeUnavailable(
                    f"the ssh tunnel to {self.target} did not open within "
                    f"{SSH_CONNECT_TIMEOUT:.0f} s", hint=f"check `ssh {self.target} docker info`",
                )
            time.sleep(0.02)

    def _watch(self) -> None:
        """Restart ssh when it exits (a dropped connection), until closed."""
        attempt = 0
        while True:
            proc = self._proc
            if proc is not None:
                proc.wait()
            if self._closed:
                return
            delay = SSH_RETRY[min(attempt, len(SSH_RETRY) - 1)]
            log.warning("the ssh connection to the Docker engine on %s dropped; reconnecting "
                        "in %.1f s", self.target, delay)
            time.sleep(delay)
            if self._closed:
                return
            try:
                with self._lock:
                    self._spawn()
            except RuntimeUnavailable as exc:
                attempt += 1
                log.warning("reconnecting to %s: %s", self.target, exc.user_message())
                continue
            attempt = 0
            self.reconnects += 1
            log.info("reconnected to the Docker engine on %s", self.target)

    def drop(self) -> None:
        """Cut the connection now (tests; the watcher reconnects)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def close(self) -> None:
        self._closed = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self._dir, ignore_errors=True)


_tunnels: dict[str, SshTunnel] = {}
_tunnels_lock = threading.Lock()


def tunnel_for(url: str) -> SshTunnel:
    """The process's one tunnel to ``url`` (opened on first use)."""
    with _tunnels_lock:
        tunnel = _tunnels.get(url)
        if tunnel is None:
            tunnel = SshTunnel(url)
            tunnel.start()
            _tunnels[url] = tunnel
        return tunnel


def close_tunnels() -> None:
    with _tunnels_lock:
        tunnels = list(_tunnels.values())
        _tunnels.clear()
    for tunnel in tunnels:
        tunnel.close()
    with _tunnels_lock:
        relays = list(_relays.values())
        _relays.clear()
    for relay in relays:
        relay.close()


import atexit  # noqa: E402 - registered beside what it closes

atexit.register(close_tunnels)


# -- TLS engines -----------------------------------------------------------------------------


class TlsRelay:
    """A private local unix socket relaying to a ``tcp://`` engine over TLS.

    The sandbox shell hijacks an exec's HTTP connection and reads it from the event
    loop; a TLS socket the SDK opened cannot be handed to the loop. So, as for ssh, the
    SDK talks plain HTTP to a socket here and this relay speaks TLS (the client
    certificate, the CA) to the engine, one TLS connection per connection."""

    def __init__(self, url: str, tls: Any) -> None:
        import ssl

        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 2376
        if getattr(tls, "verify", False):
            context = ssl.create_default_context(cafile=getattr(tls, "ca_cert", None))
        else:  # DOCKER_TLS_VERIFY unset: encrypted, but the engine is not checked
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        cert = getattr(tls, "cert", None)
        if cert:
            context.load_cert_chain(*cert)
        self._context = context
        self._writers: set[asyncio.StreamWriter] = set()
        self._dir = tempfile.mkdtemp(prefix="pygent-tls-")
        os.chmod(self._dir, 0o700)
        self.path = os.path.join(self._dir, "docker.sock")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pygent-tls",
                                        daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_unix_server(self._serve, self.path), self._loop
        ).result(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            try:
                up_r, up_w = await asyncio.open_connection(
                    self.host, self.port, ssl=self._context, server_hostname=self.host
                )
            except OSError as exc:
                log.warning("could not reach the Docker engine at %s:%s over TLS: %s",
                            self.host, self.port, exc)
                writer.close()
                return
            self._writers.add(up_w)
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
            self._writers.discard(up_w)
        finally:
            self._writers.discard(writer)

    def close(self) -> None:
        async def shutdown() -> None:
            # End every relayed connection (its pipes then finish), rather than cancel
            # the tasks that serve them.
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.wait(tasks, timeout=2) if tasks else None

        with contextlib.suppress(Exception):  # closing anyway
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()
        shutil.rmtree(self._dir, ignore_errors=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
        else:
            writer.close()


_relays: dict[str, TlsRelay] = {}


def relay_for(url: str, tls: Any) -> TlsRelay:
    """The process's one TLS relay to ``url``."""
    with _tunnels_lock:
        relay = _relays.get(url)
        if relay is None:
            relay = _relays[url] = TlsRelay(url, tls)
        return relay


# -- clients --------------------------------------------------------------------------------


#: The API version each engine URL negotiated, so later clients skip ``GET /version``:
#: Podman answers it in ~0.3-0.6 s (it runs ``conmon --version`` and the OCI runtime's),
#: which a session start would otherwise pay twice.
_api_versions: dict[str, str] = {}


def make_client(sdk: Any, where: Endpoint, timeout: float) -> docker.DockerClient:
    """A (not yet checked) client for ``where``; ssh engines through the tunnel."""
    version = _api_versions.get(where.url, "auto")
    if where.scheme == "ssh":
        tunnel = tunnel_for(where.url)
        client = sdk.DockerClient(base_url=f"unix://{tunnel.path}", timeout=timeout, version=version)
    else:
        # DOCKER_TLS_VERIFY / DOCKER_CERT_PATH as the SDK reads them, or the context's files.
        tls = where.tls if where.context is not None else sdk.utils.kwargs_from_env().get("tls")
        if where.scheme == "tcp" and tls:
            relay = relay_for(where.url, tls)
            client = sdk.DockerClient(base_url=f"unix://{relay.path}", timeout=timeout,
                                      version=version)
        elif where.context is not None:
            client = sdk.DockerClient(base_url=where.url, tls=where.tls, timeout=timeout,
                                      version=version)
        else:
            client = sdk.from_env(timeout=timeout, version=version)  # DOCKER_HOST
    _api_versions[where.url] = client.api.api_version
    return client


# -- can the engine see our folders? -----------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _probe(url: str, image: str) -> bool:
    from pygent.runtime.docker_engine import connect, ensure_image, import_docker

    sdk = import_docker()
    client = connect()
    probe = tempfile.mkdtemp(prefix="pygent-probe-")
    try:
        ensure_image(client, image)
        host_config = client.api.create_host_config(
            mounts=[sdk.types.Mount("/probe", probe, type="bind", read_only=True)],
            network_mode="none",
        )
        try:
            cid = client.api.create_container(
                image, command=["true"], host_config=host_config,
                labels={"pygent.probe": "1"},
            )["Id"]
        except sdk.errors.APIError as exc:
            text = str(getattr(exc, "explanation", "") or exc)
            if "does not exist" in text and probe in text or "bind source path" in text:
                return False
            raise RuntimeUnavailable(
                f"could not ask the Docker engine at {url} whether it sees this machine's "
                f"folders: {text[:300]}",
                hint="set PYGENT_WORKSPACE_MODE=mount or transfer",
            ) from exc
        with contextlib.suppress(sdk.errors.DockerException):
            client.api.remove_container(cid, force=True)
        return True
    finally:
        os.rmdir(probe)
        client.close()


def engine_sees_folders(image: str) -> bool:
    """Whether the engine can bind-mount folders of this machine (cached per engine).

    A local socket is taken to see them; any other engine is asked (see the module
    docstring), which needs ``image`` present there."""
    where = endpoint()
    if where.local:
        return True
    return _probe(where.url, image)


def workspace_mode(setting: str, image: str) -> str:
    """``mount`` or ``transfer`` for a Docker sandbox, from ``PYGENT_WORKSPACE_MODE``."""
    if setting in ("mount", "transfer"):
        return setting
    return "mount" if engine_sees_folders(image) else "transfer"
