"""Driving the real ``pygent`` process in a pseudo-terminal against the scripted model server.

``Term`` reads everything the process prints, strips the terminal codes (colours,
cursor moves, prompt_toolkit redraws) and lets a test wait for text the user would
see. Every spawned process gets a private HOME and XDG directories under tmp_path.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.openai_server import ScriptedOpenAIServer

TIMEOUT = 20.0
PROMPT = "vc> "
_CODES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]"
)


def pygent_command() -> list[str]:
    """The installed ``pygent`` script next to this interpreter, else ``python -m pygent``."""
    script = Path(sys.executable).with_name("pygent")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "pygent"]


def clean(text: str) -> str:
    """What a person reads: no escape sequences, no carriage returns."""
    return _CODES.sub("", text.replace("\r\n", "\n")).replace("\r", "")


class Term:
    """A running ``pygent`` in a pty, with expectations on the cleaned output."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child
        self.raw = ""
        self.pos = 0  # expectations look at the text after the last match

    @property
    def text(self) -> str:
        return clean(self.raw)

    def _pump(self, wait: float) -> bool:
        try:
            self.raw += self.child.read_nonblocking(65536, timeout=wait)
            return True
        except pexpect.TIMEOUT:
            return False
        except pexpect.EOF:
            return False

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears after the previous match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.text, self.pos)
            if found:
                self.pos = found.end()
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} not shown within {timeout}s; the screen after the last "
                    f"match:\n{self.text[self.pos :][-3000:]}"
                )
            if not self._pump(0.1) and not self.child.isalive():
                self._pump(0.1)
                if not regex.search(self.text, self.pos):
                    raise AssertionError(
                        f"pygent exited before showing {pattern!r}; screen:\n{self.text[-3000:]}"
                    )

    def wait_prompt(self, timeout: float = TIMEOUT) -> None:
        """Wait for an empty input prompt: ``vc> `` with nothing typed after it, settled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._pump(0.15)
            tail = self.text[self.pos :]
            at = tail.rfind(PROMPT)
            if at >= 0 and not tail[at + len(PROMPT) :].strip() and not self._pump(0.2):
                self.pos += at + len(PROMPT)
                return
        raise AssertionError(
            f"no prompt within {timeout}s; screen:\n{self.text[self.pos :][-3000:]}"
        )

    def send_line(self, text: str) -> None:
        self.child.send(text + "\r")

    def send(self, data: str) -> None:
        self.child.send(data)

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to end; returns its exit status (128+N for a signal)."""
        deadline = time.monotonic() + timeout
        while self.child.isalive() and time.monotonic() < deadline:
            self._pump(0.1)
        if self.child.isalive():
            raise AssertionError(f"pygent did not exit within {timeout}s:\n{self.text[-3000:]}")
        self._pump(0.05)
        self.child.close()
        if self.child.signalstatus is not None:
            return 128 + self.child.signalstatus
        return int(self.child.exitstatus or 0)


@pytest.fixture
def repl_env(tmp_path: Path, openai_server: ScriptedOpenAIServer) -> dict[str, str]:
    """An environment with a private home, pointing at the scripted server."""
    return terminal_env(
        tmp_path / "home",
        OPENAI_BASE_URL=openai_server.base_url,
        OPENAI_API_KEY="sk-test-key",
        PYGENT_MODEL="test-model",
    )


def terminal_env(home: Path, **variables: str) -> dict[str, str]:
    """This process's environment without Pygent's and the model's variables, with a
    private ``home`` (made here) and XDG folders, for a REPL in a pexpect terminal."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYGENT_", "OPENAI_", "XDG_")) and k not in ("COLUMNS", "LINES")
    }
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        PROMPT_TOOLKIT_NO_CPR="1",  # pexpect answers no cursor-position requests
        TERM="xterm-256color",
        **variables,
    )
    return env


@pytest.fixture
def spawn(tmp_path: Path, repl_env: dict[str, str]) -> Iterator[Callable[..., Term]]:
    """``spawn(*args, env=..., cwd=...)`` starts pygent (``--no-docker`` is added)."""
    children: list[pexpect.spawn] = []
    workdir = tmp_path / "cwd"
    workdir.mkdir()

    def start(
        *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, docker: bool = False
    ) -> Term:
        argv = pygent_command() + ([] if docker else ["--no-docker"]) + list(args)
        child = pexpect.spawn(
            argv[0],
            argv[1:],
            env=env or repl_env,
            cwd=str(cwd or workdir),
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(50, 120),
            timeout=TIMEOUT,
        )
        children.append(child)
        return Term(child)

    yield start
    for child in children:
        if child.isalive():
            child.terminate(force=True)


def sandbox_processes(needle: str) -> list[str]:
    """Command lines of live processes containing ``needle`` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline}")
    return found


def messages(request: Any) -> list[dict[str, Any]]:
    return list(request.body.get("messages", []))
