"""The REPL on Docker leaves no container, sandbox folder or process, however it ends.

A real ``pygent --docker`` in a pseudo-terminal runs a command that sleeps in its
container, and is then stopped: SIGTERM, SIGHUP (the terminal closed) or SIGINT
during the turn cancel and close the session itself; after SIGKILL the container's
keeper stops the container, and the next Pygent to start removes it and the folder.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pygent.runtime.scratch import OWNER_SUFFIX
from tests.docker_gate import TEST_IMAGE
from tests.openai_server import ScriptedOpenAIServer

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]


def _containers(pid: int) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=pygent.owner_pid={pid}"],
        capture_output=True, text=True, check=True, timeout=30,
    )
    return out.stdout.split()


def _running_in(container: str, needle: str) -> bool:
    out = subprocess.run(["docker", "top", container], capture_output=True,
                         text=True, timeout=30)
    return out.returncode == 0 and needle in out.stdout


def _wait_until(check, timeout: float = 30) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return bool(check())


def _workspace_of(text: str) -> Path:
    found = re.search(r"workspace (\S+)", text)
    assert found, text
    return Path(found.group(1))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL],
                         ids=lambda s: signal.Signals(s).name)
def test_a_stopped_repl_leaves_nothing(spawn, repl_env: dict[str, str],
                                       openai_server: ScriptedOpenAIServer, sig: int) -> None:
    env = dict(repl_env, PYGENT_IMAGE=TEST_IMAGE)
    openai_server.add_tool_call("bash", {"cmd": "echo busy-now; sleep 43.5"})
    openai_server.add_text("stopped")
    term = spawn("--docker", "--no-confirm-bash", env=env, docker=True)
    term.wait_prompt(120)
    workspace = _workspace_of(term.text)
    pid = term.child.pid
    term.send_line("work")
    term.expect(r"busy-now", 120)
    (container,) = _containers(pid)
    assert _wait_until(lambda: _running_in(container, "sleep 43.5"), 15)

    term.child.kill(sig)
    if sig == signal.SIGINT:  # Ctrl-C cancels the turn; the REPL goes on until Ctrl-D
        term.expect(r"interrupted|cancelled", 60)
        assert _wait_until(lambda: not _running_in(container, "sleep 43.5"), 30), (
            "the cancelled command must be killed in the container"
        )
        term.wait_prompt(60)
        term.send("\x04")
        assert term.wait_exit(120) == 0
    else:
        code = term.wait_exit(120)
        assert code != 0
    assert "Traceback" not in term.text

    if sig != signal.SIGKILL:
        assert _containers(pid) == []
        assert not workspace.exists()
        return
    # After kill -9 the owner record lies beside the folder until another Pygent starts...
    assert workspace.with_name(workspace.name + OWNER_SUFFIX).exists()
    # ... and the keeper has stopped the container (its command is gone).
    assert _wait_until(lambda: not _running_in(container, "sleep 43.5"), 60)
    later = spawn("--docker", env=env, docker=True)
    later.wait_prompt(120)
    assert _wait_until(lambda: _containers(pid) == [], 60)
    assert not workspace.exists()
    assert not workspace.with_name(workspace.name + OWNER_SUFFIX).exists()
    later.send("\x04")
    assert later.wait_exit(120) == 0
