"""``Runtime``: the sandbox as the agent and API users see it (upstream-compatible).

It picks a backend (Docker when asked or when an engine answers in ``auto`` mode,
else local, saying so), owns the workspace directory, and offers both the
synchronous upstream methods (``bash``, ``read_file``, ``write_file``,
``upload_file``, ``export_file``, ``cleanup``) and the async ``arun`` the agent
core uses. The backend starts in the background as soon as the runtime is made, so
a front end can show its prompt while the container comes up.

While a command runs, a watchdog keeps free space and inodes on the workspace's file
system: a command that fills the disk (``dd if=/dev/zero of=fill``, a million files) is
stopped before the host, the session history and the editor run out of room.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import weakref
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pygent.errors import PathError, RuntimeUnavailable
from pygent.runtime.base import Backend, CommandResult, DirectBackend, OutputCallback
from pygent.runtime.local import LocalBackend
from pygent.runtime.loop import LoopThread
from pygent.runtime.scratch import make_scratch_dir, remove_scratch_dir
from pygent.runtime.workspace import Workspace
from pygent.settings import Settings, load_settings

if TYPE_CHECKING:
    from pygent.runtime.docker_backend import DockerOptions
    from pygent.runtime.overlay import OverlayLayers  # loaded by the copy-on-write paths only
    from pygent.runtime.pool import WarmSandbox

log = logging.getLogger(__name__)

_live: weakref.WeakSet[Runtime] = weakref.WeakSet()

#: Free space and inodes a command may not take from the workspace's file system
#: (at most half of what is free when it starts, so a nearly full disk still works).
DISK_RESERVE_BYTES = 1 << 30
INODE_RESERVE = 50_000
#: Longest command (characters) the synchronous fast path writes itself.
DIRECT_MAX_COMMAND = 16 * 1024
#: The watchdog's first look (most commands are over by then) and its period, seconds.
DISK_CHECK_AFTER = 0.2
DISK_CHECK_EVERY = 0.2


def _free_space(path: Path) -> tuple[int, int | None]:
    """(free bytes, free inodes or None when the file system does not count them)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, (st.f_favail if st.f_files else None)


@atexit.register
def _cleanup_all() -> None:
    """A forgotten runtime must not leave a container running after the process."""
    for rt in list(_live):
        try:
            rt.cleanup()
        except Exception:
            log.exception("cleanup at exit failed")


def docker_unavailable_reason() -> str | None:
    """Why Docker cannot be used here, or None when an engine answers."""
    try:
        from pygent.runtime.docker_engine import docker_available
    except ImportError:
        return "the docker SDK is not installed (pip install 'pygent[docker]')"
    return docker_available()


def docker_options(
    settings: Settings, image: str | None = None, env: dict[str, str] | None = None
) -> DockerOptions:
    """The container settings a runtime made from ``settings`` uses (also the warm
    pool's key: a pooled sandbox must be the one the session would have made)."""
    from pygent.runtime.docker_backend import DockerOptions

    return DockerOptions(
        image=image or settings.image,
        network=settings.network,
        memory=settings.docker_memory,
        cpus=settings.docker_cpus,
        pids_limit=settings.docker_pids,
        env={**settings.env, **(env or {})},
        runtime=settings.docker_runtime,
    )


def _memory_bytes(text: str) -> int:
    """``"2g"``, ``"512m"``, ``"1048576"`` as bytes (Docker's memory syntax)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    value = text.strip().lower().rstrip("b")
    try:
        if value and value[-1] in units:
            return int(float(value[:-1]) * units[value[-1]])
        return int(float(value))
    except ValueError:
        log.warning("PYGENT_DOCKER_MEMORY=%r is not a size; the sandbox gets 2 GiB", text)
        return 2 << 30


class Runtime:
    """Runs commands in a Docker container, or locally when Docker is unavailable.

    Args:
        image: Docker image (default ``PYGENT_IMAGE`` or ``python:3.12-slim``).
        use_docker: True requires Docker (an error when no engine answers), False runs
            locally, None (default, ``auto``) follows ``settings.sandbox``: in ``auto``,
            Docker when an engine answers, else bubblewrap (:mod:`pygent.runtime.bwrap`),
            else the bare host, saying so at each step down.
        initial_files: files or folders copied into the workspace at start
            (in addition to ``PYGENT_INIT_FILES``).
        workspace: a folder kept across sessions (default ``PYGENT_WORKSPACE``, else a
            temporary folder removed by :meth:`cleanup`).
        settings: the settings object (default: loaded from the environment).
        backend: an already-made backend (tests, custom sandboxes).
        env: extra variables for the sandbox (never the host environment).
        cow_lower: a folder to open copy-on-write: the sandbox sees it at /workspace
            through an overlay (the folder read-only below, the session's upper layer
            under Pygent's data dir above), and :attr:`files` is the merged view. Where
            the sandbox cannot mount one (the local runtime), :attr:`overlay` stays None
            and :attr:`cow_fallback` says why: the caller copies the folder instead.
    """

    def __init__(
        self,
        image: str | None = None,
        use_docker: bool | None = None,
        initial_files: Iterable[str | os.PathLike[str]] | None = None,
        workspace: str | os.PathLike[str] | None = None,
        *,
        settings: Settings | None = None,
        backend: Backend | None = None,
        env: dict[str, str] | None = None,
        cow_lower: str | os.PathLike[str] | None = None,
        pooled: WarmSandbox | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.notices: list[str] = []
        self.overlay: OverlayLayers | None = None
        self.cow_fallback: str | None = None
        ws = workspace if workspace is not None else self.settings.workspace
        self._owns_workspace = ws is None
        if pooled is not None:
            # A warm sandbox from the pool (pygent.runtime.pool): its backend already runs
            # on its own loop thread, which this runtime adopts with its folder or layers.
            backend, self.overlay = pooled.backend, pooled.overlay
            self._owns_workspace = True  # its scratch folder is this runtime's now
            self._base = pooled.base
            if pooled.backend.transfer is not None:
                self.notices.append(
                    f"the Docker engine ({pooled.backend.describe()}) cannot see this "
                    "machine's folders: the workspace is transferred through the engine API "
                    "around each command"
                )
        elif ws is None:
            self._base = make_scratch_dir()
        else:
            self._base = Path(ws).expanduser()
            self._base.mkdir(parents=True, exist_ok=True)
        self.files = Workspace(self._base)
        self._loop = pooled.loop if pooled is not None else LoopThread()
        self._closed = False
        self._direct_ok = False  # the synchronous fast path may be tried
        try:
            self.backend = backend or self._make_backend(image, use_docker, env, cow_lower)
            if self.overlay is not None:
                from pygent.runtime.overlay import LayerWriter, OverlayWorkspace

                self.files = OverlayWorkspace(self.overlay, writer=cast(LayerWriter, self.backend))
            elif cow_lower is not None and self.cow_fallback is None:
                self.cow_fallback = (
                    f"copy-on-write workspaces need a Docker sandbox ({self.backend.describe()} "
                    "cannot mount one): the folder is copied into the sandbox instead"
                )
            uploads = [*self.settings.init_files, *(initial_files or [])]
            if self.overlay is None:
                for item in uploads:
                    self.upload_file(item)
        except BaseException:
            self._loop.stop()
            if self._owns_workspace:
                remove_scratch_dir(self._base)
            if self.overlay is not None:
                self.overlay.remove()
            raise
        self._started = self._loop.submit(self.backend.start())
        _live.add(self)
        if self.overlay is not None and uploads:
            try:  # a copy-on-write workspace is written through the sandbox: wait for it
                self.wait_ready()
                for item in uploads:
                    self.upload_file(item)
            except BaseException:
                self.cleanup()
                raise

    def _make_backend(self, image: str | None, use_docker: bool | None, env: dict[str, str] | None,
                      cow_lower: str | os.PathLike[str] | None = None) -> Backend:
        extra_env = {**self.settings.env, **(env or {})}
        want = use_docker if use_docker is not None else self.settings.use_docker
        sandbox = self.settings.sandbox  # auto | docker | bwrap | host (PYGENT_SANDBOX)
        if want is False or (want is None and sandbox == "host"):
            return LocalBackend(self.files.root, extra_env=extra_env, output_limit=self.settings.output_limit)
        if want is None and sandbox == "bwrap":
            required = self._bwrap_backend(extra_env, required=True)
            assert required is not None  # required=True raises instead of returning None
            return required
        reason = docker_unavailable_reason()
        if reason is not None:
            if want is True or sandbox == "docker":
                raise RuntimeUnavailable(
                    f"Docker was asked for but is not available: {reason}",
                    hint="start the Docker engine (or install docker.io), or run with --no-docker",
                )
            # Order: Docker, then bubblewrap, then the bare host (loudly, asking first).
            bwrap = self._bwrap_backend(extra_env, required=False, docker_reason=reason)
            if bwrap is not None:
                return bwrap
            return LocalBackend(self.files.root, extra_env=extra_env, output_limit=self.settings.output_limit)
        from pygent.runtime.docker_backend import DockerBackend
        from pygent.runtime.remote import endpoint, workspace_mode

        options = docker_options(self.settings, image, env)
        # A remote engine cannot mount this machine's folders: transfer the workspace.
        transfer = workspace_mode(self.settings.workspace_mode, options.image) == "transfer"
        if transfer:
            where = endpoint().describe()
            self.notices.append(
                f"the Docker engine at {where} cannot see this machine's folders: the "
                "workspace is transferred through the engine API around each command"
            )
            if cow_lower is not None:
                self.cow_fallback = (
                    f"copy-on-write workspaces need an engine that sees the folder ({where} "
                    "does not): the folder is copied into the sandbox instead"
                )
                cow_lower = None
        def on_progress(text: str) -> None:  # image pulls: visible to front ends and logs
            log.info("%s", text)
            self.notices.append(text)

        if cow_lower is not None:
            from pygent.runtime.overlay import OverlayLayers

            self.overlay = OverlayLayers.create(self.settings.data_dir, Path(cow_lower))
        return DockerBackend(self.files.root, options, output_limit=self.settings.output_limit,
                             on_progress=on_progress, overlay=self.overlay, transfer=transfer)

    def _bwrap_backend(self, extra_env: dict[str, str], *, required: bool,
                       docker_reason: str | None = None) -> Backend | None:
        """The bubblewrap sandbox; when it cannot run: an error if ``required``, else
        None after the loud "no isolation" notice (the caller falls back to the host)."""
        from pygent.runtime.bwrap import BwrapBackend, BwrapOptions, bwrap_unavailable_reason

        reason = bwrap_unavailable_reason(self.settings.network)
        if reason is not None:
            if required:
                raise RuntimeUnavailable(
                    f"the bubblewrap sandbox was asked for (PYGENT_SANDBOX=bwrap) but {reason}",
                    hint="apt-get install bubblewrap, allow unprivileged user namespaces "
                    "(sysctl kernel.unprivileged_userns_clone=1), or set PYGENT_SANDBOX=auto",
                )
            notice = (
                f"Docker is not available ({docker_reason}) and neither is bubblewrap "
                f"({reason}): commands run on this machine WITHOUT isolation, and every "
                "command asks for approval."
            )
            self.notices.append(notice)
            log.warning("%s", notice)  # API users see it on stderr; front ends show notices
            return None
        options = BwrapOptions(
            network=self.settings.network,
            pids_limit=self.settings.docker_pids,
            memory_bytes=_memory_bytes(self.settings.docker_memory),
            cpus=self.settings.docker_cpus,
            env=extra_env,
        )
        backend = BwrapBackend(self.files.root, options, output_limit=self.settings.output_limit)
        if docker_reason is not None:
            notice = (f"Docker is not available ({docker_reason}): commands run in a "
                      f"{backend.describe()} on this machine (read-only system, only the "
                      "workspace writable).")
            self.notices.append(notice)
            log.warning("%s", notice)
        return backend

    # --- properties --------------------------------------------------------------------

    @property
    def use_docker(self) -> bool:
        return self.backend.kind == "docker"

    @property
    def kind(self) -> str:
        return self.backend.kind

    @property
    def isolated(self) -> bool:
        """True when commands run in a sandbox (Docker, bubblewrap), not on the bare host."""
        from pygent.policy import ISOLATED_RUNTIMES

        return self.backend.kind in ISOLATED_RUNTIMES

    @property
    def temporary_workspace(self) -> bool:
        """True when the workspace is a temporary folder removed by :meth:`cleanup`
        (a copy-on-write workspace is the user's folder: not temporary)."""
        return self._owns_workspace and self.overlay is None

    @property
    def base_dir(self) -> Path:
        """The workspace folder on the host (upstream name); for a copy-on-write
        workspace, its upper layer (what the sandbox wrote)."""
        return self.overlay.upper if self.overlay is not None else self._base

    @property
    def workspace(self) -> Path:
        return self.base_dir

    def describe(self) -> str:
        return self.backend.describe()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the sandbox is up; raises the start-up error if it failed."""
        self._started.result(timeout)

    # --- commands ----------------------------------------------------------------------

    @property
    def _disk(self) -> Path:
        """The folder whose file system the sandbox's writes fill."""
        return self.overlay.upper if self.overlay is not None else self._base

    def _disk_reserve(self) -> tuple[int, int | None]:
        free, inodes = _free_space(self._disk)
        return (min(DISK_RESERVE_BYTES, free // 2),
                None if inodes is None else min(INODE_RESERVE, inodes // 2))

    async def _run(self, cmd: str, timeout: float | None, on_output: OutputCallback | None) -> CommandResult:
        if not self._started.done():  # wrap_future costs a thread-safe wake-up: only if needed
            await asyncio.wrap_future(self._started)
        self._started.result()  # the start-up error, if it failed
        return await self._guarded(
            cmd, self._disk_reserve(), lambda: self.backend.run(cmd, timeout=timeout, on_output=on_output))

    async def _guarded(self, cmd: str, reserve: tuple[int, int | None],
                       start: Callable[[], Awaitable[CommandResult]]) -> CommandResult:
        """Await a backend command while the disk watchdog looks after the workspace."""
        me = asyncio.current_task()
        assert me is not None
        stopped: list[str] = []
        watch: list[asyncio.Future[None]] = []
        # A timer, not a task: most commands end before the first look, and a timer
        # costs a few microseconds on this hot path.
        timer = asyncio.get_running_loop().call_later(
            DISK_CHECK_AFTER,
            lambda: watch.append(asyncio.ensure_future(self._watch_disk(me, reserve, stopped))))
        try:
            return await start()
        except asyncio.CancelledError:
            if not stopped:
                raise  # the caller cancelled: the backend killed the command
            uncancel = getattr(me, "uncancel", None)
            if uncancel is not None:  # Python >= 3.11: this cancellation was ours
                uncancel()
            return CommandResult(cmd, None, stderr=stopped[0] + "\n",
                                 note="stopped: disk nearly full")
        finally:
            timer.cancel()
            for task in watch:
                task.cancel()

    def _run_direct(self, cmd: str, timeout: float | None,
                    on_output: OutputCallback | None) -> CommandResult | None:
        """The synchronous fast path: this thread writes the command and reads its
        output itself, so a short command costs one wake-up instead of two thread
        hand-offs. A command still running after the disk watchdog's first look
        (``DISK_CHECK_AFTER``), failing or interrupted is finished on the loop thread,
        where the watchdogs, kills and recovery live. None: use the loop thread."""
        if not self._direct_ok:
            if getattr(self.backend, "run_direct", None) is None or not self._started.done() \
                    or self._started.cancelled() or self._started.exception() is not None:
                return None
            self._direct_ok = True  # started well: no need to ask the future again
        if len(cmd) > DIRECT_MAX_COMMAND:
            return None  # a huge command line is written with the loop's flow control
        backend = cast(DirectBackend, self.backend)
        run_direct = backend.run_direct
        reserve = self._disk_reserve()
        got = run_direct(cmd, timeout=timeout, on_output=on_output, budget=DISK_CHECK_AFTER)
        if got is None:  # not set up (first command, or the loop used the shell since)
            if not self._loop.call(backend.prepare_direct()):
                return None
            got = run_direct(cmd, timeout=timeout, on_output=on_output, budget=DISK_CHECK_AFTER)
            if got is None:
                return None
        if isinstance(got, CommandResult):
            return got
        result: CommandResult = self._loop.call(
            self._guarded(cmd, reserve, lambda: backend.finish_handover(got)))
        interrupted = getattr(got, "interrupted", None)
        if interrupted is not None:
            raise interrupted  # Ctrl-C: the command was killed on the loop; say so upward
        return result

    async def _watch_disk(self, command: asyncio.Task[Any], reserve: tuple[int, int | None],
                          stopped: list[str]) -> None:
        """While ``command`` runs: cancel it (which kills it) when the workspace's disk
        runs low, leaving the reason in ``stopped``."""
        min_bytes, min_inodes = reserve
        while not command.done():
            free, inodes = _free_space(self._disk)
            low_space = free < min_bytes
            if low_space or (min_inodes is not None and inodes is not None and inodes < min_inodes):
                what = (f"{free >> 20} MiB free" if low_space else f"{inodes} free inodes")
                stopped.append(
                    f"stopped: the disk holding the workspace is nearly full ({what}); the "
                    "command was killed so the machine and this session keep working. "
                    "Remove what it wrote (or free space) before running it again.")
                command.cancel()
                return
            await asyncio.sleep(DISK_CHECK_EVERY)

    def banned_reason(self, cmd: str) -> str | None:
        """Why ``cmd`` is refused by ``PYGENT_BANNED_COMMANDS``, or None (upstream check)."""
        if not self.settings.banned_commands:
            return None
        from pygent.policy import Action, Policy

        decision = Policy.for_mode("api", self.kind, banned=self.settings.banned_commands).decide(
            "bash", {"cmd": cmd})
        return decision.reason if decision.action is Action.DENY else None

    async def arun(
        self, cmd: str, *, timeout: float | None = None, on_output: OutputCallback | None = None
    ) -> CommandResult:
        """Run a command from any event loop. Cancelling the caller kills the command."""
        self._check_open()
        reason = self.banned_reason(cmd)
        if reason is not None:
            return CommandResult(cmd, None, stderr=f"refused: {reason}\n", note="not run")
        return await self._loop.run(self._run(cmd, timeout, on_output))

    def run(
        self, cmd: str, timeout: float | None = 30, on_output: OutputCallback | None = None
    ) -> CommandResult:
        """Run a command and wait for its :class:`CommandResult`.

        ``on_output`` is called with (stream, text) as output arrives, on this thread
        for a command that ends quickly, else on the runtime's loop thread.
        """
        self._check_open()
        reason = self.banned_reason(cmd)
        if reason is not None:
            return CommandResult(cmd, None, stderr=f"refused: {reason}\n", note="not run")
        result = self._run_direct(cmd, timeout, on_output)
        if result is not None:
            return result
        return self._loop.call(self._run(cmd, timeout, on_output))

    def bash(self, cmd: str, timeout: float | None = 30, stream: Any = None) -> str:
        """Run ``cmd`` and return the command followed by its output (upstream form).

        ``stream`` is called with each chunk of output text as it arrives.
        """
        on_output = (lambda _name, text: stream(text)) if stream is not None else None
        return self.run(cmd, timeout=timeout, on_output=on_output).format()

    # --- files -------------------------------------------------------------------------

    def read_file(self, path: str | os.PathLike[str], binary: bool = False) -> str | bytes:
        """Return a workspace file's contents; paths leaving the workspace are refused."""
        data = self.files.read_bytes(path)
        return data if binary else data.decode("utf-8", errors="replace")

    def write_file(self, path: str | os.PathLike[str], content: str | bytes) -> str:
        """Write a workspace file atomically; returns its workspace-relative path."""
        data = content.encode() if isinstance(content, str) else content
        return self.files.write(path, data)

    def upload_file(self, src: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None) -> Path:
        """Copy a host file or folder into the workspace (default: its base name)."""
        source = Path(src).expanduser()
        if not source.exists():
            raise PathError(f"cannot upload {source}: it does not exist")
        target_rel = self.files.relpath(dest if dest is not None else source.name)
        if source.is_dir():
            for dirpath, _dirs, names in os.walk(source, followlinks=False):
                rel_dir = Path(dirpath).relative_to(source)
                for name in names:
                    item = Path(dirpath) / name
                    if item.is_symlink() or not item.is_file():
                        continue
                    self.files.write(f"{target_rel}/{rel_dir}/{name}", item.read_bytes(), mode=item.stat().st_mode & 0o777)
        else:
            self.files.write(target_rel, source.read_bytes(), mode=source.stat().st_mode & 0o777)
        return self._base / target_rel

    def export_file(self, path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
        """Copy a workspace file or folder out to a host path (links are not followed)."""
        rel = self.files.relpath(path)
        target = Path(dest).expanduser()
        st = self.files.root.lstat() if rel == "" else self.files.lstat(rel)
        if st is None:
            raise PathError(f"{os.fspath(path)!r} does not exist in the workspace")
        import stat as _stat

        if _stat.S_ISDIR(st.st_mode):
            prefix = rel + "/" if rel else ""
            for sub, _ in self.files.iter_files():
                if sub.startswith(prefix):
                    out = target / sub[len(prefix):]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(self.files.read_bytes(sub))
        else:
            if target.is_dir():
                target = target / Path(rel).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.files.read_bytes(rel))
        return target

    # --- life cycle --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeUnavailable("this runtime was cleaned up; create a new Runtime")

    async def aclose(self) -> None:
        """Async form of :meth:`cleanup` for callers on an event loop."""
        await asyncio.to_thread(self.cleanup)

    async def _shutdown(self) -> None:
        if not self._started.done():
            self._started.cancel()
            await asyncio.sleep(0)  # let the cancelled start unwind before closing
        await self.backend.close()

    def cleanup(self) -> None:
        """Stop the sandbox (removing its container) and a temporary workspace."""
        if self._closed:
            return
        self._closed = True
        _live.discard(self)
        try:
            self._loop.call(self._shutdown(), timeout=60)
        except Exception:
            log.exception("closing the sandbox failed")
        finally:
            self._loop.stop()
            if self._owns_workspace:
                remove_scratch_dir(self._base)
            if self.overlay is not None:
                self.overlay.remove()  # after the container and volume: O(changed files)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"<Runtime {self.describe()} workspace={self._base}>"
