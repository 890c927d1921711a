"""Fixtures for the ``pygent ui`` tests: the real server process, and headless Chromium driven by playwright-core.

The server runs as ``python -m pygent ui`` against the scripted OpenAI-compatible
server, with Docker off (local runtime: every command asks) and its home and data
directories under ``tmp_path``. The browser is the Debian Chromium, driven through
``tests/web/driver.mjs`` by playwright-core, which is installed with npm into a cache
directory outside the repository when it is missing. Screenshots go to
``test-artifacts/web/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.openai_server import ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
DRIVER = Path(__file__).resolve().parent / "driver.mjs"
CHROMIUM = os.environ.get("PYGENT_CHROMIUM", "/usr/bin/chromium")
URL_LINE = re.compile(r"^Pygent UI: (http://\S+)$")


def _playwright_dir() -> Path:
    configured = os.environ.get("PYGENT_PLAYWRIGHT_DIR")
    if configured:
        return Path(configured)
    shared = Path("/var/cache/pygent")
    if os.access(shared, os.W_OK) or os.access(shared / "playwright", os.W_OK):
        return shared / "playwright"
    return Path.home() / ".cache" / "pygent" / "playwright"


def _playwright_version() -> str:
    """The playwright-core the extension's own browser tests use, so both run the same."""
    package = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text())
    return package.get("devDependencies", {}).get("playwright-core", "^1.65.1")


def ensure_playwright() -> Path:
    """playwright-core in the cache directory (installed with npm on first use)."""
    base = _playwright_dir()
    if (base / "node_modules" / "playwright-core" / "package.json").is_file():
        return base / "node_modules" / "playwright-core"
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: cannot install playwright-core")
    base.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            "npm",
            "install",
            "--prefix",
            str(base),
            "--no-audit",
            "--no-fund",
            f"playwright-core@{_playwright_version()}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"npm install playwright-core failed:\n{done.stdout}{done.stderr}")
    return base / "node_modules" / "playwright-core"


def _need_browser() -> None:
    missing = [
        what
        for what, ok in (
            ("chromium", Path(CHROMIUM).is_file()),
            ("node", shutil.which("node") is not None),
        )
        if not ok
    ]
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install -y chromium nodejs)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)


class _Lines:
    """The lines of a pipe, read by a thread, so that reads can time out."""

    def __init__(self, stream: Any) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def get(self, timeout: float) -> str | None:
        return self.queue.get(timeout=timeout)


class Browser:
    """Headless Chromium behind ``driver.mjs``: ``browser.call("click", selector=...)``."""

    def __init__(self) -> None:
        playwright = ensure_playwright()
        self.proc = subprocess.Popen(
            ["node", str(DRIVER), str(playwright.parent.parent), CHROMIUM],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines = _Lines(self.proc.stdout)
        self._ids = 0
        first = self._answer(0, 60)
        assert first == "ready", first

    def _answer(self, wanted: int, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"the browser driver did not answer within {timeout}s") from None
            if line is None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise RuntimeError(f"the browser driver exited: {err}")
            try:
                answer = json.loads(line)
            except json.JSONDecodeError:
                continue  # not ours (a library printing)
            if answer.get("id") != wanted:
                continue
            if not answer["ok"]:
                raise AssertionError(f"browser: {answer['error']}")
            return answer["result"]

    def call(self, op: str, timeout: float = 60, **args: Any) -> Any:
        self._ids += 1
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": self._ids, "op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self._answer(self._ids, timeout)

    # Conveniences for what the tests do most.
    def wait(self, selector: str, timeout: float = 15, **kw: Any) -> None:
        self.call("wait", selector=selector, timeout=int(timeout * 1000), **kw)

    def wait_text(self, selector: str, text: str, timeout: float = 15, **kw: Any) -> None:
        self.call("waitText", selector=selector, text=text, timeout=int(timeout * 1000), **kw)

    def texts(self, selector: str, **kw: Any) -> list[str]:
        return self.call("texts", selector=selector, **kw)

    def count(self, selector: str, **kw: Any) -> int:
        return self.call("count", selector=selector, **kw)

    def screenshot(self, name: str, **kw: Any) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.call("screenshot", path=str(path), **kw)
        return path

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("quit", timeout=10)
            except (TimeoutError, RuntimeError, AssertionError, BrokenPipeError):
                self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def server_env(base: Path, openai_server: ScriptedOpenAIServer, **extra: str) -> dict[str, str]:
    """A clean environment: no host settings, home and data under ``base``, Docker off."""
    for name in ("home", "data", "config", "cache"):
        (base / name).mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(base / "home"),
        "XDG_DATA_HOME": str(base / "data"),
        "XDG_CONFIG_HOME": str(base / "config"),
        "XDG_CACHE_HOME": str(base / "cache"),
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_API_KEY": "sk-test-key",
        "PYGENT_MODEL": "test-model",
        "PYGENT_USE_DOCKER": "0",
        "PYGENT_REQUEST_TIMEOUT": "30",
    }
    env.update(extra)
    return env


class UiServer:
    """A running ``python -m pygent ui`` process."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pygent", "ui", "--no-open", *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
        )
        self._lines = _Lines(self.proc.stdout)
        self.url = self._read_url()
        parts = urlsplit(self.url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.token = parse_qs(parts.query)["token"][0]

    def _read_url(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            match = URL_LINE.match(line.strip())
            if match:
                return match.group(1)
        self.proc.kill()
        raise AssertionError(f"pygent ui printed no URL; its log:\n{self.log_text()}")

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the server and wait for it; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
                raise AssertionError(
                    f"pygent ui did not stop within {timeout}s:\n{self.log_text()}"
                ) from None
        self._log.close()
        return self.proc.returncode


StartUi = Callable[..., UiServer]


class RpcPage:
    """The page's side of the WebSocket: JSON-RPC to the language server, as ui.js speaks it."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = 0
        self.seen: list[dict] = []
        self.unmatched: list[dict] = []

    async def receive_until(self, done: Callable[[dict], bool], timeout: float = 30) -> dict:
        """The first message (not taken by an earlier call) that ``done`` accepts."""
        import aiohttp

        for data in self.unmatched:
            if done(data):
                self.unmatched.remove(data)
                return data
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = await self.ws.receive(timeout=deadline - time.monotonic())
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            self.seen.append(data)
            if done(data):
                return data
            self.unmatched.append(data)
        raise AssertionError(f"not seen within {timeout}s; got {self.seen}")

    async def send(self, method: str, params: dict) -> int:
        self.ids += 1
        await self.ws.send_str(
            json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params})
        )
        return self.ids

    async def call(self, method: str, params: dict, timeout: float = 60) -> Any:
        sent = await self.send(method, params)
        answer = await self.receive_until(
            lambda d: d.get("id") == sent and "method" not in d, timeout
        )
        assert "error" not in answer, answer
        return answer["result"]

    async def answer(self, request: dict, result: Any) -> None:
        await self.ws.send_str(
            json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result})
        )

    async def update(self, kind: str, timeout: float = 30) -> dict:
        return await self.receive_until(
            lambda d: (
                d.get("method") == "pygent/sessionUpdate" and d["params"]["update"]["type"] == kind
            ),
            timeout,
        )


@contextlib.asynccontextmanager
async def rpc_page(ui: UiServer) -> AsyncIterator[RpcPage]:
    """A connected, initialised page."""
    import aiohttp

    async with aiohttp.ClientSession() as http_session:
        async with http_session.ws_connect(
            f"{ui.origin}/ws?token={ui.token}", headers={"Origin": ui.origin}
        ) as ws:
            page = RpcPage(ws)
            await page.call("initialize", {"processId": None, "capabilities": {}})
            await ws.send_str(json.dumps({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
            yield page


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A small folder for the sessions to work on."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README.md").write_text("# Demo project\n", encoding="utf-8")
    (folder / "app.py").write_text('print("hello")\n', encoding="utf-8")
    return folder


@pytest.fixture
def start_ui(tmp_path: Path, openai_server: ScriptedOpenAIServer) -> Iterator[StartUi]:
    """``start_ui(args=[...], env={...})`` -> a running server; all are stopped at the end."""
    servers: list[UiServer] = []

    def start(
        args: list[str] | None = None, env: dict[str, str] | None = None, base: Path | None = None
    ) -> UiServer:
        home = base or tmp_path / "ui"
        server = UiServer(
            args or [],
            server_env(home, openai_server, **(env or {})),
            cwd=tmp_path,
            log_path=tmp_path / f"ui-{len(servers)}.log",
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.proc.poll() is None:
            server.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    _need_browser()
    driver = Browser()
    try:
        yield driver
    finally:
        driver.close()
