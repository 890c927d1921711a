"""Start-up checks and every way out: missing key, dead server, Ctrl-D, SIGTERM, pipes, crashes."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.openai_server import ScriptedOpenAIServer
from tests.repl.conftest import messages, pygent_command, sandbox_processes


def _workspace_of(text: str) -> Path:
    found = re.search(r"workspace (\S+)", text)
    assert found, text
    return Path(found.group(1))


def test_missing_api_key_is_one_clear_line(spawn, repl_env: dict[str, str]) -> None:
    env = {k: v for k, v in repl_env.items() if k != "OPENAI_API_KEY"}
    term = spawn(env=env)
    term.expect(r"no API key: set OPENAI_API_KEY")
    assert term.wait_exit() == 2
    assert "Traceback" not in term.text
    assert len(term.text.strip().splitlines()) == 1


def test_unreachable_model_server_is_reported_before_the_prompt(
    spawn, repl_env: dict[str, str]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(repl_env, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1")
    term = spawn(env=env)
    term.expect(r"cannot reach the model server at http://127\.0\.0\.1:\d+/v1 .*OPENAI_BASE_URL")
    term.wait_prompt()
    term.send("\x04")
    assert term.wait_exit() == 0


def test_ctrl_d_exits_cleanly_and_removes_the_sandbox(spawn) -> None:
    term = spawn()
    term.wait_prompt()
    workspace = _workspace_of(term.text)
    assert workspace.is_dir()
    term.send("\x04")
    assert term.wait_exit() == 0
    assert not workspace.exists(), "the temporary workspace must be removed on exit"
    assert "Traceback" not in term.text


def test_ctrl_c_at_the_prompt_exits_cleanly(spawn) -> None:
    term = spawn()
    term.wait_prompt()
    workspace = _workspace_of(term.text)
    term.send("\x03")
    assert term.wait_exit() == 0
    assert not workspace.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_signal_during_a_turn_cleans_up(
    spawn, openai_server: ScriptedOpenAIServer, sig: signal.Signals
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo busy-now; sleep 41.5"})
    term = spawn("--no-confirm-bash")
    term.wait_prompt()
    workspace = _workspace_of(term.text)
    term.send_line("work")
    term.expect(r"busy-now")
    deadline = time.monotonic() + 5  # the echo comes before the shell starts sleep
    while not sandbox_processes("sleep 41.5") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_processes("sleep 41.5")
    term.child.kill(sig)
    assert term.wait_exit() == 128 + sig
    assert not workspace.exists()
    assert sandbox_processes("sleep 41.5") == []


def test_piped_stdin_denies_approvals(
    repl_env: dict[str, str], openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo should-not-run > x.txt"})
    openai_server.add_text("Could not run it.")
    workspace = tmp_path / "ws"
    out = subprocess.run(
        pygent_command() + ["--no-docker", "-w", str(workspace)],
        input="please run it\n",
        env=repl_env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "Could not run it." in out.stdout
    assert not (workspace / "x.txt").exists()
    tool = [m for m in messages(openai_server.chat_requests[-1]) if m["role"] == "tool"][-1]
    assert "stdin is not a terminal" in tool["content"]


def test_unexpected_error_saves_the_session_without_a_traceback(
    spawn, tmp_path: Path, openai_server: ScriptedOpenAIServer
) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    # A custom command that hands back a broken "agent": a bug in user code.
    (workdir / "config.py").write_text(
        "import types\n"
        "from pygent.commands import register_command\n"
        "register_command('boom', lambda agent, arg: types.SimpleNamespace(arun=None))\n"
    )
    openai_server.add_text("remembered")
    term = spawn(cwd=workdir)
    term.wait_prompt()
    term.send_line("keep this")
    term.expect("remembered")
    term.wait_prompt()
    term.send_line("/boom")
    term.expect(r"pygent stopped after an unexpected error: AttributeError")
    found = term.expect(r"resume it with: pygent --load (\S+)")
    saved = Path(found.group(1))
    log = Path(term.expect(r"details \(traceback\): (\S+)").group(1))
    assert term.wait_exit() == 1
    assert "Traceback" not in term.text
    assert "Traceback" in log.read_text()
    assert "keep this" in (saved / "history.jsonl").read_text()


def _send_json(handler: BaseHTTPRequestHandler, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class _Rejecting(BaseHTTPRequestHandler):
    """Answers every request like a provider that does not know the key."""

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        error = {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
        _send_json(self, 401, {"error": error})

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_rejected_key_is_reported_above_the_prompt(spawn, repl_env: dict[str, str]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rejecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = dict(repl_env, OPENAI_BASE_URL=f"http://127.0.0.1:{server.server_port}/v1")
        term = spawn(env=env)
        # The check now answers within the prompt's settling time: the warning may come
        # before or after the first prompt, and the prompt is drawn again below it.
        term.expect(r"rejected the API key \(HTTP 401\): check OPENAI_API_KEY")
        term.wait_prompt()
        term.send("\x04")
        assert term.wait_exit() == 0
    finally:
        server.shutdown()


def test_docker_fallback_is_announced_loudly(
    spawn, repl_env: dict[str, str], tmp_path: Path
) -> None:
    from pygent.runtime.bwrap import bwrap_unavailable_reason

    env = dict(repl_env, DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    term = spawn(env=env, docker=True)  # auto: no --docker, no --no-docker
    if bwrap_unavailable_reason() is None:  # Docker -> bubblewrap: the banner names it
        term.expect(r"Pygent · model test-model · bubblewrap sandbox \(no network\)")
        term.expect(r"(?s)⚠ Docker is not available .*commands run in a bubblewrap sandbox")
        term.expect(r"approvals: commands run without asking")
    else:  # the bare host (tests/sandboxes/test_bwrap.py covers this one too)
        term.expect(r"Pygent · model test-model · local")
        term.expect(r"(?s)⚠ Docker is not available .*WITHOUT isolation")
        term.expect(r"approvals: asks before commands and writes")
    term.wait_prompt()
    term.send("\x04")
    assert term.wait_exit() == 0


def test_docker_asked_for_but_missing_is_a_clear_error(
    spawn, repl_env: dict[str, str], tmp_path: Path
) -> None:
    env = dict(repl_env, DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    term = spawn("--docker", env=env, docker=True)
    term.expect(r"pygent: Docker was asked for but is not available")
    assert term.wait_exit() == 2
    assert "Traceback" not in term.text


class _SingleStream(BaseHTTPRequestHandler):
    """A server like llama-cpp-python's: one request at a time matters. ``GET /models``
    is slow; a chat request arriving while it runs is recorded as a collision."""

    busy = threading.Event()
    collisions: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        type(self).busy.set()
        try:
            time.sleep(1.0)
            self._json({"object": "list", "data": [{"id": "m", "object": "model"}]})
        finally:
            type(self).busy.clear()

    def do_POST(self) -> None:  # noqa: N802 (stdlib naming)
        if type(self).busy.is_set():
            type(self).collisions.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._json(
            {
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "answered alone"},
                     "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            }
        )

    def _json(self, payload: object) -> None:
        _send_json(self, 200, payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_first_prompt_does_not_race_the_warm_up(spawn, repl_env: dict[str, str]) -> None:
    """The key check at start-up and a prompt typed at once never overlap on the server."""
    _SingleStream.collisions = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SingleStream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = dict(repl_env, OPENAI_BASE_URL=f"http://127.0.0.1:{server.server_port}/v1")
        term = spawn(env=env)
        term.expect(re.escape("vc> "))  # typed the moment the prompt shows
        term.send_line("hello")
        term.expect("answered alone")
        assert _SingleStream.collisions == []
        term.wait_prompt()
        term.send("\x04")
        assert term.wait_exit() == 0
    finally:
        server.shutdown()
