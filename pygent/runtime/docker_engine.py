"""The Docker engine seen from Pygent: connecting, images, and reaping orphaned containers.

Everything here is blocking (the docker SDK is synchronous); async callers run it
in a thread. Failures become :class:`~pygent.errors.RuntimeUnavailable` with a hint a
user can act on (start the daemon, join the ``docker`` group, pull the image...).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pygent.errors import RuntimeUnavailable
from pygent.runtime.ownership import LABEL_MANAGED, owner_alive
from pygent.runtime.podman import remember_flavour

if TYPE_CHECKING:  # the SDK is an optional dependency, imported where used
    import docker

log = logging.getLogger(__name__)

#: Seconds an API call may take before it counts as a hung daemon.
API_TIMEOUT = 60

ProgressCallback = Callable[[str], None]


def import_docker() -> Any:
    """The ``docker`` module, or RuntimeUnavailable with the install hint."""
    try:
        import docker
    except ImportError as exc:
        raise RuntimeUnavailable(
            "the docker SDK for Python is not installed",
            hint="pip install 'pygent[docker]' (or run with --local / PYGENT_USE_DOCKER=0)",
        ) from exc
    return docker


def _socket_path() -> str | None:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return host[len("unix://") :] if host.startswith("unix://") else None


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost OSError behind a requests/urllib3/docker exception chain."""
    seen: set[int] = set()
    found: BaseException = exc
    stack: list[BaseException | None] = [exc]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, OSError) and not type(cur).__module__.startswith(
            ("requests", "urllib3")
        ):
            found = cur
        stack.extend([cur.__cause__, cur.__context__])
        stack.extend(a for a in getattr(cur, "args", ()) if isinstance(a, BaseException))
    return found


def explain_engine_error(exc: BaseException) -> RuntimeUnavailable:
    """Turn a failure to reach the daemon into a clear message with a fix."""
    cause = _root_cause(exc)
    path = _socket_path()
    where = f"at {path}" if path else f"at {os.environ.get('DOCKER_HOST')}"
    if isinstance(cause, PermissionError):
        return RuntimeUnavailable(
            f"permission denied on the Docker socket {where}",
            hint="add your user to the docker group (sudo usermod -aG docker $USER, then log "
            "in again), use rootless Docker, or run with --local",
        )
    if isinstance(cause, FileNotFoundError):
        return RuntimeUnavailable(
            f"the Docker daemon is not running (no socket {where})",
            hint="start Docker (sudo systemctl start docker, or open Docker Desktop), "
            "or run with --local",
        )
    if isinstance(cause, ConnectionRefusedError):
        return RuntimeUnavailable(
            f"the Docker daemon refused the connection {where}",
            hint="start or restart Docker (sudo systemctl restart docker), or run with --local",
        )
    return RuntimeUnavailable(
        f"the Docker engine {where} did not answer: {_short(exc)}",
        hint="check `docker info`; start Docker or run with --local",
    )


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text if len(text) <= limit else text[:limit] + "..."


def connect(timeout: float = API_TIMEOUT) -> docker.DockerClient:
    """A client for the engine named by the environment (DOCKER_HOST), checked with a ping.

    Raises:
        RuntimeUnavailable: the SDK is missing, the daemon is down, or the socket
            is not accessible; the hint says how to fix it.
    """
    from pygent.runtime.remote import endpoint, make_client

    sdk = import_docker()
    try:
        # DOCKER_HOST, else the current Docker context; ssh:// through a tunnel.
        where = endpoint()
        client = make_client(sdk, where, timeout)
        client.ping()
    except sdk.errors.DockerException as exc:
        raise explain_engine_error(exc) from exc
    except OSError as exc:
        raise explain_engine_error(exc) from exc
    # Docker or Podman (once per process): banners name it before the sandbox starts.
    remember_flavour(where.url, client)
    return client


def docker_available() -> str | None:
    """None when a Docker engine answers, otherwise the reason (with the fix) why not."""
    try:
        client = connect(timeout=5)
    except RuntimeUnavailable as exc:
        return exc.user_message()
    client.close()
    return None


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` means the daemon could not be reached (down or restarting)."""
    import requests

    return isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError)) or (
        isinstance(_root_cause(exc), (ConnectionError, FileNotFoundError))
    )


# -- images -------------------------------------------------------------------------


def ensure_image(
    client: docker.DockerClient,
    image: str,
    *,
    pull: bool = True,
    progress: ProgressCallback | None = None,
) -> None:
    """Make ``image`` available locally: use it when present, else pull it.

    Args:
        client: a connected client.
        image: the image reference (``python:3.12-slim``).
        pull: False to fail instead of pulling a missing image.
        progress: called with short human-readable lines while pulling.

    Raises:
        RuntimeUnavailable: the image is missing and could not be pulled.
    """
    sdk = import_docker()
    try:
        client.images.get(image)
        return
    except sdk.errors.ImageNotFound:
        pass
    except sdk.errors.APIError as exc:
        raise RuntimeUnavailable(
            f"could not look up the sandbox image {image}: {_short(exc)}",
            hint="check `docker images`",
        ) from exc
    hint = (
        f"run `docker pull {image}` when online (or build it), or set PYGENT_IMAGE "
        "to an image listed by `docker images`"
    )
    if not pull:
        raise RuntimeUnavailable(f"the sandbox image {image} is not available locally", hint=hint)
    repo, tag = _split_reference(image)
    log.info("pulling %s", image)
    if progress:
        progress(f"pulling {image} ...")
    try:
        last = ""
        for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise RuntimeUnavailable(
                    f"the sandbox image {image} is not available locally and pulling it "
                    f"failed: {event['error']}",
                    hint=hint,
                )
            line = " ".join(str(event.get(k, "")) for k in ("id", "status", "progress")).strip()
            if progress and line and line != last:
                progress(line)
                last = line
        client.images.get(image)
    except RuntimeUnavailable:
        raise
    except (sdk.errors.DockerException, OSError) as exc:
        raise RuntimeUnavailable(
            f"the sandbox image {image} is not available locally and pulling it failed: "
            f"{_short(exc)}",
            hint=hint,
        ) from exc
    if progress:
        progress(f"pulled {image}")


def _split_reference(image: str) -> tuple[str, str | None]:
    """``repo[:tag][@digest]`` -> (repo, tag or digest); a registry port is not a tag."""
    if "@" in image:
        repo, digest = image.split("@", 1)
        return repo, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag
    return image, "latest"


# -- the orphan reaper (the labels: pygent.runtime.ownership) --------------------------


def reap_orphans(client: docker.DockerClient) -> list[str]:
    """Remove Pygent containers whose owner process is dead; returns their names.

    Only containers labelled ``pygent.managed=1`` are considered: a container
    without that label is never touched, whatever its name.
    """
    sdk = import_docker()
    removed: list[str] = []
    try:
        found = client.api.containers(all=True, filters={"label": f"{LABEL_MANAGED}=1"})
    except sdk.errors.DockerException as exc:
        log.warning("could not list containers to reap orphans: %s", exc)
        return removed
    for info in found:
        labels = info.get("Labels") or {}
        if labels.get(LABEL_MANAGED) != "1" or owner_alive(labels):
            continue
        name = (info.get("Names") or [info["Id"][:12]])[0].lstrip("/")
        try:
            client.api.remove_container(info["Id"], force=True, v=True)
        except sdk.errors.NotFound:
            continue  # removed meanwhile (another Pygent reaping)
        except sdk.errors.APIError as exc:
            log.warning("could not remove orphaned container %s: %s", name, exc)
            continue
        log.info("removed orphaned sandbox container %s (its Pygent process is gone)", name)
        removed.append(name)
    return removed


def container_logs(client: docker.DockerClient, container_id: str, limit: int = 2000) -> str:
    """The tail of a container's output, for error messages; empty when unavailable."""
    sdk = import_docker()
    with contextlib.suppress(sdk.errors.DockerException, OSError):
        raw = client.api.logs(container_id, stdout=True, stderr=True, tail=50)
        text = raw.decode("utf-8", errors="replace").strip()
        return text[-limit:]
    return ""
