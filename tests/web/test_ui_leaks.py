"""Every way ``pygent ui`` can be stopped leaves no container, sandbox folder or process.

A real ``pygent ui`` holds, through a page on its WebSocket, a Docker session over a
copied folder (a container and a ``/tmp/pygent_*`` folder) and a local session whose
command left a background process. It is then stopped by SIGTERM, SIGINT or SIGHUP
(the terminal it ran in closed: it closes its sessions itself) or by SIGKILL (the
container's keeper stops the container, the local watcher kills the processes, and the
next Pygent to start removes the container and the folder).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pygent.runtime.scratch import OWNER_SUFFIX
from tests.docker_gate import TEST_IMAGE
from tests.openai_server import ScriptedOpenAIServer
from tests.processes import processes_matching
from tests.web.conftest import StartUi, rpc_page

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]


def _containers(pid: int) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=pygent.owner_pid={pid}"],
        capture_output=True, text=True, check=True, timeout=30,
    )
    return out.stdout.split()


def _wait_until(check, timeout: float = 30) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return bool(check())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL],
                         ids=lambda s: signal.Signals(s).name)
def test_a_stopped_ui_leaves_nothing(start_ui: StartUi, openai_server: ScriptedOpenAIServer,
                                     tmp_path: Path, sig: int) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    marker = f"{300 + secrets.randbelow(1000)}.{secrets.randbelow(10**6)}"
    ui = start_ui(["--folder", str(folder)], env={"PYGENT_USE_DOCKER": "1",
                                                  "PYGENT_IMAGE": TEST_IMAGE})
    openai_server.add_tool_call("bash", {"cmd": f"(sleep {marker} &) ; echo started"})
    openai_server.add_text("left it running")

    async def sessions() -> Path:
        async with rpc_page(ui) as page:
            docker = await page.call("pygent/session/new", {
                "runtime": "docker", "workspaceFolder": str(folder), "syncMode": "copy"}, 120)
            local = await page.call("pygent/session/new", {"runtime": "local",
                                                           "syncMode": "none"})
            await page.send("pygent/session/prompt",
                            {"sessionId": local["sessionId"], "prompt": "go"})
            asked = await page.receive_until(
                lambda d: d.get("method") == "pygent/requestPermission")
            await page.answer(asked, {"optionId": "allow_once"})
            await page.update("turn_ended", 60)
            return Path(docker["sandboxPath"])

    sandbox = asyncio.run(sessions())
    assert sandbox.is_dir() and (sandbox / "a.txt").read_text() == "hello"
    assert _wait_until(lambda: bool(processes_matching(f"sleep {marker}")), 15)
    pid = ui.proc.pid
    assert len(_containers(pid)) == 1

    ui.proc.send_signal(sig)
    code = ui.proc.wait(60)
    assert _wait_until(lambda: not processes_matching(f"sleep {marker}")), "a process was left"
    if sig != signal.SIGKILL:
        assert code == 0, (code, ui.log_text()[-2000:])
        assert _containers(pid) == [], ui.log_text()[-2000:]
        assert not sandbox.exists()
        assert "Traceback" not in ui.log_text()
    else:
        assert sandbox.with_name(sandbox.name + OWNER_SUFFIX).exists()
        later = start_ui(env={"PYGENT_USE_DOCKER": "1", "PYGENT_IMAGE": TEST_IMAGE},
                         base=tmp_path / "later")

        async def one() -> None:
            async with rpc_page(later) as page:
                await page.call("pygent/session/new", {"runtime": "docker"}, 120)

        asyncio.run(one())
        assert _wait_until(lambda: _containers(pid) == [])
        assert not sandbox.exists()
        assert not sandbox.with_name(sandbox.name + OWNER_SUFFIX).exists()
    assert folder.joinpath("a.txt").read_text() == "hello" and os.listdir(folder) == ["a.txt"]
