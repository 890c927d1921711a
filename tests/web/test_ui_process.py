"""The ``pygent ui`` process: its command line, what it refuses, and that stopping it leaves nothing behind.

Raw HTTP here (no browser): the token and Origin checks of the page, the WebSocket
upgrade and the download, the Host check against DNS rebinding, the flags, the
dispatch from ``pygent`` and ``pygent-ui``, and SIGTERM/SIGINT with a running command
(local) and with live containers (Docker).
"""

from __future__ import annotations

import asyncio
import base64
import html
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.docker_gate import TEST_IMAGE
from tests.openai_server import ScriptedOpenAIServer
from tests.web.conftest import ROOT, StartUi, UiServer, rpc_page

STATIC = ROOT / "pygent" / "web" / "static"


def request(ui: UiServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    parts = urlsplit(ui.origin)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def upgrade(ui: UiServer, path: str, origin: str | None, host: str | None = None) -> int:
    """The status of a WebSocket upgrade request (101 when accepted)."""
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    if origin is not None:
        headers["Origin"] = origin
    if host is not None:
        headers["Host"] = host
    return request(ui, path, headers)[0]


def test_token_origin_and_host_are_checked(start_ui: StartUi) -> None:
    ui = start_ui()
    port = urlsplit(ui.origin).port
    token = f"token={ui.token}"
    # The page.
    assert request(ui, "/")[0] == 403
    assert request(ui, "/?token=nope")[0] == 403
    status, body = request(ui, f"/?{token}")
    assert status == 200 and 'src="/static/ui.js' in body and "pygent-ws" in body
    # The WebSocket: the token, and the page's own origin.
    assert upgrade(ui, "/ws", ui.origin) == 403
    assert upgrade(ui, "/ws?token=nope", ui.origin) == 403
    assert upgrade(ui, f"/ws?{token}", "http://evil.example") == 403
    assert upgrade(ui, f"/ws?{token}", "null") == 403
    assert upgrade(ui, f"/ws?{token}", None) == 403
    assert upgrade(ui, f"/ws?{token}", ui.origin) == 101
    # A loopback server answers loopback names only (DNS rebinding: evil.example -> 127.0.0.1).
    assert (
        upgrade(ui, f"/ws?{token}", f"http://evil.example:{port}", host=f"evil.example:{port}")
        == 403
    )
    assert request(ui, f"/?{token}", {"Host": f"evil.example:{port}"})[0] == 403
    assert request(ui, f"/?{token}", {"Host": f"localhost:{port}"})[0] == 200
    # Downloads need the token; the public bundle does not.
    assert request(ui, "/download/changes.patch")[0] == 403
    assert request(ui, f"/download/changes.patch?{token}")[0] == 404  # no session yet
    assert request(ui, "/static/ui.js")[0] == 200
    assert request(ui, "/static/../server.py")[0] == 404
    assert request(ui, "/static/BUILD.json")[0] == 404
    assert "refused GET /ws" in ui.log_text()


def test_page_headers_forbid_framing_and_referrers(start_ui: StartUi) -> None:
    ui = start_ui()
    parts = urlsplit(ui.origin)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", f"/?token={ui.token}")
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.getheader("Referrer-Policy") == "no-referrer"
    assert response.getheader("X-Frame-Options") == "DENY"
    assert "frame-ancestors 'none'" in response.getheader("Content-Security-Policy", "")
    assert response.getheader("Cache-Control") == "no-store"


def _ui(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pygent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=base,
    )


def test_remote_binding_needs_allow_remote(start_ui: StartUi) -> None:
    refused = _ui(["ui", "--no-open", "--host", "0.0.0.0"])
    assert refused.returncode == 2
    assert "--allow-remote" in refused.stderr and refused.stdout == ""
    ui = start_ui(["--host", "0.0.0.0", "--allow-remote"])
    assert "anyone on the network" in ui.log_text()
    # Bound to every address, it no longer insists on loopback names, still on the token.
    assert request(ui, f"/?token={ui.token}", {"Host": "my-laptop.lan"})[0] == 200
    assert request(ui, "/", {"Host": "my-laptop.lan"})[0] == 403


def test_help_and_bad_flags() -> None:
    shown = _ui(["ui", "--help"])
    assert shown.returncode == 0
    for flag in ("--host", "--port", "--open", "--no-open", "--allow-remote", "--folder"):
        assert flag in shown.stdout
    assert _ui(["ui", "--folder", "/no/such/dir", "--no-open"]).returncode == 2
    assert _ui(["ui", "--approval-timeout", "0", "--no-open"]).returncode == 2


def test_pygent_ui_script_and_flags_before_the_word_dispatch_here(
    tmp_path: Path, openai_server: ScriptedOpenAIServer
) -> None:
    """``pygent-ui`` is ``pygent.cli:ui_main``; ``pygent --no-docker ui`` passes the flag on."""
    code = "import sys; from pygent.cli import ui_main; sys.exit(ui_main(['--help']))"
    shown = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert shown.returncode == 0 and shown.stdout.startswith("usage: pygent ui")
    from tests.web.conftest import server_env

    # The environment asks for Docker; the flag before `ui` wins.
    env = server_env(tmp_path, openai_server, PYGENT_USE_DOCKER="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pygent", "--no-docker", "ui", "--no-open"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("Pygent UI: http://127.0.0.1:"), line
        url = line.split(": ", 1)[1].strip()
        ui = UiServer.__new__(UiServer)  # only what _drive reads
        parts = urlsplit(url)
        ui.origin = f"{parts.scheme}://{parts.netloc}"
        ui.token = url.split("token=", 1)[1]
        assert page_config(ui)["runtime"] == "local"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def page_config(ui: UiServer) -> dict:
    """What the page's host is told (``<meta name="pygent-ui">``): folder and defaults."""
    status, body = request(ui, f"/?token={ui.token}")
    assert status == 200, body
    match = re.search(r'<meta name="pygent-ui" content="([^"]*)"', body)
    assert match is not None, body
    return json.loads(html.unescape(match.group(1)))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_kills_the_running_command(
    start_ui: StartUi, openai_server: ScriptedOpenAIServer, sig: int
) -> None:
    marker = f"sleep {40 + sig}.5"
    openai_server.add_tool_call("bash", {"cmd": marker})
    ui = start_ui(["--no-confirm-bash"])  # no approval: the command starts at once

    async def drive() -> None:
        async with rpc_page(ui) as page:
            session = await page.call("pygent/session/new", {"syncMode": "none"})
            await page.send(
                "pygent/session/prompt", {"sessionId": session["sessionId"], "prompt": "sleep"}
            )
            await page.update("tool_call_started")

    asyncio.run(drive())
    time.sleep(0.3)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0
    started = time.monotonic()
    assert ui.stop(sig) == 0
    assert time.monotonic() - started < 20
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode != 0
    assert "stopped" in ui.log_text()


def _containers(pid: int) -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=pygent.owner_pid={pid}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.split()


@pytest.mark.docker
def test_stopping_removes_the_containers(start_ui: StartUi) -> None:
    ui = start_ui(env={"PYGENT_USE_DOCKER": "1", "PYGENT_IMAGE": TEST_IMAGE})

    async def drive() -> list[dict]:
        async with rpc_page(ui) as page:
            return [await page.call("pygent/session/new", {"syncMode": "none"}) for _ in range(2)]

    seen = asyncio.run(drive())
    # Wait for both sessions (each has its container).
    deadline = time.monotonic() + 60
    while len(_containers(ui.proc.pid)) < 2:
        assert time.monotonic() < deadline, f"no containers; log:\n{ui.log_text()}"
        time.sleep(0.2)
    assert page_config(ui)["runtime"] == "docker"
    assert [s["runtime"] for s in seen] == ["docker", "docker"]
    assert ui.stop(signal.SIGTERM, timeout=60) == 0
    assert _containers(ui.proc.pid) == []


def test_the_committed_page_is_the_built_webview() -> None:
    """pygent/web/static holds the build of editors/vscode/webview (python -m pygent.web.build_static)."""
    from pygent.web.build_static import stale_reason

    for name in ("index.html", "ui.css", "ui.js", "chat.css", "BUILD.json"):
        assert (STATIC / name).is_file(), name
    reason = stale_reason()
    assert reason is None, f"{reason}: run python -m pygent.web.build_static"
