"""Engine detection and the orphan reaper against a real Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pygent.runtime.docker_engine import docker_available, explain_engine_error, reap_orphans
from pygent.runtime.ownership import owner_labels, process_start_time
from tests.docker_gate import TEST_IMAGE

pytestmark = pytest.mark.docker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture()
def client():
    import docker

    c = docker.from_env()
    yield c
    c.close()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _create(client, name: str, labels: dict[str, str] | None) -> str:
    return client.api.create_container(
        TEST_IMAGE, entrypoint=["sleep", "60"], name=name, labels=labels or {}
    )["Id"]


def test_engine_is_available_here() -> None:
    assert docker_available() is None


def test_daemon_down_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    reason = docker_available()
    assert reason is not None and "not running" in reason and "/nonexistent/docker.sock" in reason
    assert "hint:" in reason


def _unprivileged(code: str, libs: Path) -> subprocess.CompletedProcess[str] | None:
    """Run ``code`` as user nobody, with a copy of the SDK it can read; None if impossible."""
    if os.getuid() != 0 or not shutil.which("setpriv"):
        return None
    import certifi
    import charset_normalizer
    import docker
    import idna
    import requests
    import urllib3

    for module in (docker, requests, urllib3, certifi, idna, charset_normalizer):
        shutil.copytree(Path(module.__file__).parent, libs / module.__name__)
    for path in (libs, *libs.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c"]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{ROOT}:{libs}", "HOME": "/tmp"}
    probe = subprocess.run([*argv, "import docker"], capture_output=True, env=env, timeout=60)
    if probe.returncode != 0:
        return None
    return subprocess.run(
        [*argv, code], capture_output=True, text=True, cwd="/", env=env, timeout=60
    )


def test_socket_permission_denied_is_explained() -> None:
    libs = Path(tempfile.mkdtemp(prefix="pygent-sdk-"))
    try:
        out = _unprivileged(
            "from pygent.runtime.docker_engine import docker_available; print(docker_available())",
            libs,
        )
    finally:
        shutil.rmtree(libs)
    if out is None:
        pytest.skip("needs root, setpriv, and a docker SDK that user nobody can import")
    assert "permission denied" in out.stdout and "docker group" in out.stdout, out


def test_permission_error_chain_from_the_sdk_is_explained() -> None:
    import docker

    # The shape docker.from_env() raises: DockerException from requests from PermissionError.
    try:
        try:
            raise PermissionError(13, "Permission denied")
        except PermissionError as exc:
            raise docker.errors.DockerException(
                f"Error while fetching server API version: ('Connection aborted.', {exc!r})"
            ) from exc
    except docker.errors.DockerException as exc:
        error = explain_engine_error(exc)
    assert "permission denied on the Docker socket" in str(error)
    assert "docker group" in error.hint


def test_reaper_removes_dead_owners_only_and_never_unlabelled(client) -> None:
    tag = os.urandom(4).hex()
    dead = {**owner_labels(), "pygent.owner_pid": str(_dead_pid()), "pygent.owner_start": "1"}
    reused = {**owner_labels(), "pygent.owner_start": "12345"}  # our PID, another start time
    alive = owner_labels()
    elsewhere = {**dead, "pygent.owner_host": "some-other-host"}
    ids = {
        "dead": _create(client, f"pygent-orphan-{tag}", dead),
        "reused": _create(client, f"pygent-reused-{tag}", reused),
        "alive": _create(client, f"pygent-alive-{tag}", alive),
        "elsewhere": _create(client, f"pygent-elsewhere-{tag}", elsewhere),
        # Looks like ours by name, but carries no label: must never be touched.
        "unlabelled": _create(client, f"pygent-{os.getpid()}-{tag}", None),
    }
    try:
        removed = reap_orphans(client)
        assert f"pygent-orphan-{tag}" in removed and f"pygent-reused-{tag}" in removed
        present = {c["Id"] for c in client.api.containers(all=True)}
        assert ids["dead"] not in present and ids["reused"] not in present
        assert {ids["alive"], ids["elsewhere"], ids["unlabelled"]} <= present
    finally:
        import docker

        for cid in ids.values():
            try:
                client.api.remove_container(cid, force=True)
            except docker.errors.NotFound:
                continue  # reaped above


def test_owner_start_time_reads_proc() -> None:
    assert process_start_time(os.getpid()) == owner_labels()["pygent.owner_start"]
    assert process_start_time(_dead_pid()) is None


_OWNER = """
import asyncio, sys, tempfile
from pathlib import Path
from pygent.runtime.docker_backend import DockerBackend, DockerOptions

async def main():
    backend = DockerBackend(Path(tempfile.mkdtemp()), DockerOptions(image=sys.argv[1], pull=False))
    await backend.start()
    print(backend.container_id, flush=True)
    if sys.argv[2] == "hang":
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def _owner(mode: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _OWNER, TEST_IMAGE, mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_a_process_that_exits_without_close_removes_its_container(client) -> None:
    import docker

    proc, cid = _owner("exit")
    assert proc.wait(60) == 0 and cid
    with pytest.raises(docker.errors.NotFound):
        client.api.inspect_container(cid)


def test_a_killed_owner_leaves_a_container_the_reaper_removes(client) -> None:
    import docker

    proc, cid = _owner("hang")
    proc.kill()
    proc.wait(10)
    assert client.api.inspect_container(cid)["State"]["Running"]
    reap_orphans(client)
    with pytest.raises(docker.errors.NotFound):
        client.api.inspect_container(cid)
