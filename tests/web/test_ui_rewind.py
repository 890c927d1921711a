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


def remove_every_file(start_ui: StartUi, browser: Browser, project: Path) -> str:
    """A Docker copy-on-write `pygent ui` over ``project`` whose first turn (the model's
    scripted `rm -rf *`) has run; returns the folder's checksum from before it."""
    before = tree_sum(project)
    ui = start_ui(["--folder", str(project), "--docker", "--no-confirm-bash"],
                  env={"PYGENT_IMAGE": TEST_IMAGE, "PYGENT_USE_DOCKER": "1"})
    open_ui(browser, ui.url)
    send_prompt(browser, "Remove every file")
    browser.wait_text(".msg.assistant", "Everything is gone.", timeout=120)
    browser.wait("article.card.tool.status-completed")
    return before


def test_rewind_control_undoes_rm_rf_and_redoes_it(
    start_ui: StartUi, browser: Browser, openai_server: ScriptedOpenAIServer, project: Path
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "cd /workspace && rm -rf * && ls -A | wc -l"})
    openai_server.add_text("Everything is gone.")
    before = remove_every_file(start_ui, browser, project)

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


def test_fork_from_a_prompt_starts_a_session_as_before_it(
    start_ui: StartUi, browser: Browser, openai_server: ScriptedOpenAIServer, project: Path
) -> None:
    """Fork on the prompt of a turn that removed every file: a new session whose sandbox
    still has the files (the model lists them there), while the original keeps its change."""
    openai_server.add_tool_call("bash", {"cmd": "cd /workspace && rm -rf * && ls -A | wc -l"})
    openai_server.add_text("Everything is gone.")
    openai_server.add_tool_call("bash", {"cmd": "cd /workspace && ls"})
    openai_server.add_text("Listed them.")
    before = remove_every_file(start_ui, browser, project)
    active = "document.querySelector('select.session-picker').value"
    original = browser.call("evaluate", expression=active)

    browser.call("click", selector=REWIND)
    browser.wait(f'{PANEL} button[data-rewind="fork"]')
    browser.call("click", selector=f'{PANEL} button[data-rewind="fork"]')
    browser.wait_text(".notice", "Forked before “Remove every file”", timeout=120)
    forked = browser.call("evaluate", expression=active)
    assert forked and forked != original
    assert browser.count(".msg.user") == 0  # the fork's log stops before that prompt
    browser.screenshot("fork-1-new-session")

    # In the fork the files are there again: its sandbox is as it was before the turn.
    send_prompt(browser, "List the files")
    browser.wait_text(".msg.assistant", "Listed them.", timeout=120)
    browser.wait_text("article.card.tool.status-completed", "app.py", timeout=30)
    assert "README.md" in browser.texts("article.card.tool.status-completed")[0]
    browser.screenshot("fork-2-files-back")

    # The original is unchanged: its prompt, and the removal still in its change set.
    browser.call("select", selector="select.session-picker", value=original)
    browser.wait_text(".msg.user .bubble", "Remove every file", timeout=30)
    browser.wait_text("details.changes", "README.md", timeout=30)
    assert browser.count(".msg.user") == 1
    assert tree_sum(project) == before  # copy-on-write: the real folder was never written
