"""`pygent serve` with a warm pool: editors' sessions come warm, status counts the pool,
and a stopped host (even SIGKILL, after the reaper) leaves no pooled container."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pygent.lsp import protocol as p
from tests.docker_gate import TEST_IMAGE
from tests.host.conftest import host_dir, start_host, wait_until  # noqa: F401 - fixtures
from tests.openai_server import ScriptedOpenAIServer

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


def _pool_containers(pid: int) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}", "--filter", f"label=pygent.owner_pid={pid}"],
        capture_output=True, text=True, check=True,
    )
    return out.stdout.split()


@pytest.fixture
def editors():  # type: ignore[no-untyped-def]
    from tests.host.conftest import close_editor

    made: list = []
    yield made
    for lsp in made:
        close_editor(lsp)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_host_sessions_come_from_the_pool_and_nothing_is_left(
    start_host, editors, tmp_path: Path, sig: int, openai_server: ScriptedOpenAIServer  # noqa: F811
) -> None:
    env = {"PYGENT_IMAGE": TEST_IMAGE, "PYGENT_POOL_SIZE": "1"}
    host = start_host(**env)
    pid = host.proc.pid
    assert wait_until(lambda: host.status().get("pool", {}).get("ready") == 1, 120), host.tail()
    names = _pool_containers(pid)
    assert len(names) == 1 and names[0].startswith("pygent-pool-")
    lsp = host.editor("a", openai_server, **env)
    editors.append(lsp)
    info = lsp.call(p.SESSION_NEW, {"runtime": "docker"}, timeout=120)["result"]
    assert info["runtime"] == "docker"
    status = host.status()["pool"]
    assert status["hits"] == 1 and status["misses"] == 0, status
    shown = subprocess.run([sys.executable, "-m", "pygent", "serve", "--status"], env=host.env,
                           capture_output=True, text=True, timeout=60)
    assert "warm pool:" in shown.stdout and "1 session(s) took one" in shown.stdout, shown
    # The pool refills in the background: one taken (renamed) + one idle.
    assert wait_until(lambda: host.status()["pool"]["ready"] == 1, 120)
    names = sorted(_pool_containers(pid))
    assert len(names) == 2 and sum(n.startswith("pygent-pool-") for n in names) == 1, names
    code = host.stop(sig)
    if sig != signal.SIGKILL:
        assert code == 0, host.tail()
        assert _pool_containers(pid) == [], host.tail()
        return
    # SIGKILL: the keepers stop their containers; the next host's first sandbox reaps them.
    later = start_host(**env)
    assert wait_until(lambda: _pool_containers(pid) == [], 120), _pool_containers(pid)
    later.stop(signal.SIGTERM)


def test_a_long_running_lsp_keeps_its_own_pool(tmp_path: Path,
                                               openai_server: ScriptedOpenAIServer) -> None:
    """`pygent lsp` (no session host) with PYGENT_POOL_SIZE: its sessions come warm, and its
    exit removes the idle pooled containers."""
    import time

    from tests.adversarial.lsp_raw import start_lsp
    from tests.host.conftest import close_editor

    lsp = start_lsp(tmp_path / "lsp", openai_server, PYGENT_IMAGE=TEST_IMAGE,
                    PYGENT_POOL_SIZE="1")
    pid = lsp.proc.pid
    try:
        assert wait_until(lambda: any(n.startswith("pygent-pool-")
                                      for n in _pool_containers(pid)), 120)
        started = time.monotonic()
        info = lsp.call(p.SESSION_NEW, {"runtime": "docker"}, timeout=120)["result"]
        assert info["runtime"] == "docker"
        del started  # the time is bench/bench_pool.py's business
        assert wait_until(lambda: len(_pool_containers(pid)) == 2, 120)  # refilled
    finally:
        close_editor(lsp)
    assert wait_until(lambda: _pool_containers(pid) == [], 60), _pool_containers(pid)
