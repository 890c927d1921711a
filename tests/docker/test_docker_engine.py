"""Engine detection and the orphan reaper against a real Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from pygent.runtime.docker_engine import (
    docker_available,
    owner_labels,
    process_start_time,
    reap_orphans,
)
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


@pytest.mark.skipif(os.getuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_socket_permission_denied_is_explained() -> None:
    code = "from pygent.runtime.docker_engine import docker_available; print(docker_available())"
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": ROOT, "HOME": "/tmp"},
        timeout=60,
    )
    assert "permission denied" in out.stdout and "docker group" in out.stdout, out


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
