"""End to end: headless Chromium on the real ``pygent ui`` process, the scripted model server, local runtime.

Docker is off, so every command asks: the tests answer in the page. Screenshots of
each step go to ``test-artifacts/web/``.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.openai_server import RawReply, ScriptedOpenAIServer, text_reply
from tests.web.conftest import Browser, StartUi

pytestmark = pytest.mark.slow

PROMPT = "textarea.prompt"
READY = ".status-line .state.conn-ready"
APPROVAL = "article.card.approval"
STOP = "footer.composer button.btn.danger"
SEND = "footer.composer button.btn.primary"


def send_prompt(browser: Browser, text: str, page: str = "main") -> None:
    browser.call("fill", selector=PROMPT, text=text, page=page)
    browser.call("press", selector=PROMPT, key="Enter", page=page)


def fetch(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode("utf-8", "replace")


def open_ui(browser: Browser, url: str, page: str = "main") -> None:
    opened = browser.call("open", url=url, page=page)
    assert opened["status"] == 200, opened
    browser.wait(READY, page=page)


def test_full_session_with_an_approval(
    start_ui: StartUi, browser: Browser, openai_server: ScriptedOpenAIServer, project: Path
) -> None:
    """Prompt -> approval card -> allow -> live output -> streamed reply -> changes -> download, apply."""
    openai_server.add_tool_call("bash", {"cmd": "echo hello-from-sandbox | tee greeting.txt"})
    reply = (
        "The command printed **hello-from-sandbox** and saved it in `greeting.txt`. "
        "This reply streams word by word, so the page shows it growing before it is complete."
    )
    openai_server.add_slow_stream(reply, 0.1)
    ui = start_ui(["--folder", str(project)])
    open_ui(browser, ui.url)
    # The settings in force are shown: where commands run and which model answers.
    assert browser.texts(".status-line .runtime") == ["Local (no sandbox)"]
    assert browser.texts(".status-line .model") == ["test-model"]
    assert browser.texts(".ui-bar .ui-folder") == [str(project)]

    send_prompt(browser, "Greet from the sandbox")
    browser.wait(APPROVAL)
    browser.wait("article.card.tool.status-waiting")
    assert browser.texts(f"{APPROVAL} .approval-title") == ["Run this command?"]
    assert browser.texts(f"{APPROVAL} pre.cmd") == ["$ echo hello-from-sandbox | tee greeting.txt"]
    assert "local mode" in browser.texts(f"{APPROVAL} .approval-reason")[0]
    browser.screenshot("session-1-approval")
    # Nothing ran before the answer.
    assert len(openai_server.chat_requests) == 1
    assert not (project / "greeting.txt").exists()

    browser.call("click", selector=f'{APPROVAL} button[data-option="allow_once"]')
    browser.wait("article.card.tool.status-completed")
    browser.wait_text("article.card.tool pre.output-text", "hello-from-sandbox")
    assert browser.count(APPROVAL) == 0
    # The reply streams: seen while incomplete, then whole.
    browser.wait(".msg.assistant.streaming")
    partial = browser.texts(".msg.assistant")[0]
    browser.screenshot("session-2-streaming")
    browser.wait_text(".msg.assistant:not(.streaming)", "before it is complete", timeout=20)
    final = browser.texts(".msg.assistant")[0]
    assert len(partial) < len(final) and final.startswith("The command printed hello-from-sandbox")
    assert browser.count(".msg.assistant strong") == 1  # Markdown rendered
    browser.wait(READY)
    browser.wait_text(".status-line .state", "Ready")
    # The model saw the command's output.
    tool_results = [
        m for m in openai_server.chat_requests[1].body["messages"] if m["role"] == "tool"
    ]
    assert "hello-from-sandbox" in tool_results[0]["content"]

    # The agent's change comes back for review, with its diff.
    row = 'details.panel.changes li.row.change[data-path="greeting.txt"]'
    browser.wait(row)
    browser.wait_text(".notice.changes-note", "1 file changed")
    browser.call("click", selector=f"{row} details.diff-details summary")
    browser.wait_text(f"{row} pre.diff", "+hello-from-sandbox")
    browser.screenshot("session-3-changes", fullPage=True)

    # Download: the bar's link gives the patch; without the token it is refused.
    href = browser.call("attr", selector="a.ui-download", name="href")
    status, headers, body = fetch(ui.origin + href)
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    assert "+++ b/greeting.txt" in body and "+hello-from-sandbox" in body
    assert fetch(ui.origin + "/download/changes.patch")[0] == 403

    # Apply all writes the folder; the list empties.
    browser.call("click", selector="details.panel.changes button.btn.primary")
    browser.wait_text(".toast", "Applied 1 change")
    assert (project / "greeting.txt").read_text() == "hello-from-sandbox\n"
    browser.wait("details.panel.changes", state="hidden")
    browser.screenshot("session-4-applied")
    console = [line for line in browser.call("console") if "error" in line.lower()]
    assert console == [], console


def test_stop_cancels_a_running_command(
    start_ui: StartUi, browser: Browser, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo started; sleep 31.25; echo never"})
    ui = start_ui()
    open_ui(browser, ui.url)
    send_prompt(browser, "Run something slow")
    browser.wait(APPROVAL)
    browser.call("click", selector=f'{APPROVAL} button[data-option="allow_once"]')
    browser.wait("article.card.tool.status-running")
    browser.wait_text("article.card.tool pre.output-text", "started")
    assert _running("sleep 31.25")
    browser.screenshot("cancel-1-running")

    started = time.monotonic()
    browser.call("click", selector=STOP)
    browser.wait(".turn-end.reason-cancelled", timeout=10)
    browser.wait("article.card.tool.status-cancelled")
    browser.wait(SEND)
    assert time.monotonic() - started < 8
    browser.screenshot("cancel-2-cancelled")
    time.sleep(0.5)  # the rest of the command ("echo never") must not run after the stop
    assert "never" not in "".join(browser.texts("pre.output-text"))
    assert browser.texts(".turn-end")[0].startswith("Cancelled")
    deadline = time.monotonic() + 5
    while _running("sleep 31.25"):
        assert time.monotonic() < deadline, "the cancelled command is still running"
        time.sleep(0.1)
    assert len(openai_server.chat_requests) == 1  # no model call after the cancel

    # The session is usable again.
    openai_server.add_text("Still here.")
    send_prompt(browser, "Are you there?")
    browser.wait_text(".msg.assistant", "Still here.")


def _running(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0


def test_no_token_no_page(start_ui: StartUi, browser: Browser) -> None:
    """403 for the page without (or with a wrong) token; a foreign web page cannot open the socket."""
    ui = start_ui()
    for url in (ui.origin + "/", ui.origin + "/?token=wrong" + ui.token[5:]):
        opened = browser.call("open", url=url)
        assert opened["status"] == 403, url
        assert "token" in opened["text"]
    browser.screenshot("token-1-refused")
    # Another web page (here: about:blank, an opaque origin) knows the token and still fails.
    browser.call("open", url="about:blank")
    ws_url = ui.origin.replace("http", "ws") + f"/ws?token={ui.token}"
    outcome = browser.call(
        "evaluate",
        expression=f"""new Promise((resolve) => {{
        const ws = new WebSocket({ws_url!r});
        ws.onopen = () => resolve('open');
        ws.onerror = () => resolve('refused');
    }})""",
    )
    assert outcome == "refused"
    # The real page with the token connects.
    open_ui(browser, ui.url)


def test_reconnect_shows_the_conversation(
    start_ui: StartUi, browser: Browser, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    openai_server.add_text("First answer, kept by the server.")
    ui = start_ui()
    open_ui(browser, ui.url)
    send_prompt(browser, "first question")
    browser.wait_text(".msg.assistant", "First answer")
    session_id = browser.call(
        "evaluate", expression="document.querySelector('select.session-picker').value"
    )
    assert session_id

    # A reload (or a dropped socket) replays the session from the server.
    browser.call("reload")
    browser.wait(READY)
    browser.wait_text(".msg.user", "first question")
    assert browser.texts(".msg.assistant")[0].startswith("First answer")
    # So does a second tab.
    open_ui(browser, ui.url, page="second")
    browser.wait_text(".msg.user", "first question", page="second")
    browser.call("closePage", page="second")

    # A pending approval survives the reload and is answered from the new page.
    openai_server.add_tool_call("bash", {"cmd": "echo after-reload"})
    openai_server.add_text("Done after the reload.")
    send_prompt(browser, "second question")
    browser.wait(APPROVAL)
    browser.call("reload")
    browser.wait(APPROVAL)
    browser.wait("article.card.tool.status-waiting")
    browser.screenshot("reconnect-1-approval-after-reload")
    browser.call("click", selector=f'{APPROVAL} button[data-option="allow_once"]')
    browser.wait_text("article.card.tool pre.output-text", "after-reload")
    browser.wait_text(".msg.assistant", "Done after the reload.")
    assert browser.texts(".msg.user") == ["first question", "second question"]
    browser.screenshot("reconnect-2-answered")

    # After a restart the session is saved: pick it and its messages are back.
    assert ui.stop() == 0
    again = start_ui()
    open_ui(browser, again.url)
    # The saved sessions arrive just after the page's first state.
    browser.wait(f'select.session-picker option[value="{session_id}"]', state="attached")
    browser.call("select", selector="select.session-picker", value=session_id)
    browser.wait_text(".msg.user", "second question")
    assert browser.texts(".msg.user") == ["first question", "second question"]
    assert browser.texts("pre.output-text") == ["after-reload\n"]
    browser.screenshot("reconnect-3-after-restart")


def test_a_cut_reply_is_replaced_and_estimated_tokens_are_marked(
    start_ui: StartUi, browser: Browser, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_truncated_stream("The answer is fort", tool_name=None)
    openai_server.add_text("The answer is 42.")
    # Then a server that sends no usage chunk: the counts become Pygent's estimate.
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": "Still 42."}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    openai_server.add(RawReply(200, body.encode(), "text/event-stream"))
    ui = start_ui()
    open_ui(browser, ui.url)
    send_prompt(browser, "what is it?")
    browser.wait_text(".msg.assistant", "The answer is 42.")
    browser.wait(SEND)  # the turn is over
    assert [t.strip() for t in browser.texts(".msg.assistant")] == ["The answer is 42."]
    assert "~" not in browser.texts(".status-line .tokens")[0]
    # A reload replays the session's log: only the saved answer, never the cut one.
    browser.call("reload")
    browser.wait(READY)
    browser.wait_text(".msg.assistant", "The answer is 42.")
    assert [t.strip() for t in browser.texts(".msg.assistant")] == ["The answer is 42."]

    send_prompt(browser, "sure?")
    browser.wait_text(".msg.assistant", "Still 42.")
    browser.wait_text(".status-line .tokens", "(estimated)")
    tokens = browser.texts(".status-line .tokens")[0]
    assert tokens.startswith("~") and " / ~" in tokens, tokens
    browser.screenshot("estimated-tokens")


def test_task_list(
    start_ui: StartUi, browser: Browser, openai_server: ScriptedOpenAIServer
) -> None:
    """A delegated task shows in the Tasks section with its status and, once done, its result."""

    def sub_agent(body: dict) -> object:
        users = [m.get("content") for m in body["messages"] if m["role"] == "user"]
        if any(isinstance(u, str) and "summarise the readme" in u for u in users):
            return text_reply("The README says **hello**.")
        return None

    openai_server.set_responder(sub_agent)
    openai_server.add_tool_call("delegate_task", {"prompt": "summarise the readme"})
    openai_server.add_text("I delegated the summary.")
    ui = start_ui()
    open_ui(browser, ui.url)
    send_prompt(browser, "Delegate a summary")
    browser.wait("details.panel.tasks li.row.task.status-finished")
    assert browser.texts("details.panel.tasks .row-title") == ["summarise the readme"]
    browser.call("click", selector="details.panel.tasks li.row.task button.btn.secondary")
    browser.wait_text("details.panel.tasks .task-result", "The README says hello.")
    browser.wait_text(".msg.assistant", "I delegated the summary.")
    browser.screenshot("tasks-1-finished")
