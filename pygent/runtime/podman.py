"""Podman behind the Docker API: recognising it, and the few container settings it needs.

Podman's ``podman system service`` answers the Docker Engine API, so the Docker backend
drives it unchanged, with these differences (docs/sandbox.md, "Podman"):

- Rootful Podman raises every container's ``RLIMIT_NPROC`` (and ``RLIMIT_NOFILE``) to its
  maximum unless told otherwise; Docker leaves them as the daemon has them. Raising a hard
  limit needs ``CAP_SYS_RESOURCE``, which root lacks in many CI machines, VMs and nested
  containers: the container then fails with "error setting rlimit type 6: operation not
  permitted". Pygent already sets ``nofile``; for Podman it also sets ``nproc`` to a value
  that needs no raise (:func:`nproc_limit`; the real process cap is the cgroup's
  ``pids_limit``). Should a remote Podman still refuse, the start error says how to set
  the limits in that machine's ``containers.conf``.
- Rootless Podman 4.3's Docker API ignores the ulimits a container is created with: the
  sandbox's shell sets them itself (:func:`shell_limits`).
- Rootless Podman runs containers in a user namespace: uid 0 inside is the user, any
  other uid a subordinate one, so a command running as the host uid would write workspace
  files owned by a stranger uid. ``userns_mode="keep-id"`` maps the user's uid to itself.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: The Components name Podman reports in ``GET /version``.
PODMAN_COMPONENT = "Podman Engine"


@dataclass(frozen=True)
class EngineFlavour:
    """What kind of engine answers the Docker API, as far as Pygent must adapt to it."""

    name: str = "Docker"  # "Docker" or "Podman"
    version: str = ""
    rootless: bool = False
    #: Why the engine cannot apply memory/CPU/process limits, or None (it can).
    limits_problem: str | None = None

    @property
    def podman(self) -> bool:
        return self.name == "Podman"

    @property
    def ignores_ulimits(self) -> bool:
        """Rootless Podman 4.3's Docker API drops ``HostConfig.Ulimits`` (seen here: a
        container asked for nofile=4096 gets the user's 20000): see :func:`shell_limits`."""
        return self.podman and self.rootless

    def label(self) -> str:
        """How banners name the engine: "" for Docker (the default), else "Podman[ rootless]"."""
        if not self.podman:
            return ""
        return "Podman rootless" if self.rootless else "Podman"


def flavour_of(version: dict[str, Any], info: dict[str, Any] | None = None) -> EngineFlavour:
    """The engine behind ``GET /version`` (and ``GET /info`` for rootless).

    Args:
        version: the engine's ``/version`` answer (``client.version()``).
        info: its ``/info`` answer (``client.info()``), or None when not fetched.
    """
    components = version.get("Components") or []
    names = {str(c.get("Name", "")) for c in components if isinstance(c, dict)}
    info = info or {}
    security = [str(s) for s in (info.get("SecurityOptions") or [])]
    # Podman says so in its own "Rootless" key; rootless Docker in SecurityOptions.
    rootless = bool(info.get("Rootless")) or any("name=rootless" in s for s in security)
    if PODMAN_COMPONENT in names:
        return EngineFlavour("Podman", str(version.get("Version", "")), rootless)
    return EngineFlavour("Docker", str(version.get("Version", "")), rootless)


#: The engine behind each endpoint URL, asked once per process (connect() asks).
_known: dict[str, EngineFlavour] = {}


def known_flavour(url: str) -> EngineFlavour | None:
    """The engine at ``url`` if this process has asked it already, else None."""
    return _known.get(url)


def remember_flavour(url: str, client: Any) -> EngineFlavour:
    """Ask the engine at ``url`` what it is, once per process; a failure counts as Docker."""
    flavour = _known.get(url)
    if flavour is None:
        try:
            flavour = detect(client)
        except Exception as exc:  # noqa: BLE001 - an odd engine is driven as Docker
            log.warning("could not ask the engine what it is (assuming Docker): %s", exc)
            flavour = EngineFlavour()
        _known[url] = flavour
    return flavour


def detect(client: Any) -> EngineFlavour:
    """Ask a connected ``docker.DockerClient`` which engine it talks to: ``/version``, and
    for Podman ``/info`` too (whether it runs rootless, and can limit resources)."""
    version = client.version()
    flavour = flavour_of(version)
    if not flavour.podman:
        return flavour
    info = client.info()
    flavour = flavour_of(version, info)
    if not flavour.rootless:
        return flavour
    controllers: list[str] | None = None
    try:  # Podman's own /info lists the cgroup controllers delegated to the user
        answer = client.api.get(client.api.base_url + "/v4.0.0/libpod/info", timeout=10)
        if answer.status_code == 200:
            controllers = list(answer.json().get("host", {}).get("cgroupControllers") or [])
    except (OSError, ValueError) as exc:  # an old Podman: judge by the cgroup version alone
        log.debug("no libpod info: %s", exc)
    problem = rootless_limits_problem(str(info.get("CgroupVersion") or ""), controllers)
    return dataclasses.replace(flavour, limits_problem=problem)


def rootless_limits_problem(cgroup_version: str, controllers: list[str] | None) -> str | None:
    """Why rootless Podman cannot limit a sandbox's memory, CPU and processes, or None.

    Podman's Docker API reports ``MemoryLimit: true`` regardless, and silently drops
    the limits it cannot apply: a rootless engine needs cgroup v2 with the ``memory``,
    ``pids`` and ``cpu`` controllers delegated to the user (systemd does this for user
    sessions on most current distributions)."""
    if cgroup_version == "1":
        return ("rootless Podman on a cgroup v1 machine cannot limit the sandbox's memory, "
                "CPU or process count (it needs cgroup v2): a fork bomb or a memory hog in "
                "the sandbox is bounded only by your user's own limits")
    missing = [c for c in ("memory", "pids", "cpu") if controllers is not None and c not in controllers]
    if missing:
        return (f"rootless Podman has no {'/'.join(missing)} cgroup controller delegated to "
                "this user, so the sandbox's limits for them are not applied (delegate them: "
                "systemd's Delegate= for user@.service)")
    return None


#: The kernel's default ``pid_max``: the ``nproc`` given to a remote Podman's containers
#: (that machine's limits are unknown here; few hosts have a lower hard limit).
REMOTE_NPROC = 32768


def _pid_max() -> int:
    try:
        with open("/proc/sys/kernel/pid_max") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return REMOTE_NPROC


def nproc_limit(*, local: bool) -> int:
    """The ``nproc`` ulimit for a Podman container: no real limit (the cgroup's
    ``pids_limit`` is the cap), yet no raise above what the engine has.

    On this machine: the smaller of this process's hard ``RLIMIT_NPROC`` and the
    kernel's ``pid_max`` (no more processes can exist anyway). Podman itself lowers its
    own limit to ``pid_max`` when it cannot raise it (seen here: 32768 while its parent
    had 96367), so a value above that fails just the same.
    """
    if not local:
        return REMOTE_NPROC
    _soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    pid_max = _pid_max()
    return pid_max if hard == resource.RLIM_INFINITY else min(int(hard), pid_max)


def host_config_extras(flavour: EngineFlavour, *, local: bool) -> tuple[dict[str, int], str | None]:
    """What a container on ``flavour`` needs beyond Docker's settings.

    Args:
        flavour: the engine (see :func:`detect`).
        local: the engine runs on this machine (a ``unix://`` socket), so its limits
            are this machine's.

    Returns:
        (extra ulimits by name as ``{name: soft=hard value}``, the ``userns_mode`` or None).
    """
    if not flavour.podman:
        return {}, None
    return {"nproc": nproc_limit(local=local)}, ("keep-id" if flavour.rootless else None)


def start_failure_hint(flavour: EngineFlavour, error: str) -> str | None:
    """The fix for a Podman container that failed to start because of a limit; else None."""
    if not flavour.podman or "rlimit" not in error.lower():
        return None
    return (
        "this Podman engine cannot raise the containers' process or open-file limits (its "
        "root lacks CAP_SYS_RESOURCE): set default_ulimits = [\"nproc=65536:65536\", "
        "\"nofile=4096:4096\"] under [containers] in that machine's containers.conf "
        "(/etc/containers/containers.conf, or ~/.config/containers/containers.conf when "
        "rootless) and restart `podman system service`"
    )


def overlay_bind(lower: str, upper: str, work: str, target: str) -> str:
    """The ``Binds`` entry of a copy-on-write workspace on Podman: its own overlay mount
    (``-v lower:target:O,upperdir=...,workdir=...``) over the session's layers.

    Docker's way, a ``local`` volume with ``type=overlay`` options, mounts on Podman too,
    but Podman 4.3 chowns a new volume's root to the container's main user (Pygent's
    keeper uid) on first use, so the commands could no longer write the workspace root.
    An ``:O`` mount is not chowned; Podman gives its upper root the folder's own owner
    and mode instead, so (as with a bind mount) only the folder's owner, the commands'
    uid by default, can write the workspace root. Podman passes no overlay options of its own: the
    kernel's defaults apply, which Pygent's change set expects to be ``redirect_dir`` and
    ``metacopy`` off (Debian's; see :func:`overlay_defaults_problem`).
    """
    return f"{lower}:{target}:O,upperdir={upper},workdir={work}"


def overlay_defaults_problem() -> str | None:
    """Why this kernel's overlayfs defaults do not suit an ``:O`` mount, or None.

    Podman's ``:O`` mount cannot turn ``redirect_dir``/``metacopy`` off; with them on,
    a renamed folder or a chmod would be a redirect or a metadata-only entry in the
    upper layer, which the change set does not read."""
    for name in ("redirect_dir", "metacopy"):
        try:
            with open(f"/sys/module/overlay/parameters/{name}") as fh:
                value = fh.read().strip()
        except OSError:
            continue  # the module is not loaded yet: its defaults are the built-in (off)
        if value not in ("N", "off", "nofollow"):
            return f"this kernel mounts overlays with {name}={value} by default"
    return None


def shell_limits(nofile: int, fsize_bytes: int) -> str:
    """Shell code that sets the open-file, file-size and core limits itself, soft and
    hard (``ulimit`` without ``-S``/``-H``), before the sandbox's shell starts: what the
    engine should have set. Lowering a hard limit needs no privilege, and without
    ``CAP_SYS_RESOURCE`` no command can raise it again. ``-f`` counts 512-byte blocks
    (POSIX; dash and busybox sh run this)."""
    return f"ulimit -n {int(nofile)} && ulimit -f {int(fsize_bytes) // 512} && ulimit -c 0; "
