"""Every way ``pygent lsp`` can be stopped leaves no container, sandbox folder or process.

A real server process holds a Docker session over a copied folder (a container and a
``/tmp/pygent_*`` folder) and a local session whose command left a background process.
It is then stopped by SIGTERM, SIGINT or SIGHUP (it closes its sessions itself) or by
SIGKILL (the container's keeper stops the container, the local watcher kills the
processes, and the next Pygent to start removes the container and the folder).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pygent.lsp import protocol as p
from pygent.runtime.scratch import OWNER_SUFFIX
from tests.adversarial.lsp_raw import Lsp, start_lsp
from tests.docker_gate import TEST_IMAGE
from tests.openai_server import ScriptedOpenAIServer
from tests.processes import processes_matching

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]


def _containers(pid: int) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=pygent.owner_pid={pid}"],
        capture_output=True, text=True, check=True,
    )
    return out.stdout.split()


def _wait_until(check, timeout: float = 30) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def _sessions(lsp: Lsp, folder: Path, server: ScriptedOpenAIServer, marker: str) -> Path:
    """A Docker session over ``folder`` and a local session that left ``sleep`` running;
    returns the Docker session's sandbox folder."""
    docker = lsp.call(
        p.SESSION_NEW, {"runtime": "docker", "workspaceFolder": str(folder), "syncMode": "copy"},
        timeout=120,
    )["result"]
    sandbox = Path(docker["sandboxPath"])
    assert sandbox.is_dir() and (sandbox / "a.txt").read_text() == "hello"
    server.add_tool_call("bash", {"cmd": f"(sleep {marker} &) ; echo started"})
    server.add_text("left it running")
    local = lsp.new_session(runtime="local")
    prompt = lsp.start(p.SESSION_PROMPT, {"sessionId": local, "prompt": "go"})
    lsp.answer(lsp.permission(30)["id"], {"optionId": "allow_once"})
    assert lsp.reply(prompt, 60)["result"]["stopReason"] == "end_turn"
    # The subshell forks, then execs sleep: under load the exec may come a moment later.
    assert _wait_until(lambda: bool(processes_matching(f"sleep {marker}")), 15), (
        "the background command should run"
    )
    return sandbox


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL],
                         ids=lambda s: signal.Signals(s).name)
def test_a_stopped_server_leaves_nothing(tmp_path: Path, openai_server: ScriptedOpenAIServer,
                                         sig: int) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    marker = f"{300 + secrets.randbelow(1000)}.{secrets.randbelow(10**6)}"
    lsp = start_lsp(tmp_path / "first", openai_server, PYGENT_IMAGE=TEST_IMAGE)
    pid = lsp.proc.pid
    try:
        sandbox = _sessions(lsp, folder, openai_server, marker)
        assert len(_containers(pid)) == 1
        lsp.proc.send_signal(sig)
        code = lsp.proc.wait(60)
    finally:
        if lsp.alive():
            lsp.proc.kill()
            lsp.proc.wait()
    # Background processes: the server's close kills them, the watcher does after a kill -9.
    assert _wait_until(lambda: not processes_matching(f"sleep {marker}")), "a process was left"
    if sig != signal.SIGKILL:
        assert code == 0, (code, lsp.stderr_path.read_text()[-2000:])
        assert _containers(pid) == [], lsp.stderr_path.read_text()[-2000:]
        assert not sandbox.exists()
    else:
        # Until another Pygent starts, the owner record lies beside the folder...
        assert sandbox.with_name(sandbox.name + OWNER_SUFFIX).exists()
        # ... and the next one removes both the container and the folder.
        later = start_lsp(tmp_path / "second", openai_server, PYGENT_IMAGE=TEST_IMAGE)
        try:
            later.call(p.SESSION_NEW, {"runtime": "docker"}, timeout=120)
            assert _wait_until(lambda: _containers(pid) == [])
            assert not sandbox.exists()
            assert not sandbox.with_name(sandbox.name + OWNER_SUFFIX).exists()
        finally:
            later.proc.terminate()
            assert later.proc.wait(60) == 0
    assert folder.joinpath("a.txt").read_text() == "hello" and os.listdir(folder) == ["a.txt"]


def test_closing_sessions_while_their_containers_start_leaves_none(
    tmp_path: Path, openai_server: ScriptedOpenAIServer
) -> None:
    lsp = start_lsp(tmp_path, openai_server, PYGENT_IMAGE=TEST_IMAGE)
    pid = lsp.proc.pid
    try:
        for _ in range(5):
            sid = lsp.call(p.SESSION_NEW, {"runtime": "docker"}, timeout=120)["result"]["sessionId"]
            assert lsp.call(p.SESSION_CLOSE, {"sessionId": sid}, timeout=120)["result"]
        assert _wait_until(lambda: _containers(pid) == []), _containers(pid)
        # A SIGTERM while a session is being opened: that container goes too.
        lsp.start(p.SESSION_NEW, {"runtime": "docker"})
        time.sleep(0.05)
        lsp.proc.send_signal(signal.SIGTERM)
        assert lsp.proc.wait(60) == 0
    finally:
        if lsp.alive():
            lsp.proc.kill()
            lsp.proc.wait()
    assert _containers(pid) == [], lsp.stderr_path.read_text()[-2000:]
