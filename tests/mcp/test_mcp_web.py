"""MCP in the chat page, end to end: headless Chromium on the real ``pygent ui`` process
(the same page and ChatController the VS Code chat runs), real MCP servers from
``pygent.toml``, the scripted model. The page shows each server's state and where it
runs, the host-side warning at session start, and an MCP call's approval (server, tool,
arguments) whose "always" answer becomes a rule for the rest of the session."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.mcp.conftest import FAULT_SERVER
from tests.openai_server import ScriptedOpenAIServer
from tests.web.conftest import Browser, StartUi, browser, start_ui  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PROMPT = "textarea.prompt"
READY = ".status-line .state.conn-ready"
APPROVAL = "article.card.approval"
PANEL = "details.panel.mcp"


def _server(name: str, where: str = "sandbox") -> str:
    return (
        f"[mcp.servers.{name}]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(str(FAULT_SERVER))}]\n"
        f'where = "{where}"\n'
    )


def test_server_states_host_warning_and_always_allow_in_the_page(
    start_ui: StartUi, browser: Browser, openai_server: ScriptedOpenAIServer, tmp_path: Path  # noqa: F811
) -> None:
    (tmp_path / "pygent.toml").write_text(  # the ui starts in tmp_path: its pygent.toml
        _server("fault")
        + _server("clock", where="host")
        + '[mcp.servers.broken]\ncommand = "pygent-no-such-mcp-server"\n'
    )
    openai_server.add_tool_call("mcp__fault__fail", {"why": "first"})
    openai_server.add_tool_call("mcp__fault__fail", {"why": "second"})
    openai_server.add_text("Both calls came back.")
    ui = start_ui()
    opened = browser.call("open", url=ui.url)
    assert opened["status"] == 200, opened
    browser.wait(READY)
    browser.call("fill", selector=PROMPT, text="call the tool twice")
    browser.call("press", selector=PROMPT, key="Enter")

    # Session start: the host-side server's warning, and every server's state. (The
    # session starts its three servers first: slow on a loaded machine.)
    browser.wait_text(".notice.level-warning", "MCP server 'clock' runs on the host, outside the sandbox", timeout=90)
    # They start in the background: the panel shows each as starting, then its outcome.
    browser.wait_text(f"{PANEL} li[data-server='broken'] .badge", "failed", timeout=90)
    browser.wait_text(f"{PANEL} summary .count", "2/3 ready", timeout=90)
    rows = f"{PANEL} li.mcp-server"
    assert browser.texts(f"{rows} .row-title") == ["fault", "clock", "broken"]
    assert browser.texts(f"{rows} .badge") == ["ready", "ready", "failed"]
    assert browser.texts(f"{PANEL} li[data-server='clock'] .row-meta") == ["on the host, outside the sandbox"]
    assert "pygent-no-such-mcp-server" in browser.texts(f"{PANEL} li[data-server='broken']")[0]
    assert browser.texts(f"{PANEL} summary .count") == ["2/3 ready · 1 failing"]

    # Local mode: the MCP call asks; the card names the server, the tool and the arguments.
    browser.wait(APPROVAL, timeout=60)
    card = browser.texts(APPROVAL)[0]
    assert "mcp__fault__fail" in card and "MCP server fault, tool fail" in card and '"why": "first"' in card
    browser.screenshot("mcp-1-approval")
    assert len(openai_server.chat_requests) == 1  # nothing ran before the answer
    browser.call("click", selector=f'{APPROVAL} button[data-option="allow_always"]')
    browser.wait_text(".msg.assistant", "Both calls came back.", timeout=90)
    # "Always" became a rule: the second call ran without a second card.
    assert browser.count(APPROVAL) == 0
    results = [m["content"] for m in openai_server.chat_requests[-1].body["messages"] if m["role"] == "tool"]
    assert "failing on purpose: first" in results[0] and "failing on purpose: second" in results[1]
    browser.screenshot("mcp-2-done", fullPage=True)
    console = [line for line in browser.call("console") if "error" in line.lower()]
    assert console == [], console


def test_a_slow_server_shows_starting_then_ready_and_the_turn_gets_its_tools(
    start_ui: StartUi, browser: Browser, openai_server: ScriptedOpenAIServer, tmp_path: Path  # noqa: F811
) -> None:
    gate = tmp_path / "go"  # the server answers nothing until this file exists
    (tmp_path / "pygent.toml").write_text(
        _server("slow")
        + f"env = {{ FAULT_START_GATE = {json.dumps(str(gate))}, FAULT_DIR = {json.dumps(str(tmp_path))} }}\n"
    )
    openai_server.add_text("Its tools were there.")
    ui = start_ui()
    opened = browser.call("open", url=ui.url)
    assert opened["status"] == 200, opened
    browser.wait(READY)
    browser.call("fill", selector=PROMPT, text="hello")
    browser.call("press", selector=PROMPT, key="Enter")
    badge = f"{PANEL} li[data-server='slow'] .badge"
    # The session opened without waiting: the panel says starting, the turn waits for it.
    browser.wait_text(badge, "starting", timeout=90)
    browser.wait_text(f"{PANEL} summary .count", "0/1 ready")
    browser.wait_text(".notice", "waiting for MCP server(s) to start: slow", timeout=30)
    browser.screenshot("mcp-3-starting")
    assert openai_server.chat_requests == []
    gate.write_text("")
    browser.wait_text(badge, "ready", timeout=60)
    browser.wait_text(".msg.assistant", "Its tools were there.", timeout=90)
    tools = [t["function"]["name"] for t in openai_server.chat_requests[0].body["tools"]]
    assert "mcp__slow__echo" in tools
    browser.screenshot("mcp-4-ready")
