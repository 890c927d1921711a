"""``pygent serve --websocket``: the chat page served by the session host itself.

The page is one more client of the host's sessions: an editor (a real ``pygent lsp
--stdio`` joined to the host) starts a turn that waits for an approval, the page lists
the session, replays its transcript, answers the approval, and the editor's turn ends.
The page's doors are the same as ``pygent ui``'s (token, Origin), the address is in
``--status``, and nothing of the page is left once the host stops.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pygent.lsp import host_socket as hs
from pygent.lsp import protocol as p
from tests.host.conftest import SERVE
from tests.openai_server import ScriptedOpenAIServer
from tests.web.conftest import browser, rpc_page  # noqa: F401 (browser: a fixture)
from tests.web.test_ui_browser import open_ui

pytestmark = pytest.mark.timeout(180)


@dataclass
class Page:
    """Where the host's page is (what ``rpc_page`` needs of a server)."""

    url: str

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def token(self) -> str:
        return parse_qs(urlsplit(self.url).query)["token"][0]

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 0)


def _page(host: Any) -> Page:
    url = hs.page_url_path(host.dir).read_text().strip()
    assert url.startswith("http://127.0.0.1:") and "token=" in url, url
    return Page(url)


def _status_code(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_page_on_the_host_answers_an_editors_approval(
    start_host: Any, editors: list, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    host = start_host("--websocket", "0")
    page = _page(host)
    assert host.status()["page"] == page.url
    assert _status_code(page.url) == 200
    assert _status_code(f"{page.origin}/") == 403  # no token, no page

    editor = host.editor("editor", openai_server)
    editors.append(editor)
    sid = editor.new_session(runtime="local")
    openai_server.add_tool_call("bash", {"cmd": "echo answered-from-the-page"})
    openai_server.add_text("done")
    prompt = editor.start(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "run it"})
    asked = editor.permission(30)

    async def on_the_page() -> list[str]:
        async with rpc_page(page) as client:  # type: ignore[arg-type]
            listed = await client.call(p.SESSION_LIST, {})
            assert [s["sessionId"] for s in listed["sessions"]] == [sid]
            transcript = await client.call(p.SESSION_TRANSCRIPT, {"sessionId": sid})
            kinds = [e["type"] for e in transcript["events"]]
            assert kinds[0] == "turn_started" and "permission" in kinds, kinds
            request = await client.receive_until(
                lambda d: d.get("method") == "pygent/requestPermission"
            )
            assert request["params"]["toolCall"]["callId"] == asked["params"]["toolCall"]["callId"]
            await client.answer(request, {"optionId": "allow_once"})
            ended = await client.update("turn_ended", 60)
            assert ended["params"]["sessionId"] == sid
            return kinds

    asyncio.run(on_the_page())
    done = editor.reply(prompt, 60)
    assert done["result"]["stopReason"] == "end_turn", done
    outputs = [m["params"]["update"] for m in editor.seen
               if m.get("method") == p.SESSION_UPDATE
               and m["params"]["update"]["type"] == "tool_call_finished"]
    assert outputs and outputs[0]["ok"]

    assert host.stop() == 0
    assert not hs.page_url_path(host.dir).exists()
    with socket.socket() as probe:  # the page's port is closed with the host
        assert probe.connect_ex(("127.0.0.1", page.port)) != 0


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PYGENT_HOST_DIR": str(tmp_path / "h"), "PYGENT_USE_DOCKER": "0"}
        done = subprocess.run([*SERVE, "--websocket", str(port)], env=env, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "h" / "host.sock").exists()


@pytest.mark.parametrize("value", ["70000", "-1"])
def test_a_bad_port_is_refused(value: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYGENT_HOST_DIR": str(tmp_path / "h")}
    done = subprocess.run([sys.executable, "-m", "pygent", "serve", "--websocket", value],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not a port" in done.stderr


def test_the_page_lists_sessions_opened_and_closed_after_it_loaded(
    start_host: Any,
    editors: list,
    openai_server: ScriptedOpenAIServer,
    browser: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    """The page is open first; an editor then opens a session and closes it: the page's
    session picker follows both without a reload (``pygent/sessionsChanged``)."""
    host = start_host("--websocket", "0")
    page = _page(host)
    open_ui(browser, page.url)
    assert browser.count("select.session-picker option[value^='2']") == 0

    editor = host.editor("editor", openai_server)
    editors.append(editor)
    sid = editor.new_session(runtime="local")
    option = f'select.session-picker option[value="{sid}"]'
    browser.wait(option, state="attached", timeout=30)  # no reload: the host told the page
    assert "(saved)" not in browser.call(
        "evaluate", expression=f"document.querySelector('{option}').textContent"
    )

    closing = editor.start(p.SESSION_CLOSE, {"sessionId": sid})
    assert "error" not in editor.reply(closing, 60)
    # Closed: the page shows it as a saved session (or no longer lists it), never as live.
    shown = f"(() => {{ const o = document.querySelector('{option}'); return o ? o.textContent : null; }})()"
    deadline = time.monotonic() + 30
    while (label := browser.call("evaluate", expression=shown)) is not None and "(saved)" not in label:
        assert time.monotonic() < deadline, f"the page still lists {sid} as live: {label!r}"
        time.sleep(0.2)
    assert host.stop() == 0
