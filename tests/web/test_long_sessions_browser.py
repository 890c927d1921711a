"""End to end in headless Chromium on ``pygent ui`` (the page the VS Code chat shares):
usage with cost and context fill in the header, the Compact button and its marker, and a
budget stop."""

from __future__ import annotations

import pytest

from tests.openai_server import ScriptedOpenAIServer
from tests.web.conftest import Browser, StartUi
from tests.web.test_ui_browser import SEND, open_ui, send_prompt

pytestmark = pytest.mark.slow
USAGE = {"prompt_tokens": 2500, "completion_tokens": 50}


def test_usage_compact_button_and_budget_stop(
    start_ui: StartUi, browser: Browser, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_text("first answer", usage=USAGE)
    openai_server.add_text("second answer", usage=USAGE)
    ui = start_ui(env={"PYGENT_CONTEXT_WINDOW": "10000", "PYGENT_BUDGET_CALLS": "3",
                       "PYGENT_PRICES": '{"test-model": {"input": 1, "output": 2}}'})
    open_ui(browser, ui.url)
    send_prompt(browser, "one")
    browser.wait_text(".msg.assistant", "first answer")
    browser.wait(SEND)
    send_prompt(browser, "two")
    browser.wait_text(".msg.assistant", "second answer")
    browser.wait(SEND)
    browser.wait_text(".status-line .tokens", "25% context")
    tokens = browser.texts(".status-line .tokens")[0]
    assert tokens.startswith("5.0k / 100 tokens") and "$0.0052" in tokens, tokens

    openai_server.add_text("## Task\ntwo prompts\n## State of the work\nSUMMARY-MARK", usage=USAGE)
    browser.call("click", selector="header button.compact")
    browser.wait_text("details.compaction-note", "compacted on request")
    browser.wait_text("details.compaction-note .compaction-summary", "SUMMARY-MARK")
    summary_request = openai_server.chat_requests[-1].body
    assert "tools" not in summary_request and "first answer" in str(summary_request)
    browser.screenshot("long-session-compacted")

    send_prompt(browser, "three")  # the budget of 3 calls is spent (2 turns + the summary)
    browser.wait_text(".turn-end.reason-budget", "budget spent")
    browser.wait_text(".notice.level-error", "limit of 3 model calls is reached")  # names the limit
    assert len(openai_server.chat_requests) == 3
    browser.screenshot("long-session-budget")
