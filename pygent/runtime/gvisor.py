"""Container runtimes other than runc (gVisor's ``runsc``): checking the engine has one.

Docker picks a container's OCI runtime by name (``docker run --runtime=runsc``); the
name must be registered with the daemon (``/etc/docker/daemon.json``), and an
unknown name only fails when the container is created, with an engine error that
does not say what to do. Pygent asks the engine first and says how to register it.
"""

from __future__ import annotations

from typing import Any

from pygent.errors import RuntimeUnavailable

#: The daemon.json entry that registers gVisor (ptrace: works without /dev/kvm).
RUNSC_REGISTRATION = '{"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--platform=ptrace"]}}}'


def registration_hint(name: str) -> str:
    """How to make ``name`` a runtime the engine knows."""
    if name == "runsc":
        return (
            "install gVisor (`apt-get install runsc` on Debian/Ubuntu), add "
            f"{RUNSC_REGISTRATION} to /etc/docker/daemon.json and reload the engine "
            "(`sudo kill -HUP $(pidof dockerd)`, or `sudo systemctl reload docker`); "
            "or unset PYGENT_DOCKER_RUNTIME to use the default runtime"
        )
    return (
        f"register {name!r} under \"runtimes\" in /etc/docker/daemon.json and reload the "
        "engine, or unset PYGENT_DOCKER_RUNTIME to use the default runtime"
    )


def engine_runtimes(client: Any) -> tuple[list[str], str]:
    """(runtimes the engine knows, its default runtime) from ``docker info``."""
    info = client.info()
    runtimes = sorted((info.get("Runtimes") or {}).keys())
    return runtimes, str(info.get("DefaultRuntime") or "runc")


def check_runtime(client: Any, name: str | None, *, network: bool = False) -> str | None:
    """Raise :class:`RuntimeUnavailable` with the fix when the engine lacks ``name``.

    Args:
        client: a connected ``docker.DockerClient``.
        name: the runtime asked for (None or "": the engine's default, always fine).
        network: the session asks for network access.

    Returns:
        A warning for the user, or None: network was asked for, but the runtime is
        registered with ``--network=none`` (gVisor where its network stack cannot start,
        see .ci/gvisor-setup.sh), so the sandbox will have none.
    """
    if not name:
        return None
    info = client.info()
    registered = info.get("Runtimes") or {}
    runtimes = sorted(registered)
    if name not in runtimes:
        known = ", ".join(runtimes) or "none listed"
        raise RuntimeUnavailable(
            f"the Docker runtime {name!r} (PYGENT_DOCKER_RUNTIME / [docker] runtime) is not "
            f"registered with the engine (it knows: {known})",
            hint=registration_hint(name),
        )
    args = (registered.get(name) or {}).get("runtimeArgs") or []
    if network and "--network=none" in args:
        return (f"network access was asked for, but the engine runs {name!r} with "
                "--network=none (see /etc/docker/daemon.json): this sandbox has no network")
    return None


def runtime_label(name: str | None) -> str:
    """How banners name a runtime: ``gVisor`` for runsc, else the name (runc: empty)."""
    if not name or name == "runc":
        return ""
    return "gVisor" if name == "runsc" else name
