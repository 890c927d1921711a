"""``acpx`` (the headless ACP client from npm) drives ``pygent acp``.

acpx is installed by ``.ci/run`` under ``/var/cache/pygent/acpx-<version>``
(``PYGENT_ACPX`` overrides the path). It spawns ``pygent acp`` itself, answers its
permission requests from its own flags (``--approve-all``, ``--deny-all``), keeps
persistent sessions in a queue-owner process (``--ttl``) and reconnects to a saved
session with ``session/load`` once that process has gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acp.conftest import acp_env
from tests.openai_server import ScriptedOpenAIServer

ACPX_VERSION = "0.19.1"
ACPX = Path(
    os.environ.get("PYGENT_ACPX", f"/var/cache/pygent/acpx-{ACPX_VERSION}/node_modules/.bin/acpx")
)
AGENT = f"{sys.executable} -m pygent acp"

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture
def acpx() -> Path:
    if not ACPX.exists():
        if os.environ.get("CI"):
            pytest.fail(f"acpx is not installed at {ACPX} (.ci/run installs it)")
        pytest.skip(f"acpx is not installed at {ACPX} (run .ci/run)")
    return ACPX


class Acpx:
    """Runs acpx against ``pygent acp`` in one folder with its own home."""

    def __init__(self, acpx: Path, home: Path, folder: Path, server: ScriptedOpenAIServer) -> None:
        self.acpx = acpx
        self.home = home
        self.folder = folder
        self.env = acp_env(home, server)
        self.env["PATH"] = (
            f"{Path(shutil.which('node') or '/usr/bin/node').parent}:{self.env['PATH']}"
        )

    def args(self, *args: str, agent_args: str = "", ttl: str = "1") -> list[str]:
        return [
            str(self.acpx),
            "--agent",
            f"{AGENT} {agent_args}".strip(),
            "--cwd",
            str(self.folder),
            "--ttl",
            ttl,
            "--format",
            "json",
            *args,
        ]

    def run(
        self, *args: str, agent_args: str = "", ttl: str = "1", timeout: float = 60
    ) -> tuple[int, list[dict[str, Any]], str]:
        done = subprocess.run(
            self.args(*args, agent_args=agent_args, ttl=ttl),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return done.returncode, _frames(done.stdout), done.stderr

    def popen(self, *args: str, ttl: str = "1") -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.args(*args, ttl=ttl),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def agent_pids(self) -> list[int]:
        """``pygent acp`` processes started for this home (acpx's queue owner starts them)."""
        mine = f"HOME={self.home}/home".encode()
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if mine in environ and (b"acp" in cmdline):
                found.append(int(pid))
        return found

    def wait_gone(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.agent_pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self.agent_pids():  # a leftover would be a bug; do not leak it past the test
            os.kill(pid, signal.SIGKILL)


def _frames(stdout: str) -> list[dict[str, Any]]:
    out = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _updates(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [
        f["params"]["update"]
        for f in frames
        if f.get("method") == "session/update"
        and f["params"]["update"].get("sessionUpdate") == kind
    ]


def _result(frames: list[dict[str, Any]]) -> dict[str, Any]:
    results = [
        f["result"]
        for f in frames
        if isinstance(f.get("result"), dict) and "stopReason" in f["result"]
    ]
    assert results, f"no prompt result in {frames[-3:]}"
    return results[-1]


@pytest.fixture
def run_acpx(acpx: Path, tmp_path: Path, openai_server: ScriptedOpenAIServer) -> Iterator[Acpx]:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("old\n")
    runner = Acpx(acpx, tmp_path / "acpx-home", folder, openai_server)
    yield runner
    runner.wait_gone()


def test_command_and_edit_with_permission_round_trip(
    run_acpx: Acpx, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo hello-acpx"})
    openai_server.add_tool_call("write_file", {"path": "notes.txt", "content": "new\n"})
    openai_server.add_text("All done.")
    code, frames, err = run_acpx.run(
        "--approve-all", "exec", "run echo, edit notes", agent_args="--sync mount"
    )
    assert code == 0, err
    asked = [f for f in frames if f.get("method") == "session/request_permission"]
    assert [a["params"]["toolCall"]["kind"] for a in asked] == ["execute", "edit"]
    answers = [
        f["result"]["outcome"]
        for f in frames
        if isinstance(f.get("result"), dict) and "outcome" in f["result"]
    ]
    assert answers == [{"outcome": "selected", "optionId": "allow_once"}] * 2
    done = [u for u in _updates(frames, "tool_call_update") if u.get("status") == "completed"]
    assert "hello-acpx" in json.dumps(done[0])
    assert done[1]["content"][0]["type"] == "diff"
    assert (
        "".join(u["content"]["text"] for u in _updates(frames, "agent_message_chunk"))
        == "All done."
    )
    assert _result(frames)["stopReason"] == "end_turn"
    assert (run_acpx.folder / "notes.txt").read_text() == "new\n"  # --sync mount


def test_rejection(run_acpx: Acpx, openai_server: ScriptedOpenAIServer) -> None:
    openai_server.add_tool_call("bash", {"cmd": "touch should-not-exist"})
    openai_server.add_tool_call("write_file", {"path": "notes.txt", "content": "hacked\n"})
    openai_server.add_text("I was not allowed.")
    code, frames, err = run_acpx.run("--deny-all", "exec", "try things", agent_args="--sync mount")
    assert code == 5, err  # acpx's exit status when it denied a permission request
    answers = [
        f["result"]["outcome"]
        for f in frames
        if isinstance(f.get("result"), dict) and "outcome" in f["result"]
    ]
    assert [a.get("optionId") for a in answers] == ["reject_once", "reject_once"]
    assert _result(frames)["stopReason"] == "end_turn"
    failed = [u for u in _updates(frames, "tool_call_update") if u.get("status") == "failed"]
    assert len(failed) == 2
    assert all(u["_meta"]["pygent"]["status"] == "denied" for u in failed)
    assert not (run_acpx.folder / "should-not-exist").exists()
    assert (run_acpx.folder / "notes.txt").read_text() == "old\n"


def _sleepers(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"sleep") and marker.encode() in b" ".join(cmdline):
                found.append(int(pid))
    return found


def test_cancel_during_long_command(run_acpx: Acpx, openai_server: ScriptedOpenAIServer) -> None:
    seconds = str(400 + os.getpid() % 100)  # a sleep length no other test uses
    openai_server.add_tool_call("bash", {"cmd": f"sleep {seconds}"})
    code, _, err = run_acpx.run("sessions", "new", ttl="30")
    assert code == 0, err
    prompt = run_acpx.popen("--approve-all", "prompt", "sleep a while", ttl="30")
    try:
        deadline = time.monotonic() + 30
        while not _sleepers(seconds) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _sleepers(seconds), "the command never started"
        code, _, err = run_acpx.run("cancel", ttl="30")
        assert code == 0, err
        out, _ = prompt.communicate(timeout=30)
        assert _result(_frames(out))["stopReason"] == "cancelled"
        deadline = time.monotonic() + 5
        while _sleepers(seconds) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _sleepers(seconds), "the cancelled command is still running"
    finally:
        if prompt.poll() is None:
            os.killpg(prompt.pid, signal.SIGKILL)
            prompt.wait()
        run_acpx.run("sessions", "close", ttl="1")


def test_session_load_after_restart(run_acpx: Acpx, openai_server: ScriptedOpenAIServer) -> None:
    code, _, err = run_acpx.run("sessions", "new")
    assert code == 0, err
    openai_server.add_text("first answer")
    code, frames, err = run_acpx.run("prompt", "first question")
    assert code == 0, err
    first_pids = run_acpx.agent_pids()
    run_acpx.wait_gone()  # --ttl 1: the queue owner and its pygent acp exit when idle
    assert not run_acpx.agent_pids()
    openai_server.add_text("second answer")
    code, frames, err = run_acpx.run("prompt", "second question")
    assert code == 0, err
    assert any(f.get("method") == "session/load" for f in frames) or first_pids
    user_turns = [
        [m["content"] for m in r.body["messages"] if m["role"] == "user"]
        for r in openai_server.requests
        if r.body
    ]
    assert user_turns[-1] == ["first question", "second question"]
    assert "".join(u["content"]["text"] for u in _updates(frames, "agent_message_chunk")).endswith(
        "second answer"
    )


def test_set_mode(run_acpx: Acpx, openai_server: ScriptedOpenAIServer) -> None:
    code, _, err = run_acpx.run("sessions", "new", ttl="30")
    assert code == 0, err
    code, frames, err = run_acpx.run("set-mode", "read-only", ttl="30")
    assert code == 0, err
    assert any(f.get("action") == "mode_set" and f.get("modeId") == "read-only" for f in frames)
    openai_server.add_tool_call("write_file", {"path": "notes.txt", "content": "nope\n"})
    openai_server.add_text("read-only, so I did not write")
    code, frames, err = run_acpx.run("--approve-all", "prompt", "write notes", ttl="30")
    assert code == 0, err
    assert not [f for f in frames if f.get("method") == "session/request_permission"]
    failed = [u for u in _updates(frames, "tool_call_update") if u.get("status") == "failed"]
    assert failed and "read-only" in json.dumps(failed[0]).lower()
    code, frames, err = run_acpx.run("set-mode", "bogus-mode", ttl="30")
    assert code != 0
    assert "unknown mode" in (json.dumps(frames) + err)
    run_acpx.run("sessions", "close", ttl="1")


def test_through_the_session_host(
    run_acpx: Acpx,
    openai_server: ScriptedOpenAIServer,
    start_host: Any,  # noqa: F811
    host_dir: Path,  # noqa: F811
) -> None:
    """``pygent acp`` joined to a host is a byte pipe; the host runs the agent: the
    permission round trip (with ``--sync mount`` sent to the host) and a cancel that
    kills the command in the host."""
    start_host()
    run_acpx.env.update(PYGENT_HOST_DIR=str(host_dir), PYGENT_LSP_HOST="require")
    openai_server.add_tool_call("bash", {"cmd": "echo hello-host"})
    openai_server.add_tool_call("write_file", {"path": "notes.txt", "content": "new\n"})
    openai_server.add_text("All done.")
    code, frames, err = run_acpx.run(
        "--approve-all", "exec", "run echo, edit notes", agent_args="--sync mount"
    )
    assert code == 0, err
    asked = [f for f in frames if f.get("method") == "session/request_permission"]
    assert [a["params"]["toolCall"]["kind"] for a in asked] == ["execute", "edit"]
    assert _result(frames)["stopReason"] == "end_turn"
    assert (run_acpx.folder / "notes.txt").read_text() == "new\n"  # --sync mount, in the host
    seconds = str(500 + os.getpid() % 100)
    openai_server.add_tool_call("bash", {"cmd": f"sleep {seconds}"})
    code, _, err = run_acpx.run("sessions", "new", ttl="30")
    assert code == 0, err
    prompt = run_acpx.popen("--approve-all", "prompt", "sleep a while", ttl="30")
    try:
        deadline = time.monotonic() + 30
        while not _sleepers(seconds) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _sleepers(seconds), "the command never started"
        code, _, err = run_acpx.run("cancel", ttl="30")
        assert code == 0, err
        out, _ = prompt.communicate(timeout=30)
        assert _result(_frames(out))["stopReason"] == "cancelled"
        deadline = time.monotonic() + 5
        while _sleepers(seconds) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _sleepers(seconds), "the cancelled command is still running"
    finally:
        if prompt.poll() is None:
            os.killpg(prompt.pid, signal.SIGKILL)
            prompt.wait()
        run_acpx.run("sessions", "close", ttl="1")
