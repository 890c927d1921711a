"""Podman's Docker-compatible API socket, rootful and rootless, started by the tests.

.ci/podman-setup.sh prepares the image stores (the test images loaded from the Docker
engine) and the rootless user; this file starts ``podman system service --time=0`` on a
socket of its own for each mode and stops it (and the rootless user namespace's holder
process it started) at the end of the session.

Tests here are marked ``docker``: where Podman cannot run, they fail when CI is set
(tests/conftest.py's gate for the Docker engine itself, plus the fixture failing with
the exact reason) and are skipped with that reason otherwise.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / ".ci" / "podman-setup.sh"


@dataclass(frozen=True)
class PodmanEngine:
    """A running ``podman system service``: its mode, DOCKER_HOST and the user whose
    uid the sandbox commands run as (rootless: the podman user's, as Pygent run by that
    user would)."""

    mode: str  # "rootful" or "rootless"
    url: str
    uid: int
    gid: int


def _not_available(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but Podman cannot run: {why}", pytrace=False)
    pytest.skip(f"Podman cannot run: {why}")


@pytest.fixture(scope="session")
def podman_setup() -> dict[str, str]:
    """The settings .ci/podman-setup.sh prints (it runs in a second or two once cached)."""
    if os.geteuid() != 0:
        _not_available("the Podman tests set up a user and image stores: run them as root")
    try:
        out = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=900)
    except FileNotFoundError as exc:
        _not_available(f"bash is missing: {exc}")
    if out.returncode != 0:
        _not_available(f".ci/podman-setup.sh failed:\n{out.stdout}\n{out.stderr[-3000:]}")
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def _wait_for_socket(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import docker

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _not_available(f"podman system service exited ({proc.returncode}):\n"
                           f"{log.read_text(errors='replace')[-2000:]}")
        try:
            client = docker.DockerClient(base_url=url, timeout=5)
            try:
                client.ping()
                return
            finally:
                client.close()
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.2)
    _not_available(f"podman system service did not answer on {url} within 60 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the service's process group (runuser and podman, or podman)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="session")
def rootful_podman(podman_setup: dict[str, str],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanEngine]:
    folder = tmp_path_factory.mktemp("podman-rootful")
    sock = folder / "podman.sock"
    log = folder / "service.log"
    flags = shlex.split(podman_setup["PYGENT_PODMAN_ROOTFUL_FLAGS"])
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["podman", *flags, "system", "service", "--time=0", f"unix://{sock}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "CONTAINERS_CONF": podman_setup["PYGENT_PODMAN_CONF"]},
        )
    try:
        _wait_for_socket(f"unix://{sock}", proc, log)
        yield PodmanEngine("rootful", f"unix://{sock}", os.getuid(), os.getgid())
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def rootless_podman(podman_setup: dict[str, str],
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanEngine]:
    if podman_setup.get("PYGENT_PODMAN_ROOTLESS_OK") != "1":
        _not_available(podman_setup.get("PYGENT_PODMAN_ROOTLESS_WHY") or "rootless setup failed")
    user = podman_setup["PYGENT_PODMAN_ROOTLESS_USER"]
    run = Path(podman_setup["PYGENT_PODMAN_ROOTLESS_RUN"])
    uid = int(podman_setup["PYGENT_PODMAN_ROOTLESS_UID"])
    sock = run / "podman.sock"
    log = tmp_path_factory.mktemp("podman-rootless") / "service.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["runuser", "-u", user, "--", "env", f"HOME={podman_setup['PYGENT_PODMAN_ROOTLESS_HOME']}",
             f"XDG_RUNTIME_DIR={run}", "podman", "system", "service", "--time=0", f"unix://{sock}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_socket(f"unix://{sock}", proc, log)
        yield PodmanEngine("rootless", f"unix://{sock}", uid, uid)
    finally:
        _stop(proc)
        sock.unlink(missing_ok=True)
        # The user namespace's holder (catatonit -P) this service started.
        pause = run / "libpod" / "tmp" / "pause.pid"
        try:
            os.kill(int(pause.read_text().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


@pytest.fixture(params=["rootful", "rootless"])
def podman(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> PodmanEngine:
    """DOCKER_HOST set to Podman's socket (rootful or rootless)."""
    engine: PodmanEngine = request.getfixturevalue(f"{request.param}_podman")
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    for name in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    return engine
