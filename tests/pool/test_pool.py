"""The warm pool: sessions take started sandboxes, never one another's, and nothing is left.

Real Docker (the test image), real SessionService; the pool is what ``pygent serve``
owns with ``PYGENT_POOL_SIZE`` > 0.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from pathlib import Path

import pytest

from pygent.runtime.facade import docker_options
from pygent.runtime.pool import POOL_PREFIX, SandboxPool
from pygent.service import SessionOptions, SessionService
from pygent.settings import load_settings
from tests.docker_gate import TEST_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

CANARY = "pool-canary-7f3a"


def _names(prefix: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}", "--filter", "label=pygent.managed=1"],
        capture_output=True, text=True, check=True,
    )
    import os

    mine = f"-{os.getpid()}-"
    return [n for n in out.stdout.split() if n.startswith(prefix) and mine in n]


def _wait(check, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture()
def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    return dataclasses.replace(
        load_settings(), image=TEST_IMAGE, sessions_dir=tmp_path / "data" / "sessions",
        pool_size=2, pool_idle=600.0,
    )


@pytest.fixture()
def service(settings):  # type: ignore[no-untyped-def]
    service = SessionService(settings)
    pool = SandboxPool(settings, size=settings.pool_size, idle=settings.pool_idle)
    service.pool = pool
    pool.start(warm=docker_options(settings))
    yield service
    import asyncio

    asyncio.run(service.aclose())


def test_sessions_take_started_sandboxes_and_never_see_a_previous_one(service, settings) -> None:
    pool = service.pool
    assert _wait(lambda: pool.status()["ready"] == 2), pool.status()
    assert len(_names(POOL_PREFIX)) == 2, "idle pooled containers are named pygent-pool-*"
    seen: set[str] = set()
    for _ in range(4):
        assert _wait(lambda: pool.status()["ready"] >= 1), pool.status()
        started = time.monotonic()
        session = service.open_blocking(SessionOptions(runtime="docker", sync_mode="none"))
        took = time.monotonic() - started
        try:
            backend = session.runtime.backend
            cid = backend.container_id  # type: ignore[attr-defined]
            assert cid not in seen, "a pooled container is used once"
            seen.add(cid)
            # Renamed beside the session's start: taken ones are not counted as idle.
            def renamed(b=backend) -> bool:  # type: ignore[no-untyped-def]
                return not b.container_name.startswith(POOL_PREFIX)

            assert _wait(renamed, 10)
            # Nothing any earlier session wrote is here: /tmp, $HOME, /dev/shm, /workspace.
            look = session.runtime.run(
                f"grep -rl {CANARY} /tmp /dev/shm /workspace $HOME 2>/dev/null | wc -l"
            )
            assert look.stdout.strip() == "0", look.stdout
            wrote = session.runtime.run(
                f"echo {CANARY} | tee /tmp/c /dev/shm/c /workspace/c $HOME/c >/dev/null && "
                "cat /workspace/c"
            )
            assert wrote.stdout.strip() == CANARY and wrote.exit_code == 0
            assert (session.runtime.workspace / "c").read_text().strip() == CANARY
            workspace = session.runtime.workspace
        finally:
            assert service.close_blocking(session.id)
        assert not workspace.exists(), "the session's folder went with it"
        # A hit (the first session waits for nothing): well under a cold start's ~250 ms.
        # (Timing is reported by bench/bench_pool.py; here only the hit count is checked.)
        del took
    status = pool.status()
    assert status["hits"] == 4 and status["misses"] == 0, status


def test_copy_on_write_sessions_of_a_folder_come_warm_after_the_first(
    service, tmp_path: Path
) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "README.md").write_text("hello\n")
    pool = service.pool
    first = service.open_blocking(SessionOptions(workspace_folder=str(folder), runtime="docker"))
    try:
        assert first.sync_mode == "cow"
        first.runtime.run(f"echo {CANARY} > /workspace/canary.txt")
        assert first.runtime.files.read_bytes("canary.txt").decode().strip() == CANARY
    finally:
        service.close_blocking(first.id)
    assert pool.status()["misses"] == 1  # the folder was new to the pool
    assert _wait(lambda: pool.status()["ready"] >= 4), pool.status()  # 2 generic + 2 for it
    second = service.open_blocking(SessionOptions(workspace_folder=str(folder), runtime="docker"))
    try:
        assert second.sync_mode == "cow"
        assert pool.status()["hits"] == 1
        out = second.runtime.run("cat /workspace/README.md; ls /workspace")
        assert out.stdout == "hello\nREADME.md\n", "the folder, and nothing of the last session"
        assert not (folder / "canary.txt").exists()
    finally:
        service.close_blocking(second.id)


def test_a_removed_pooled_container_is_replaced_not_handed_out(service) -> None:
    pool = service.pool
    assert _wait(lambda: pool.status()["ready"] == 2), pool.status()
    for name in _names(POOL_PREFIX):
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=True)
    session = service.open_blocking(SessionOptions(runtime="docker", sync_mode="none"))
    try:
        assert session.runtime.run("echo ok").stdout == "ok\n"
    finally:
        service.close_blocking(session.id)
    assert pool.status()["hits"] == 0


def test_closing_the_service_removes_the_idle_pool(settings) -> None:
    import asyncio

    service = SessionService(settings)
    pool = SandboxPool(settings, size=2, idle=600.0)
    service.pool = pool
    pool.start(warm=docker_options(settings))
    assert _wait(lambda: pool.status()["ready"] == 2), pool.status()
    session = service.open_blocking(SessionOptions(runtime="docker", sync_mode="none"))
    assert session.runtime.run("true").exit_code == 0
    asyncio.run(service.aclose())
    assert _names("pygent-") == [], "no pooled or session container is left"


def test_idle_expiry_removes_unasked_sandboxes(settings) -> None:
    pool = SandboxPool(settings, size=1, idle=1.0)
    pool.start(warm=docker_options(settings))
    try:
        assert _wait(lambda: len(_names(POOL_PREFIX)) == 1), pool.status()
        assert _wait(lambda: pool.status()["ready"] == 0 and not _names(POOL_PREFIX), 30)
        assert pool.status()["keys"] == 0
    finally:
        pool.close()
    assert _names(POOL_PREFIX) == []
