"""The session host with Docker sessions: nothing outlives it, however it is stopped.

As in ``tests/test_leaks.py`` for ``pygent lsp``: a host holding a Docker session (a
container and a copied sandbox folder) with an editor attached is stopped by SIGTERM,
SIGINT or SIGHUP (it closes every session and removes its socket; the editor's pipe
ends) or by SIGKILL (the container's keeper stops the container, and the next host
replaces the stale socket and removes the container and the folder). An idle session's
container goes when the idle timeout closes it.
"""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

import pytest

from pygent.lsp import protocol as p
from pygent.runtime.scratch import OWNER_SUFFIX
from tests.docker_gate import TEST_IMAGE
from tests.host.conftest import close_editor, wait_until
from tests.openai_server import ScriptedOpenAIServer
from tests.processes import processes_matching
from tests.test_leaks import _containers, _sessions

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


def _docker_session(lsp, folder: Path) -> tuple[str, Path]:  # type: ignore[no-untyped-def]
    info = lsp.call(
        p.SESSION_NEW, {"runtime": "docker", "workspaceFolder": str(folder), "syncMode": "copy"},
        timeout=120,
    )["result"]
    sandbox = Path(info["sandboxPath"])
    assert info["runtime"] == "docker" and (sandbox / "a.txt").read_text() == "hello"
    return info["sessionId"], sandbox


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "a.txt").write_text("hello")
    return project


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL],
                         ids=lambda s: signal.Signals(s).name)
def test_a_stopped_host_leaves_nothing(start_host, editors, folder: Path, sig: int,
                                       openai_server: ScriptedOpenAIServer) -> None:
    host = start_host(PYGENT_IMAGE=TEST_IMAGE)
    lsp = host.editor("a", openai_server, PYGENT_IMAGE=TEST_IMAGE)
    editors.append(lsp)
    marker = f"{300 + secrets.randbelow(1000)}.{secrets.randbelow(10**6)}"
    # A Docker session over a copy of the folder, and a local one that left `sleep` running.
    sandbox = _sessions(lsp, folder, openai_server, marker)
    pid = host.proc.pid
    assert len(_containers(pid)) == 1
    code = host.stop(sig)
    # The editor's pipe ends with the host; the background command goes too.
    assert lsp.proc.wait(30) == 0
    assert wait_until(lambda: not processes_matching(f"sleep {marker}")), "a process was left"
    if sig != signal.SIGKILL:
        assert code == 0, host.tail()
        assert _containers(pid) == [], host.tail()
        assert not sandbox.exists()
        assert not host.socket.exists()
    else:
        assert host.socket.exists()  # stale: nobody answers it
        assert sandbox.with_name(sandbox.name + OWNER_SUFFIX).exists()
        # The next host replaces the socket; its first Docker session reaps the rest.
        later = start_host(PYGENT_IMAGE=TEST_IMAGE)
        again = later.editor("b", openai_server, PYGENT_IMAGE=TEST_IMAGE)
        editors.append(again)
        again.call(p.SESSION_NEW, {"runtime": "docker"}, timeout=120)
        assert wait_until(lambda: _containers(pid) == [], 60)
        assert not sandbox.exists()
        assert not sandbox.with_name(sandbox.name + OWNER_SUFFIX).exists()
        assert later.stop() == 0, later.tail()
        assert _containers(later.proc.pid) == [] and not later.socket.exists()
    assert os.listdir(folder) == ["a.txt"] and (folder / "a.txt").read_text() == "hello"


def test_the_idle_timeout_removes_the_container(start_host, editors, folder: Path,
                                                openai_server: ScriptedOpenAIServer) -> None:
    host = start_host("--idle-timeout", "2", "--exit-grace", "30", PYGENT_IMAGE=TEST_IMAGE)
    lsp = host.editor("a", openai_server, PYGENT_IMAGE=TEST_IMAGE)
    editors.append(lsp)
    sid, sandbox = _docker_session(lsp, folder)
    pid = host.proc.pid
    assert close_editor(lsp) == 0
    # Detached, the session lives on for the idle timeout...
    assert [s["sessionId"] for s in host.status()["sessions"]] == [sid]
    assert len(_containers(pid)) == 1
    # ... then it is closed: the container and the sandbox folder go, the host stays.
    assert wait_until(lambda: _containers(pid) == [], 60), host.tail()
    assert host.status()["sessions"] == []
    assert not sandbox.exists()
    assert host.proc.poll() is None
    assert host.stop() == 0
