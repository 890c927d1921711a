"""The Docker backend: one hardened container per backend, a persistent shell inside it.

The workspace is bind-mounted at ``/workspace`` (or, for a copy-on-write session, an
overlay volume the engine mounts there: the user's folder read-only below, the session's
upper layer above, see :mod:`pygent.runtime.overlay`); everything else in the container is
read-only or a sized tmpfs, with no network, no capabilities, no new privileges,
resource limits, and the host user's uid:gid so workspace files stay the user's.
When the container dies, is removed or is paused under a command, the command
returns promptly with a note saying so, and the next command runs in a new
container on the same workspace (see docs/sandbox.md).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import io
import logging
import os
import secrets
import shutil
import tarfile
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pygent.errors import PygentError, RuntimeUnavailable, SandboxError
from pygent.runtime.base import CommandResult, OutputCallback
from pygent.runtime.docker_engine import (
    ProgressCallback,
    connect,
    container_logs,
    ensure_image,
    explain_engine_error,
    import_docker,
    is_connection_error,
    reap_orphans,
)
from pygent.runtime.docker_transport import OWNER_GONE, DockerShellTransport
from pygent.runtime.overlay import OverlayLayers
from pygent.runtime.ownership import LABEL_MANAGED, owner_alive, owner_labels
from pygent.runtime.podman import (
    EngineFlavour,
    host_config_extras,
    known_flavour,
    overlay_bind,
    overlay_defaults_problem,
    remember_flavour,
    shell_limits,
    start_failure_hint,
)
from pygent.runtime.sandbox_env import sandbox_environment
from pygent.runtime.shell import PersistentShell, Running
from pygent.runtime.transfer import WorkspaceTransfer

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

WORKDIR = "/workspace"
HOME = "/tmp/home"

#: The container's main process: it keeps the container up while its Pygent lives. It
#: runs under a uid the commands do not have, so without capabilities they cannot signal
#: it. When Pygent's connection to the killer shell ends (Pygent killed or crashed) the
#: killer kills what the commands left and creates OWNER_GONE: the keeper exits and the
#: container stops within a second or two.
KEEPER = ["/bin/sh", "-c", f"while sleep 1; do [ -e {OWNER_GONE} ] && exit 0; done"]

#: Watchdog: first check after this long, then every WATCH_INTERVAL seconds.
WATCH_DELAY = 1.0
WATCH_INTERVAL = 1.0
#: A container paused this long under a running command is resumed and the command stopped.
PAUSE_GRACE = 5.0
#: How long to wait for a restarting daemon before giving up on a recovery.
DAEMON_RETRY = 30.0
#: Seconds a remote engine's container outlives a dropped connection (see KEEPER).
REMOTE_OWNER_GRACE = 30
#: How long a close waits for a container creation still running when it came.
CREATE_SETTLE_TIMEOUT = 30.0


@dataclass(frozen=True)
class PendingChecks:
    """A command that ended on the synchronous fast path but needs the engine's view."""

    result: CommandResult


@dataclass(frozen=True)
class DockerOptions:
    """How the sandbox container is built. The defaults are the hardened ones."""

    image: str = "python:3.12-slim"
    network: bool = False  # False: network_mode "none"; True: the default bridge
    memory: str = "2g"  # memory limit; swap is disabled (memswap == memory)
    cpus: float = 2.0
    pids_limit: int = 512
    nofile: int = 4096  # open files per process
    fsize_bytes: int = 2 << 30  # largest file a command may write
    tmp_size: str = "256m"  # size of the /tmp and $HOME tmpfs mounts (count as memory)
    user: str | None = None  # "uid:gid" in the container; None: the host user's
    env: dict[str, str] = field(default_factory=dict)  # extra variables (-e NAME=value)
    extra_labels: dict[str, str] = field(default_factory=dict)
    read_only: bool = True  # read-only root filesystem
    shm_size: str = "64m"
    pull: bool = True  # pull the image when it is missing locally
    runtime: str | None = None  # OCI runtime ("runsc": gVisor); None: the engine's default


def _brief(exc: BaseException) -> str:
    """The useful part of an SDK error, one line."""
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _host_user() -> str:
    """The host user's uid:gid (files in the workspace stay theirs)."""
    if hasattr(os, "getuid"):
        return f"{os.getuid()}:{os.getgid()}"
    return "1000:1000"  # Windows: Docker Desktop maps ownership itself


def _numeric_user(user: str) -> tuple[int, int]:
    """uid, gid of a "uid:gid" user (the host user's when it is a name)."""
    uid, _, gid = user.partition(":")
    if uid.isdigit():
        return int(uid), int(gid) if gid.isdigit() else int(uid)
    return (os.getuid(), os.getgid()) if hasattr(os, "getuid") else (0, 0)


def _reap_volumes(client: docker.DockerClient) -> None:
    """Remove copy-on-write volumes whose Pygent process is gone (their layers too)."""
    sdk = import_docker()
    try:
        found = client.api.volumes(filters={"label": f"{LABEL_MANAGED}=1"}).get("Volumes") or []
    except (sdk.errors.DockerException, OSError) as exc:
        log.warning("could not list volumes to reap orphans: %s", exc)
        return
    for info in found:
        labels = info.get("Labels") or {}
        if labels.get(LABEL_MANAGED) != "1" or owner_alive(labels):
            continue
        try:
            client.api.remove_volume(info["Name"], force=True)
        except (sdk.errors.DockerException, OSError) as exc:
            log.warning("could not remove orphaned volume %s: %s", info.get("Name"), exc)
            continue
        layers = labels.get("pygent.layers")
        if layers and os.path.basename(os.path.dirname(layers)) == "cow":
            shutil.rmtree(layers, ignore_errors=True)
        log.info("removed orphaned workspace volume %s", info.get("Name"))


def _keeper_user(exec_user: str) -> str:
    """A uid:gid for the keeper that differs from the commands' uid."""
    uid = exec_user.split(":", 1)[0]
    return "65533:65533" if uid in ("65534", "nobody") else "65534:65534"


# Containers still open at interpreter exit are removed then (best effort); the
# reaper catches the rest (kill -9) on the next start.
_live: dict[str, DockerBackend] = {}
_live_lock = threading.Lock()
_reaped = False


@atexit.register
def _remove_live_containers() -> None:
    with _live_lock:
        backends = list(_live.values())
        _live.clear()
    for backend in backends:
        backend._remove_container_sync()
        backend._remove_volume_sync()


class DockerBackend:
    """Runs commands in a Docker container through a persistent shell."""

    kind = "docker"

    def __init__(
        self,
        workspace: Path,
        options: DockerOptions | None = None,
        *,
        output_limit: int = 64 * 1024 * 1024,
        on_progress: ProgressCallback | None = None,
        overlay: OverlayLayers | None = None,
        transfer: bool = False,
    ) -> None:
        """
        Args:
            workspace: host directory bind-mounted at /workspace (created if missing).
            transfer: the engine cannot see ``workspace`` (a remote engine): /workspace
                is a volume on the engine kept equal to ``workspace`` around each command
                (see :mod:`pygent.runtime.transfer`).
            overlay: copy-on-write layers: /workspace is then an overlay volume over
                them (``workspace`` is not mounted).
            options: container settings; the defaults are the hardened ones.
            output_limit: total output after which a command is killed.
            on_progress: called with short lines while an image is pulled.
        """
        self.workspace = Path(workspace)
        self.options = options or DockerOptions()
        self.user = self.options.user or _host_user()
        self._env = sandbox_environment(self.options.env, host=False, home=HOME)
        self._on_progress = on_progress
        self._client: docker.DockerClient | None = None
        self.container_id: str | None = None
        self.container_name: str | None = None
        self._transport: DockerShellTransport | None = None
        self._shell = PersistentShell(self._spawn, initial_cwd=WORKDIR, output_limit=output_limit)
        self._note = ""  # set when the container was replaced or resumed
        self._stopped = False  # the watchdog stopped the running command
        self._daemon_was_down = False  # a state query met a down or restarting daemon
        self._start_lock = asyncio.Lock()
        self._creating: asyncio.Future[tuple[str, str]] | None = None
        self._started = False
        self._closed = False
        self._command_started_at = 0.0
        self.recoveries = 0
        self.overlay = overlay
        self.volume_name: str | None = None  # the overlay volume, made with the first container
        #: Container names start with this; the warm pool's are "pygent-pool" until taken
        #: (pygent.runtime.pool), so `docker ps` and the reaper tell idle ones apart.
        self.name_prefix = "pygent"
        self.transfer = WorkspaceTransfer(self.workspace, self.user) if transfer else None
        #: A remote engine's container waits this long for a dropped connection to come
        #: back before its keeper stops it (a local one stops at once).
        self._owner_grace = REMOTE_OWNER_GRACE if transfer else 0
        self._command_transport: DockerShellTransport | None = None
        #: Transferred workspace: (container id, exec stream, receiver) of the lister.
        self._lister: tuple[str, Any, Any] | None = None
        #: Docker or Podman (pygent.runtime.podman), known once connected.
        self.engine = EngineFlavour()
        self._engine_local = True

    def describe(self) -> str:
        from pygent.runtime.gvisor import runtime_label

        label = runtime_label(self.options.runtime)
        flavour = self.engine
        if self._client is None:  # not started yet: what connect() learnt (the facade's check)
            from pygent.runtime.remote import endpoint

            with contextlib.suppress(RuntimeUnavailable):
                flavour = known_flavour(endpoint().url) or flavour
        engine = "Podman" if flavour.podman else "Docker"
        if flavour.rootless:
            engine += " rootless"
        text = f"{engine} {label} ({self.options.image})" if label else f"{engine} ({self.options.image})"
        if self.transfer is not None:
            from pygent.runtime.remote import endpoint

            text += f" on {endpoint().describe()}, workspace transferred"
        return text

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Connect, make sure the image is there, create the container, start the shell.

        Raises:
            RuntimeUnavailable: no engine, no permission, or the image is unavailable.
            SandboxError: the image cannot run a shell.
        """
        async with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise SandboxError("this Docker sandbox was closed")
            self.workspace.mkdir(parents=True, exist_ok=True)
            self.workspace = self.workspace.resolve()
            if self.transfer is not None:
                self.transfer.mirror = self.workspace
            self._client = await asyncio.to_thread(connect)
            await asyncio.to_thread(self._prepare)
            try:
                await self._new_container()
                await self._shell.start()
            except BaseException:
                await self._discard_container()
                raise
            self._note = ""
            self._started = True

    def _prepare(self) -> None:
        global _reaped
        assert self._client is not None
        if not _reaped:
            _reaped = True
            reap_orphans(self._client)
            _reap_volumes(self._client)
        self._detect_engine()
        if self.engine.limits_problem and self._on_progress is not None:
            self._on_progress(self.engine.limits_problem)  # shown with the session's notices
        if self.options.runtime:  # an unregistered runtime: say how to register it
            from pygent.runtime.gvisor import check_runtime

            warning = check_runtime(self._client, self.options.runtime, network=self.options.network)
            if warning and self._on_progress is not None:
                self._on_progress(warning)  # shown with the session's notices
        ensure_image(
            self._client, self.options.image, pull=self.options.pull, progress=self._on_progress
        )

    def _detect_engine(self) -> None:
        """Docker or Podman behind the endpoint (once per endpoint and process): Podman
        needs a few settings of its own (see pygent.runtime.podman)."""
        from pygent.runtime.remote import endpoint

        assert self._client is not None
        where = endpoint()
        self._engine_local = where.local
        self.engine = remember_flavour(where.url, self._client)

    async def close(self) -> None:
        """Stop the shell and remove the container, whatever state they are in; idempotent."""
        self._closed = True
        transport = self._transport
        if transport is not None:
            transport.abort()  # the container is removed below: no need to kill one by one
        lister, self._lister = self._lister, None
        if lister is not None:
            lister[1].close()
        await self._shell.close()
        await self._discard_container()
        if self.volume_name is not None:
            try:
                await asyncio.to_thread(self._remove_volume_sync)
            except RuntimeError:  # at interpreter exit the default executor is gone
                self._remove_volume_sync()

    def _remove_volume_sync(self) -> None:
        name, self.volume_name = self.volume_name, None
        if name is None or self._client is None:
            return
        sdk = import_docker()
        try:
            self._client.api.remove_volume(name, force=True)
        except sdk.errors.NotFound:
            return
        except (sdk.errors.DockerException, OSError) as exc:
            log.warning("could not remove the workspace volume %s: %s", name, exc)

    def _workspace_mounts(self) -> tuple[list[Any], list[str] | None]:
        """(mounts, binds) of /workspace: on Podman a copy-on-write workspace is an ``:O``
        bind (see pygent.runtime.podman.overlay_bind), everything else a Mount."""
        if self.overlay is None or not self.engine.podman or self.transfer is not None:
            return [self._workspace_mount()], None
        problem = overlay_defaults_problem()
        if problem is not None:  # SessionService copies the folder instead, saying why
            raise SandboxError(
                f"Podman cannot mount this copy-on-write workspace: {problem}, which the "
                "change set cannot read"
            )
        o = self.overlay
        return [], [overlay_bind(str(o.lower), str(o.upper), str(o.work), WORKDIR)]

    def _open_upper_root(self) -> None:
        assert self.overlay is not None
        uid = self.user.split(":", 1)[0]
        if hasattr(os, "getuid") and uid != str(os.getuid()):
            # The merged root takes the upper root's owner and mode: let the
            # commands' uid write there too.
            os.chmod(self.overlay.upper, 0o777)

    def _workspace_mount(self) -> Any:
        """/workspace: the bind mount, or the session's overlay volume (made once)."""
        sdk = import_docker()
        if self.transfer is not None:
            return self._transfer_volume()
        if self.overlay is None:
            # A Mount, not a "src:dst" bind string: a ':' in the path stays a path.
            return sdk.types.Mount(WORKDIR, str(self.workspace), type="bind")
        assert self._client is not None
        if self.volume_name is None:
            name = f"pygent-cow-{os.getpid()}-{secrets.token_hex(4)}"
            labels = {
                **self.options.extra_labels,
                **owner_labels(),
                "pygent.workspace": str(self.overlay.lower),
                "pygent.layers": str(self.overlay.root),
            }
            try:
                # The engine mounts it when a container starts and unmounts it when the
                # container is removed; Pygent mounts nothing itself.
                self._client.api.create_volume(
                    name,
                    driver="local",
                    driver_opts={
                        "type": "overlay",
                        "device": "overlay",
                        "o": self.overlay.mount_options(),
                    },
                    labels=labels,
                )
            except (sdk.errors.DockerException, OSError) as exc:
                raise SandboxError(
                    f"could not create the copy-on-write volume: {_brief(exc)}"
                ) from exc
            self.volume_name = name
            self._open_upper_root()
        return sdk.types.Mount(WORKDIR, self.volume_name, type="volume")

    def claim_sync(self) -> None:
        """A warm pool's sandbox becomes a session's: renamed like any session container
        (a replacement made later gets the ordinary name too). Blocking."""
        self.name_prefix = "pygent"
        if self._client is None or self.container_id is None:
            return
        name = f"pygent-{os.getpid()}-{secrets.token_hex(4)}"
        sdk = import_docker()
        try:
            self._client.api.rename(self.container_id, name)
        except sdk.errors.NotFound:
            return  # the session was closed at once: nothing to rename
        except (sdk.errors.DockerException, OSError) as exc:
            log.warning("could not rename pooled container %s: %s", self.container_name, exc)
            return
        self.container_name = name

    def _transfer_volume(self) -> Any:
        """/workspace of a transferred workspace: a labelled volume on the engine, made
        once per session (a replacement container gets the same files)."""
        sdk = import_docker()
        assert self._client is not None
        if self.volume_name is None:
            name = f"pygent-ws-{os.getpid()}-{secrets.token_hex(4)}"
            labels = {**self.options.extra_labels, **owner_labels(),
                      "pygent.workspace": str(self.workspace)}
            try:
                self._client.api.create_volume(name, labels=labels)
            except (sdk.errors.DockerException, OSError) as exc:
                raise SandboxError(f"could not create the workspace volume: {_brief(exc)}") from exc
            self.volume_name = name
        return sdk.types.Mount(WORKDIR, self.volume_name, type="volume")

    async def _listing(self) -> bytes | None:
        """/workspace listed by the lister exec kept open in the container (one round
        trip instead of three API calls); None when it cannot be used (then an exec)."""
        from pygent.runtime.docker_transport import ExecStream
        from pygent.runtime.transfer import LISTER_SCRIPT, ListingReceiver

        assert self._client is not None and self.container_id is not None
        lister = self._lister
        if lister is None or lister[0] != self.container_id or lister[2].closed:
            if lister is not None:
                lister[1].close()
            self._lister = None
            try:
                stream = await ExecStream.open(
                    self._client, self.container_id, ["/bin/sh", "-c", LISTER_SCRIPT],
                    user=self.user, workdir="/",
                    environment={"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C"},
                )
            except (OSError, PygentError, import_docker().errors.DockerException) as exc:
                log.info("no lister in the sandbox (%s): listing with an exec", exc)
                return None
            receiver = ListingReceiver()
            stream.attach(receiver)
            lister = self._lister = (self.container_id, stream, receiver)
        token = secrets.token_hex(16)
        done = lister[2].expect(token)
        try:
            await lister[1].send(token.encode() + b"\n")
            return await asyncio.wait_for(done, 120)
        except (OSError, asyncio.TimeoutError, SandboxError) as exc:
            log.info("the lister failed (%s): listing with an exec", exc)
            lister[1].close()
            self._lister = None
            return None

    async def _push(self) -> None:
        """Transferred workspace: the mirror's changes go in before a command."""
        assert self.transfer is not None and self._client is not None
        assert self.container_id is not None
        sdk = import_docker()
        try:
            report = await asyncio.to_thread(
                self.transfer.push, self._client.api, self.container_id, relist=False
            )
            if report.pushed or report.removed:
                listing = await self._listing()
                if listing is None:
                    listing = await asyncio.to_thread(
                        self.transfer.list_remote, self._client.api, self.container_id
                    )
                self.transfer.seen(listing)
        except (sdk.errors.DockerException, OSError, SandboxError) as exc:
            raise SandboxError(
                f"could not copy the workspace into the sandbox on the remote engine: "
                f"{_brief(exc)}",
                hint="check the connection to the engine (`docker info`); nothing was run, "
                "the next command tries again",
            ) from exc

    async def _pull(self, result: CommandResult) -> CommandResult:
        """Transferred workspace: the command's changes come back after it."""
        assert self.transfer is not None and self._client is not None
        sdk = import_docker()
        if self.container_id is None:
            return result
        try:
            listing = await self._listing()
            await asyncio.to_thread(
                self.transfer.pull, self._client.api, self.container_id, listing
            )
        except (sdk.errors.DockerException, OSError, SandboxError) as exc:
            note = (f"the command's changes to the workspace could not be copied back yet "
                    f"({_brief(exc)}); they are copied after the next command")
            return dataclasses.replace(
                result, note=f"{result.note}; {note}" if result.note else note
            )
        return result

    # -- writes through the overlay (OverlayWorkspace's LayerWriter) ---------------

    def apply(
        self,
        puts: list[tuple[str, bytes, int]],
        links: list[tuple[str, str]],
        removes: list[str],
        dirs: list[str] | None = None,
    ) -> None:
        """Remove, make folders, write and link workspace files through the container's /workspace
        (the overlay's layers must not change under it). Blocking: call from a thread."""
        if self._client is None or self.container_id is None:
            raise SandboxError("the sandbox container is not running")
        sdk = import_docker()
        api, cid = self._client.api, self.container_id
        script: list[str] = []
        for rel in removes:
            script += ["rm", rel]
        for rel in dirs or ():
            script += ["mkdir", rel]
        for rel, target in links:
            script += ["ln", target, rel]
        try:
            if script:
                self._exec(script)
            if puts:
                uid, gid = _numeric_user(self.user)
                buf = io.BytesIO()
                with tarfile.open(fileobj=buf, mode="w") as tar:
                    for rel, data, mode in puts:
                        info = tarfile.TarInfo(rel)
                        info.size, info.mode, info.mtime = len(data), mode & 0o7777, time.time()
                        info.uid, info.gid = uid, gid
                        tar.addfile(info, io.BytesIO(data))
                api.put_archive(cid, WORKDIR, buf.getvalue())
        except (sdk.errors.DockerException, OSError) as exc:
            raise SandboxError(f"could not write the sandbox workspace: {_brief(exc)}") from exc

    def _exec(self, ops: list[str]) -> None:
        assert self._client is not None and self.container_id is not None
        program = (
            'cd /workspace || exit 1; while [ $# -gt 0 ]; do case $1 in '
            'rm) rm -f -- "$2"; shift 2;; mkdir) mkdir -p -- "$2"; shift 2;; '
            'ln) rm -f -- "$3"; ln -s -- "$2" "$3" || exit 1; shift 3;; *) exit 2;; esac; done'
        )
        api = self._client.api
        exec_id = api.exec_create(
            self.container_id, ["/bin/sh", "-c", program, "sh", *ops], user=self.user
        )["Id"]
        output = api.exec_start(exec_id)
        code = api.exec_inspect(exec_id).get("ExitCode")
        if code:
            text = output.decode("utf-8", "replace").strip()[-300:]
            raise SandboxError(f"could not change the sandbox workspace (exit {code}): {text}")

    async def _discard_container(self) -> None:
        await self._settle_creation()  # a close racing a start: its container too
        if self.container_id is not None:
            await asyncio.to_thread(self._remove_container_sync)

    def _remove_container_sync(self) -> None:
        cid, self.container_id = self.container_id, None
        with _live_lock:
            _live.pop(cid or "", None)
        if cid is None or self._client is None:
            return
        sdk = import_docker()
        try:
            self._client.api.remove_container(cid, force=True, v=True)
        except sdk.errors.NotFound:
            return  # already gone (docker rm -f, or the daemon removed it)
        except (sdk.errors.DockerException, OSError) as exc:
            # The reaper removes it on the next start once this process is gone.
            log.warning("could not remove sandbox container %s: %s", self.container_name, exc)

    # -- container ----------------------------------------------------------------

    def _create_sync(self) -> tuple[str, str]:
        """Create and start a hardened container; returns (id, name)."""
        assert self._client is not None
        sdk = import_docker()
        api = self._client.api
        o = self.options
        tmpfs_opts = f"size={o.tmp_size},exec,nosuid,nodev"
        extra_ulimits, userns = host_config_extras(self.engine, local=self._engine_local)
        mounts, binds = self._workspace_mounts()
        host_config = api.create_host_config(
            mounts=mounts,
            binds=binds,
            network_mode="bridge" if o.network else "none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=o.read_only,
            # /tmp keeps exec (compilers and pytest run temporary executables there).
            tmpfs={"/tmp": tmpfs_opts, HOME: tmpfs_opts + ",mode=1777"},
            pids_limit=o.pids_limit,
            mem_limit=o.memory,
            memswap_limit=o.memory,  # equal: no swap, the OOM killer acts in the container
            nano_cpus=int(o.cpus * 1e9),
            shm_size=o.shm_size,
            ulimits=[
                sdk.types.Ulimit(name="nofile", soft=o.nofile, hard=o.nofile),
                sdk.types.Ulimit(name="fsize", soft=o.fsize_bytes, hard=o.fsize_bytes),
                sdk.types.Ulimit(name="core", soft=0, hard=0),
                *(sdk.types.Ulimit(name=k, soft=v, hard=v) for k, v in extra_ulimits.items()),
            ],
            oom_score_adj=500,  # under host memory pressure the sandbox goes first
            init=True,  # reaps the zombies that killed process groups leave
            auto_remove=False,  # keep State.ExitCode / OOMKilled; removed explicitly
            runtime=o.runtime or None,
        )
        if userns:  # the SDK accepts only "host"; the API passes Podman's "keep-id" on
            host_config["UsernsMode"] = userns
        name = f"{self.name_prefix}-{os.getpid()}-{secrets.token_hex(4)}"
        shown = self.overlay.lower if self.overlay is not None else self.workspace
        labels = {**o.extra_labels, **owner_labels(), "pygent.workspace": str(shown)}
        try:
            cid = api.create_container(
                o.image,
                entrypoint=KEEPER,
                command=[],
                user=_keeper_user(self.user),
                working_dir=WORKDIR,
                hostname="sandbox",
                labels=labels,
                name=name,
                host_config=host_config,
            )["Id"]
        except sdk.errors.ImageNotFound as exc:
            raise RuntimeUnavailable(
                f"the sandbox image {o.image} is not available locally",
                hint=f"run `docker pull {o.image}`, or set PYGENT_IMAGE to a local image",
            ) from exc
        except sdk.errors.APIError as exc:
            raise SandboxError(
                f"could not create the sandbox container from {o.image}: {_brief(exc)}"
            ) from exc
        except (sdk.errors.DockerException, OSError) as exc:
            raise explain_engine_error(exc) from exc
        with _live_lock:
            _live[cid] = self
        try:
            api.start(cid)
            if self.transfer is not None:
                self.transfer.init_volume(api, cid)
        except (sdk.errors.DockerException, OSError) as exc:
            if not isinstance(exc, sdk.errors.APIError):
                raise explain_engine_error(exc) from exc
            logs = container_logs(self._client, cid)
            with contextlib.suppress(sdk.errors.DockerException):
                api.remove_container(cid, force=True)
            with _live_lock:
                _live.pop(cid, None)
            engine_hint = start_failure_hint(self.engine, _brief(exc))
            raise SandboxError(
                f"the sandbox {'container' if engine_hint else 'image ' + o.image} cannot "
                f"start: {_brief(exc)}" + (f"\n{logs}" if logs else ""),
                hint=engine_hint or "the image needs /bin/sh and sleep for this machine's "
                "architecture; try PYGENT_IMAGE=python:3.12-slim",
            ) from exc
        return cid, name

    async def _new_container(self) -> None:
        # Shielded: a cancelled start must not lose track of a container whose creation
        # goes on in its thread; close() waits for it (see _settle_creation).
        creating = self._creating = asyncio.ensure_future(asyncio.to_thread(self._create_sync))
        self.container_id, self.container_name = await asyncio.shield(creating)
        self._creating = None
        log.info("sandbox container %s started (%s)", self.container_name, self.options.image)

    async def _settle_creation(self) -> None:
        """Wait for a container creation still running in its thread, and adopt its id."""
        creating = self._creating
        if creating is None or self.container_id is not None:
            return
        try:
            self.container_id, self.container_name = await asyncio.wait_for(
                asyncio.shield(creating), CREATE_SETTLE_TIMEOUT
            )
        except (asyncio.TimeoutError, PygentError, OSError):
            return  # it failed (nothing to remove) or hangs: the reaper catches it later
        finally:
            self._creating = None

    def _state_sync(self) -> dict[str, Any] | None:
        """The container's State, None when it no longer exists; retries while the daemon
        restarts (up to DAEMON_RETRY seconds), then raises SandboxError."""
        assert self._client is not None
        sdk = import_docker()
        deadline = time.monotonic() + DAEMON_RETRY
        delay = 0.2
        while True:
            try:
                if self.container_id is None:
                    return None
                return self._client.api.inspect_container(self.container_id)["State"]
            except sdk.errors.NotFound:
                return None
            except (sdk.errors.DockerException, OSError) as exc:
                self._daemon_was_down = True
                if not is_connection_error(exc) or time.monotonic() > deadline:
                    raise SandboxError(
                        f"the Docker daemon is not answering: {exc}",
                        hint="check `docker info`; the next command tries again",
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _state(self) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._state_sync)

    async def _replace_container(
        self, state: dict[str, Any] | None, why: str | None = None
    ) -> None:
        """The container is gone, dead or unusable: remove it and start a new one on the
        same workspace. ``why`` overrides the reason derived from ``state``."""
        if self._closed:
            raise SandboxError("this Docker sandbox was closed")
        old = self.container_name
        if why is None and state is None:
            why = "sandbox container was removed"
        elif why is None:
            assert state is not None
            why = (
                f"sandbox container died (exit {state.get('ExitCode')}, "
                f"OOMKilled={str(state.get('OOMKilled', False)).lower()})"
            )
            if self._daemon_was_down:
                why += " when the Docker daemon restarted"
        self._daemon_was_down = False
        log.warning("%s (%s); starting a new one", why, old)
        await self._discard_container()
        self.recoveries += 1
        try:
            await self._new_container()
        except (RuntimeUnavailable, SandboxError) as exc:
            self._note = f"{why}; no new container could be started: {exc}"
            raise SandboxError(
                f"{why} and no new one could be started: {exc}", hint=getattr(exc, "hint", "")
            ) from exc
        self._note = (
            f"{why}; a new container was started with the same workspace; "
            "installed packages are gone"
        )

    async def _resume(self) -> None:
        assert self._client is not None and self.container_id is not None
        sdk = import_docker()
        try:
            await asyncio.to_thread(self._client.api.unpause, self.container_id)
        except (sdk.errors.DockerException, OSError) as exc:
            # Already resumed by someone else, or gone: the next state check tells.
            log.warning("could not resume sandbox container %s: %s", self.container_name, exc)
            return
        log.warning("sandbox container %s was paused; resumed it", self.container_name)

    async def _ensure_container(self) -> None:
        """Before a new shell: make sure the container runs (resume or replace it)."""
        if self.container_id is None:
            await self._replace_container(None)
            return
        state = await self._state()
        if state is not None and state.get("Running"):
            if state.get("Paused"):
                await self._resume()
                self._note = self._note or "sandbox container was paused; it was resumed"
            return
        await self._replace_container(state)

    async def _spawn(self) -> DockerShellTransport:
        """Called by PersistentShell for each (new) shell."""
        assert self._client is not None
        if self._closed:
            raise SandboxError("this Docker sandbox was closed")
        if self._transport is not None:  # a replacement: check what happened first
            self._transport = None
            await self._ensure_container()
        assert self.container_id is not None
        sdk = import_docker()
        try:
            transport = await DockerShellTransport.spawn(
                self._client, self.container_id, user=self.user, environment=self._env,
                owner_grace=self._owner_grace, prelude=self._shell_prelude(),
            )
        except (sdk.errors.DockerException, OSError, SandboxError) as exc:
            state = await self._state()
            if not self._started:
                raise self._bad_image(exc, state) from exc
            if state is not None and state.get("Running") and not state.get("Paused"):
                # It runs but no shell starts in it (process limit exhausted?).
                await self._replace_container(
                    state, why=f"no shell could start in the sandbox container ({_brief(exc)})"
                )
            else:  # died or was paused in between
                await self._ensure_container()
            try:
                transport = await DockerShellTransport.spawn(
                    self._client, self.container_id, user=self.user, environment=self._env,
                    owner_grace=self._owner_grace, prelude=self._shell_prelude(),
                )
            except (sdk.errors.DockerException, OSError) as again:
                raise SandboxError(
                    f"no shell could start in the sandbox container: {_brief(again)}",
                    hint="check `docker info` and `docker ps`; the next command tries again",
                ) from again
        self._transport = transport
        return transport

    def _shell_prelude(self) -> str:
        """Limits the engine ignored, set by the shell itself (rootless Podman)."""
        if not self.engine.ignores_ulimits:
            return ""
        return shell_limits(self.options.nofile, self.options.fsize_bytes)

    def _bad_image(self, exc: BaseException, state: dict[str, Any] | None) -> SandboxError:
        logs = container_logs(self._client, self.container_id) if self.container_id else ""
        code = (state or {}).get("ExitCode")
        err = (state or {}).get("Error") or ""
        if state is not None and not state.get("Running"):
            detail = "the container exited at once"
        else:
            detail = str(exc) if isinstance(exc, SandboxError) else _brief(exc)
        return SandboxError(
            f"the sandbox image {self.options.image} cannot run a shell"
            + (f" (container exit {code})" if code is not None else "")
            + f": {detail}"
            + (f"\n{err}" if err else "")
            + (f"\ncontainer output:\n{logs}" if logs else ""),
            hint="the image needs /bin/sh for this machine's architecture; "
            "try PYGENT_IMAGE=python:3.12-slim",
        )

    # -- commands -----------------------------------------------------------------

    async def run(
        self, cmd: str, *, timeout: float | None, on_output: OutputCallback | None = None
    ) -> CommandResult:
        """Run ``cmd`` in the container's shell; see :class:`pygent.runtime.base.Backend`.

        Raises:
            SandboxError: the container is gone and no new one could be started.
        """
        if not self._started:
            await self.start()
        if self._closed:
            raise SandboxError("this Docker sandbox was closed")
        self._reset_command_state()
        if self.transfer is not None:
            await self._push()
            result = await self._watched(
                self._shell.run(cmd, timeout=timeout, on_output=on_output)
            )
            return await self._pull(result)
        return await self._watched(self._shell.run(cmd, timeout=timeout, on_output=on_output))

    async def prepare_direct(self) -> bool:
        """On the loop: set up the synchronous fast path (see :meth:`run_direct`)."""
        if not self._started:
            await self.start()
        if self.transfer is not None:
            return False  # each command syncs the workspace around it: no fast path
        return not self._closed and await self._shell.prepare_direct()

    def run_direct(self, cmd: str, *, timeout: float | None, on_output: OutputCallback | None,
                   budget: float) -> CommandResult | Running | PendingChecks | None:
        """The synchronous fast path (see :meth:`PersistentShell.run_direct`): a result
        when the command ended normally within ``budget`` seconds; else something for
        :meth:`finish_handover` on the loop; None when the fast path is not set up."""
        if not self._started or self._closed or self.transfer is not None:
            return None
        self._reset_command_state()
        got = self._shell.run_direct(cmd, timeout=timeout, on_output=on_output, budget=budget)
        if isinstance(got, CommandResult) and got.exit_code == 137:
            return PendingChecks(got)  # killed: was it the OOM killer? The engine knows.
        return got

    async def finish_handover(self, item: Running | PendingChecks) -> CommandResult:
        """On the loop: finish what :meth:`run_direct` handed over."""
        if isinstance(item, PendingChecks):
            return await self._after(item.result, self._shell.restarts)
        return await self._watched(self._shell.finish_handover(item))

    def _reset_command_state(self) -> None:
        self._command_transport = self._transport  # the shell this command runs in
        self._note = ""
        self._stopped = False
        self._daemon_was_down = False
        self._command_started_at = time.time()

    async def _watched(self, shell_run: Awaitable[CommandResult]) -> CommandResult:
        """Await a shell command under the container watchdog, then check what the
        engine saw: a lost container is replaced, an OOM kill is named."""
        restarts = self._shell.restarts
        # A timer, not a task: most commands end before the watchdog is needed, and a
        # timer costs less than a task on this hot path.
        watch: list[asyncio.Future[None]] = []
        timer = asyncio.get_running_loop().call_later(
            WATCH_DELAY, lambda: watch.append(asyncio.ensure_future(self._watchdog()))
        )
        try:
            result = await shell_run
        finally:
            timer.cancel()
            for task in watch:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return await self._after(result, restarts)

    async def _after(self, result: CommandResult, restarts: int) -> CommandResult:
        transport = self._transport
        if self._closed:  # closed under the command: nothing to recover
            return dataclasses.replace(
                result, exit_code=None, note="the sandbox was closed while the command ran"
            )
        if self._shell.restarts > restarts and not self._note:
            # The shell was lost under the command: was it the container?
            await self._after_lost_shell()
            if self.transfer is not None:
                await self._name_lost_connection(self._command_transport)
        elif transport is not None and transport.kill_failed:
            # The command's processes could not be killed (pids exhausted and no
            # killer): only a new container gets rid of them.
            await self._replace_after_failed_kill()
        if result.exit_code == 137 and not (result.timed_out or result.cancelled):
            # The "oom" event can trail the killed process by a moment: look twice.
            oom = await self._oom_since(self._command_started_at)
            if not oom:
                await asyncio.sleep(0.1)
                oom = await self._oom_since(self._command_started_at)
            if oom:
                self._note = self._note or (
                    f"killed: out of memory (the sandbox memory limit is {self.options.memory}; "
                    "raise it with PYGENT_DOCKER_MEMORY)"
                )
        if self._stopped:  # the watchdog stopped it: it did not finish
            result = dataclasses.replace(result, exit_code=None)
        if self._note:
            result = dataclasses.replace(result, note=self._note)
        return result

    async def _name_lost_connection(self, transport: DockerShellTransport | None) -> None:
        """A remote engine: a shell lost without an exit of its own is a dropped connection;
        say so (the reconnection and the kept workspace) instead of only "the shell ended"."""
        if transport is None or not transport.connection_lost():
            return  # the shell exited by itself (`exit`): the shell's own note says so
        from pygent.runtime.remote import endpoint

        lost = (f"the connection to the Docker engine at {endpoint().describe()} was lost "
                "during the command, which was stopped; Pygent reconnected and the "
                "workspace is kept")
        self._note = f"{lost}; {self._note}" if self._note else lost

    async def _after_lost_shell(self) -> None:
        try:
            state = await self._state()
        except SandboxError as exc:
            self._note = (
                f"sandbox container lost: {exc}; the next command will try to start a new one"
            )
            return
        if state is not None and state.get("Running") and not state.get("Paused"):
            transport = self._transport
            code = await transport.exit_code() if transport is not None else None
            if code is None or code >= 128:
                # Killed, not `exit`: the container may be dying and Docker may not
                # have updated its state yet (the exec stream closes first).
                state = await self._settle(2.0)
        if state is not None and state.get("Running"):
            if state.get("Paused"):
                await self._resume()
                self._note = "sandbox container was paused; it was resumed"
            return  # only the shell exited (`exit`): PersistentShell's note says so
        try:
            await self._replace_container(state)
        except SandboxError as exc:
            self._note = f"{exc}; the next command will try again"

    async def _settle(self, within: float) -> dict[str, Any] | None:
        """Poll the container state for up to ``within`` seconds until it stops running."""
        deadline = time.monotonic() + within
        while True:
            state = await self._state()
            if state is None or not state.get("Running") or time.monotonic() > deadline:
                return state
            await asyncio.sleep(0.1)

    async def _replace_after_failed_kill(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()
        await self._shell.close()  # the next command spawns a shell in the new container
        try:
            await self._replace_container(
                None, why="the command's processes could not be killed (process limit exhausted?)"
            )
        except SandboxError as exc:
            self._note = f"{exc}; the next command will try again"

    async def _oom_since(self, since: float) -> bool:
        """Whether the kernel's OOM killer acted in the container since ``since``."""
        if self._client is None or self.container_id is None:
            return False
        sdk = import_docker()
        client, cid = self._client, self.container_id

        def oom_events() -> bool:
            # Fractional timestamps: a whole-second "until" in the future would block.
            events = client.api.events(
                since=since,
                until=time.time(),
                filters={"container": cid, "event": "oom"},
                decode=True,
            )
            try:
                return any(True for _ in events)
            finally:
                events.close()

        try:
            return await asyncio.to_thread(oom_events)
        except (sdk.errors.DockerException, OSError) as exc:
            log.debug("could not read OOM events: %s", exc)
            return False

    async def _watchdog(self) -> None:
        """While a command runs: notice a dead, removed or paused container."""
        sdk = import_docker()
        try:
            await self._watch()
        except (sdk.errors.DockerException, OSError) as exc:
            log.warning("sandbox watchdog stopped: %s", exc)

    async def _watch(self) -> None:
        paused_since: float | None = None
        while True:
            try:
                state = await self._state()
            except SandboxError as exc:
                log.warning("watchdog: %s", exc)
                state = {"Running": False, "ExitCode": None}
            transport = self._transport
            if state is None or not state.get("Running"):
                if transport is not None:
                    transport.abort()  # the command returns now; run() recovers
                return
            if state.get("Paused"):
                paused_since = paused_since or time.monotonic()
                if time.monotonic() - paused_since >= PAUSE_GRACE:
                    self._stopped = True
                    await self._resume()
                    self._note = (
                        f"sandbox container was paused (docker pause) for over "
                        f"{PAUSE_GRACE:.0f} s; it was resumed and the command was stopped"
                    )
                    if transport is not None:
                        await transport.kill_children()
                        if transport.kill_failed:
                            transport.abort()
                    return
            else:
                paused_since = None
            await asyncio.sleep(WATCH_INTERVAL)
