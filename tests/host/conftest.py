"""Fixtures for the session host: a real ``pygent serve`` process and editors that join it.

Each test gets its own short host folder (``PYGENT_HOST_DIR``: a Unix socket path is
limited to 107 bytes), so no test ever joins a host of the user's or another test's.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pygent.lsp import host_socket as hs
from pygent.lsp.client import RpcClient
from pygent.lsp.protocol import HOST_STATUS
from tests.adversarial.lsp_raw import Lsp, start_lsp
from tests.lsp.conftest import server_env
from tests.openai_server import ScriptedOpenAIServer

SERVE = [sys.executable, "-m", "pygent", "serve"]


class Host:
    """A ``pygent serve`` process; its stderr is kept in ``log``."""

    def __init__(self, base: Path, host_dir: Path, env: dict[str, str], args: list[str]) -> None:
        self.base = base
        self.dir = host_dir
        self.env = env
        self.log = base / "host-stderr.log"
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [*SERVE, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=err, env=env, cwd=base,
            )
        ok = hs.wait_until_answers(host_dir, 60, alive=lambda: self.proc.poll() is None)
        assert ok, self.tail()

    @property
    def socket(self) -> Path:
        return hs.socket_path(self.dir)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def status(self) -> dict[str, Any]:
        assert hs.connect(self.dir) is not None, "the host does not answer"
        status: dict[str, Any] = RpcClient.call_once(self.socket, HOST_STATUS)
        return status

    def editor(self, name: str, server: ScriptedOpenAIServer, **env: str) -> Lsp:
        """``pygent lsp --stdio`` in its own home, joined to this host."""
        return start_lsp(self.base / name, server, PYGENT_HOST_DIR=str(self.dir),
                         PYGENT_LSP_HOST="require", **env)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def wait_until(check: Any, timeout: float = 30, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return bool(check())


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A fresh host folder under a short path (created by the host)."""
    parent = Path(tempfile.mkdtemp(prefix="pgh-", dir="/tmp"))
    try:
        yield parent / "h"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def start_host(tmp_path: Path, host_dir: Path, openai_server: ScriptedOpenAIServer) -> Iterator[Any]:
    """``start_host(*args, **env)``: a running host (stopped, or killed, at the end)."""
    hosts: list[Host] = []

    def start(*args: str, **env: str) -> Host:
        base = tmp_path / f"host{len(hosts)}"
        base.mkdir(parents=True, exist_ok=True)
        environ = server_env(base, openai_server, PYGENT_HOST_DIR=str(host_dir), **env)
        host = Host(base, host_dir, environ, list(args))
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        if host.proc.poll() is None:
            host.proc.terminate()
            try:
                host.proc.wait(60)
            except subprocess.TimeoutExpired:
                host.proc.kill()
                host.proc.wait()


@pytest.fixture
def editors() -> Iterator[list[Lsp]]:
    """Editors to close at the end of the test (append them)."""
    opened: list[Lsp] = []
    yield opened
    for lsp in opened:
        if lsp.alive():
            lsp.proc.kill()
            lsp.proc.wait()


def close_editor(lsp: Lsp) -> int:
    """Close an editor's pipe as an editor window does when it closes (no shutdown)."""
    assert lsp.proc.stdin is not None
    lsp.proc.stdin.close()
    return lsp.proc.wait(30)



