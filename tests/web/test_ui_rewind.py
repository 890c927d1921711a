"""End to end in headless Chromium on the real ``pygent ui``: an ``rm -rf *`` the policy
lets run (--no-confirm-bash) in a Docker session (the page makes ``copy`` sessions), undone
from the rewind control on the prompt (the files it would restore shown first), then redone."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.docker_gate import TEST_IMAGE
from tests.openai_server import ScriptedOpenAIServer
from tests.web.conftest import Browser, StartUi
from tests.web.test_ui_browser import open_ui, send_prompt

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(240)]

REWIND = ".user-turn .rewind-button"
PANEL = "section.rewind"


def tree_sum(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_rewind_control_undoes_rm_rf_and_redoes_it(
    start_ui: StartUi, browser: Browser, openai_server: ScriptedOpenAIServer, project: Path
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "cd /workspace && rm -rf * && ls -A | wc -l"})
    openai_server.add_text("Everything is gone.")
    before = tree_sum(project)
    ui = start_ui(["--folder", str(project), "--docker", "--no-confirm-bash"],
                  env={"PYGENT_IMAGE": TEST_IMAGE, "PYGENT_USE_DOCKER": "1"})
    open_ui(browser, ui.url)
    send_prompt(browser, "Remove every file")
    browser.wait_text(".msg.assistant", "Everything is gone.", timeout=120)
    browser.wait("article.card.tool.status-completed")

    # The control on the prompt shows what a rewind would restore, before doing anything.
    browser.call("click", selector=REWIND)
    browser.wait(f"{PANEL} .rewind-file")
    shown = browser.texts(f"{PANEL} .rewind-file code")
    assert sorted(shown) == ["README.md", "app.py"], shown
    assert browser.texts(f"{PANEL} .rewind-title")[0].startswith("Rewind to before “Remove every file”")
    browser.screenshot("rewind-1-plan")

    browser.call("click", selector=f'{PANEL} button[data-rewind="both"]')
    browser.wait_text(f"{PANEL} .rewind-done", "Rewound to before turn 1", timeout=60)
    assert "2 file(s) restored" in browser.texts(f"{PANEL} .rewind-done")[0]
    assert browser.count(".msg.user") == 0  # the conversation went back too
    browser.screenshot("rewind-2-done")
    assert tree_sum(project) == before  # copy-on-write: the real folder was never written

    browser.call("click", selector=f'{PANEL} button[data-rewind="redo"]')
    browser.wait_text(".msg.user .bubble", "Remove every file", timeout=60)
    browser.wait_text(f"{PANEL} .rewind-done", "Redone")
    # The change set is the rm -rf again, ready to review.
    browser.wait_text("details.changes", "README.md", timeout=30)
    assert tree_sum(project) == before
