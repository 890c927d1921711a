"""The bubblewrap backend: the persistent shell in a ``bwrap`` sandbox when there is no Docker.

Each shell runs as ``bwrap ... -- /bin/sh -c SHELL_LAUNCH`` with new user, pid, ipc,
uts (and, unless the network is allowed, net) namespaces; the system directories
(``/usr``, the ``/bin``/``/lib`` links, a short list of ``/etc`` files) read-only; the
workspace read-write at its own path (the working directory, so paths in output are the
ones the user's editor knows) and at ``/workspace`` (as in Docker); private sized tmpfs mounts on
``/tmp`` and ``$HOME`` (``/tmp/home``); a fresh ``/proc`` and a minimal ``/dev``; no
capabilities, no further user namespaces; an allow-listed environment (never the
host's). The host's home, ``/root``, ``/opt``, ``/var``, ``/run`` (the Docker socket)
and every other user's files are simply not there.

It reuses the local backend's shell plumbing (pipes, tag, clean-up watcher): bwrap's
own process is the one Pygent holds, and ``--die-with-parent`` plus the pid namespace
mean that when it dies, everything the commands started dies with it.

Limits: per-process rlimits (open files, file size, no core dumps) always, through
``prlimit``; process count, memory and CPU through a cgroup where this process may
make one (cgroup v1 controllers, or v2 with the controller delegated), else not, and
:attr:`BwrapBackend.limits` says which. ``RLIMIT_NPROC`` is no substitute: the kernel
does not enforce it for root, and for other users it counts every process they own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pygent.runtime.local import LocalBackend, LocalShellTransport
from pygent.runtime.sandbox_env import sandbox_environment
from pygent.runtime.shell import PersistentShell

log = logging.getLogger(__name__)

#: Where the workspace and the home directory are inside the sandbox (as in Docker).
WORKDIR = "/workspace"
HOME = "/tmp/home"

#: Top-level system paths bound read-only (or re-created as the same symlink).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

#: /etc entries programs need to run (users, libraries, certificates, time zone); the
#: rest of /etc (shadow, ssh host keys, sudoers, credentials of services) stays out.
ETC_ENTRIES = (
    "passwd", "group", "nsswitch.conf", "hosts", "host.conf", "ld.so.cache", "ld.so.conf",
    "ld.so.conf.d", "alternatives", "ssl", "ca-certificates", "ca-certificates.conf",
    "localtime", "timezone", "os-release", "debian_version", "mime.types", "protocols",
    "services", "inputrc", "bash.bashrc", "profile", "terminfo", "magic", "python3",
    "python3.11", "python3.12", "perl", "gitconfig",
)  # fmt: skip


@dataclass(frozen=True)
class BwrapOptions:
    """How the sandbox is built; the defaults match the Docker sandbox's."""

    network: bool = False  # False: a new network namespace with only loopback
    pids_limit: int = 512  # cgroup pids.max, where a cgroup can be made
    memory_bytes: int = 2 << 30  # cgroup memory limit (no swap), where possible
    cpus: float = 2.0  # cgroup CPU quota, where possible
    nofile: int = 4096  # open files per process (rlimit)
    fsize_bytes: int = 2 << 30  # largest file a command may write (rlimit)
    tmp_size: int = 256 << 20  # size of the /tmp and $HOME tmpfs mounts
    env: dict[str, str] = field(default_factory=dict)  # extra variables (-e NAME=value)


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def bwrap_argv(workspace: Path, options: BwrapOptions, bwrap: str = "bwrap") -> list[str]:
    """The ``bwrap ... --`` prefix that builds the sandbox around ``workspace``."""
    argv = [
        bwrap,
        "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try",
        "--disable-userns",  # no nested user namespace: no capabilities to win back
        "--cap-drop", "ALL",
        "--die-with-parent",  # Pygent gone (even kill -9): the sandbox goes too
        "--new-session",  # no TIOCSTI into a terminal Pygent may hold
        "--hostname", "sandbox",
    ]  # fmt: skip
    if not options.network:
        argv.append("--unshare-net")
    for path in SYSTEM_PATHS:
        if os.path.islink(path):  # merged /usr: /bin -> usr/bin
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    argv += ["--dir", "/etc"]
    etc = list(ETC_ENTRIES) + (["resolv.conf"] if options.network else [])
    for name in etc:
        path = f"/etc/{name}"
        if os.path.lexists(path) and os.path.exists(path):
            argv += ["--ro-bind", path, path]
    argv += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(options.tmp_size), "--tmpfs", "/tmp",
        "--size", str(options.tmp_size), "--perms", "0700", "--tmpfs", HOME,
        # The workspace at its own path (commands print the paths the user's editor
        # knows, as in local mode) and at /workspace (as in Docker).
        "--bind", str(workspace), str(workspace),
        "--bind", str(workspace), WORKDIR,
        "--chdir", str(workspace),
        "--",
    ]  # fmt: skip
    return argv


def prlimit_argv(options: BwrapOptions) -> list[str]:
    """``prlimit ... --``: the per-process limits the sandbox inherits (util-linux)."""
    path = shutil.which("prlimit")
    if path is None:
        return []
    return [path, f"--nofile={options.nofile}", f"--fsize={options.fsize_bytes}", "--core=0", "--"]


_probe_cache: dict[tuple[str, bool], str | None] = {}


def bwrap_unavailable_reason(network: bool = False) -> str | None:
    """Why bubblewrap cannot make a sandbox here, or None when it can (cached).

    The probe runs ``true`` in exactly the sandbox the backend builds, so a kernel
    that refuses user namespaces (``kernel.unprivileged_userns_clone=0``, an AppArmor
    ``userns`` restriction, a seccomp profile of an outer container) is caught here,
    with bwrap's own words.
    """
    path = bwrap_path()
    if path is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    key = (path, network)
    if key in _probe_cache:
        return _probe_cache[key]
    probe_dir = Path(tempfile.mkdtemp(prefix="pygent-bwrap-probe-"))  # an empty workspace
    argv = bwrap_argv(probe_dir, BwrapOptions(network=network), path) + ["/bin/sh", "-c", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=20, stdin=subprocess.DEVNULL,
                              env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason: str | None = f"bwrap could not run: {exc}"
    else:
        text = done.stderr.decode(errors="replace").strip().splitlines()
        reason = None if done.returncode == 0 else (
            f"bwrap cannot create its namespaces here: {text[-1] if text else done.returncode}")
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)
    _probe_cache[key] = reason
    return reason


class CgroupLimits:
    """A cgroup per sandbox for process count, memory and CPU, where one can be made.

    Made under this process's own cgroup (so an outer container's limits still hold),
    in each cgroup-v1 controller hierarchy that is writable, or in the v2 tree when
    the controllers are delegated. Removed on :meth:`remove`; a folder left by a Pygent
    killed with ``-9`` is removed by the next one (its pid is in the name).
    """

    ROOT = Path("/sys/fs/cgroup")

    def __init__(self, name: str, options: BwrapOptions, proc_cgroup: str | None = None) -> None:
        """
        Args:
            name: the cgroup's folder name (``pygent-bwrap-<pid>-<tag>``).
            options: the limits.
            proc_cgroup: ``/proc/self/cgroup``'s text (tests pass another); None: read it.
        """
        self.name = name
        self.dirs: list[Path] = []
        self.applied: list[str] = []
        if proc_cgroup is None:
            try:
                proc_cgroup = Path("/proc/self/cgroup").read_text()
            except OSError:
                proc_cgroup = ""
        lines = proc_cgroup.splitlines()
        for controller, settings in self._wanted(options).items():
            folder = self._parent(controller, lines)
            if folder is None:
                continue
            _reap_stale(folder)
            target = folder / name
            try:
                target.mkdir(exist_ok=True)
                for key, value in settings.items():
                    if (target / key).exists():
                        (target / key).write_text(value)
            except OSError as exc:
                log.debug("no %s cgroup for the sandbox: %s", controller, exc)
                if target not in self.dirs:  # v2: one folder holds every controller
                    with contextlib.suppress(OSError):
                        target.rmdir()
                continue
            if target not in self.dirs:
                self.dirs.append(target)
            self.applied.append(controller)

    @staticmethod
    def _wanted(o: BwrapOptions) -> dict[str, dict[str, str]]:
        period = 100_000
        return {
            "pids": {"pids.max": str(o.pids_limit)},
            # v1: the memsw limit must come after the plain one (it may not be lower).
            "memory": {"memory.limit_in_bytes": str(o.memory_bytes),
                       "memory.memsw.limit_in_bytes": str(o.memory_bytes),
                       "memory.max": str(o.memory_bytes), "memory.swap.max": "0"},
            "cpu": {"cpu.cfs_period_us": str(period),
                    "cpu.cfs_quota_us": str(int(o.cpus * period)),
                    "cpu.max": f"{int(o.cpus * period)} {period}"},
        }

    def _parent(self, controller: str, lines: list[str]) -> Path | None:
        """Where this process's cgroup for ``controller`` is, if we may write there.

        v1: the controller's own hierarchy (``N:pids:/path``). v2 (``0::/path``, and
        ``cgroup.controllers`` at the root): the one unified tree, where the controller
        must be enabled in the parent's ``cgroup.subtree_control``. The kernel allows
        that only in a cgroup without processes of its own, or at a (namespace) root:
        in practice Pygent in a container with its own cgroup namespace, or a parent
        delegated to it; a systemd user session's scope has no controllers enabled, so
        there the limits are reported as not applied."""
        for line in lines:
            _num, controllers, path = line.split(":", 2)
            if controller in controllers.split(","):  # v1 hierarchy
                folder = self.ROOT / controller / path.lstrip("/")
            elif controllers == "" and (self.ROOT / "cgroup.controllers").exists():
                folder = self.ROOT / path.lstrip("/")  # pure v2
                try:
                    if controller not in (folder / "cgroup.subtree_control").read_text().split():
                        continue
                except OSError:
                    continue
            else:
                continue
            if folder.is_dir() and os.access(folder, os.W_OK):
                return folder
        return None

    def join_argv(self) -> list[str]:
        """``sh -c 'echo $$ > .../cgroup.procs; exec "$@"'``: what joins the cgroups
        before bwrap starts (so nothing the sandbox starts runs outside them)."""
        if not self.dirs:
            return []
        writes = "; ".join(f"echo $$ > '{d}/cgroup.procs'" for d in self.dirs)
        return ["/bin/sh", "-c", f'{writes}; exec "$@"', "pygent-cgroup"]

    def remove(self) -> None:
        """Remove the cgroups; those still busy stay in :attr:`dirs` for another try."""
        left = []
        for folder in self.dirs:
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError:  # EBUSY while a process is still in it
                left.append(folder)
        self.dirs = left


def _reap_stale(folder: Path) -> None:
    """Remove ``pygent-bwrap-<pid>-*`` cgroups whose Pygent is gone and that are empty."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            parts = entry.name.split("-")
            if len(parts) == 4 and entry.name.startswith("pygent-bwrap-") and parts[2].isdigit():
                if not Path(f"/proc/{parts[2]}").exists():
                    with contextlib.suppress(OSError):
                        entry.rmdir()


class BwrapBackend(LocalBackend):
    """Runs commands in a bubblewrap sandbox through a persistent shell.

    Args:
        workspace: the host folder the sandbox sees read-write at ``/workspace``.
        options: namespaces, network and limits (see :class:`BwrapOptions`).
        output_limit: total output after which a command is killed.
    """

    kind = "bwrap"

    def __init__(self, workspace: Path, options: BwrapOptions | None = None, *,
                 output_limit: int = 64 * 1024 * 1024) -> None:
        self.options = options or BwrapOptions()
        workspace = Path(workspace).resolve()  # bound at this path: no symlinks in it
        super().__init__(workspace, extra_env=self.options.env, output_limit=output_limit)
        tag = self.tag
        # Not the host's variables: the sandbox's own PATH, HOME and locale.
        self._env = sandbox_environment(self.options.env, host=False, home=HOME)
        self._env["PYGENT_SANDBOX_ID"] = tag
        self._shell = PersistentShell(self._spawn, initial_cwd=str(workspace), output_limit=output_limit)
        self._cgroup: CgroupLimits | None = None
        self._wrapper: list[str] = []

    @property
    def limits(self) -> list[str]:
        """Which limits hold: rlimits always, cgroup controllers where they could be made."""
        rlimits = ["nofile", "fsize", "core"] if shutil.which("prlimit") else []
        return rlimits + (self._cgroup.applied if self._cgroup is not None else [])

    def describe(self) -> str:
        return "bubblewrap sandbox" + ("" if self.options.network else " (no network)")

    async def start(self) -> None:
        if self._cgroup is None:
            bwrap = bwrap_path() or "bwrap"
            self._cgroup = await asyncio.to_thread(
                CgroupLimits, f"pygent-bwrap-{os.getpid()}-{self.tag}", self.options)
            self._wrapper = [*self._cgroup.join_argv(), *prlimit_argv(self.options),
                             *bwrap_argv(self.workspace, self.options, bwrap)]
        await super().start()

    async def _spawn(self) -> LocalShellTransport:
        return await LocalShellTransport.spawn(self.workspace, self._env, wrapper=self._wrapper)

    async def close(self) -> None:
        await super().close()
        if self._cgroup is not None:
            for _ in range(20):  # the kernel empties the cgroup a moment after the kill
                self._cgroup.remove()
                if not self._cgroup.dirs:
                    break
                await asyncio.sleep(0.05)
