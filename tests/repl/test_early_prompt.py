"""The prompt drawn before prompt_toolkit loads (pygent/repl/early_prompt.py), in a real pty.

A driver script holds prompt_toolkit back until the test sends it SIGUSR1, so each
case is deterministic: a line typed at the early prompt, a half-typed line that
prompt_toolkit takes over, Ctrl-D and Ctrl-C there. The screen is pyte's terminal
emulator: what a user would see, once every escape sequence has been applied.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pexpect
import pyte
import pytest

ROOT = Path(__file__).resolve().parents[2]

DRIVER = r"""
import asyncio, signal, sys, termios
from pygent.repl.early_prompt import EarlyTerminalReader

async def main():
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda: gate.done() or gate.set_result(None))
    reader = EarlyTerminalReader(None, lambda: ["/help"], load_after=gate)
    loop.add_signal_handler(signal.SIGINT, reader.interrupt)
    for _ in range(int(sys.argv[1])):
        try:
            line = await reader.read()
        except EOFError:
            print("END OF INPUT", flush=True)
            return
        except KeyboardInterrupt:
            print("INTERRUPTED", flush=True)
            return
        echo = termios.tcgetattr(0)[3] & termios.ECHO
        print(f"GOT {line!r} echo={'on' if echo else 'off'}", flush=True)
        if len(sys.argv) > 2:  # a turn: keys typed now arrive raw
            with reader.busy():
                print("TURN", flush=True)
                await asyncio.sleep(float(sys.argv[2]))

asyncio.run(main())
"""


class Driver:
    def __init__(self, reads: int, turn: float | None = None) -> None:
        self.child = pexpect.spawn(
            sys.executable, ["-c", DRIVER, str(reads), *([str(turn)] if turn else [])],
            cwd=str(ROOT), encoding="utf-8", dimensions=(24, 80), timeout=20,
        )
        self.screen = pyte.Screen(80, 24)
        self.stream = pyte.Stream(self.screen)

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display if line.strip()]

    def wait_for(self, text: str, timeout: float = 20, times: int = 1) -> list[str]:
        """Feed the screen until ``times`` lines show ``text``; returns the screen's lines."""
        deadline = time.monotonic() + timeout
        while sum(text in line for line in self.lines()) < times:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on the screen: {self.lines()}")
            try:
                self.stream.feed(self.child.read_nonblocking(4096, timeout=0.1))
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                if not any(text in line for line in self.lines()):
                    raise AssertionError(f"exited before {text!r}: {self.lines()}") from None
        return self.lines()

    def settle(self) -> list[str]:
        """Feed until the program writes nothing for 0.3 s."""
        while True:
            try:
                self.stream.feed(self.child.read_nonblocking(4096, timeout=0.3))
            except (pexpect.TIMEOUT, pexpect.EOF):
                return self.lines()

    def load_prompt_toolkit(self) -> None:
        self.child.kill(signal.SIGUSR1)

    def close(self) -> None:
        self.child.close(force=True)


@pytest.fixture
def driver():
    started: list[Driver] = []

    def start(reads: int, turn: float | None = None) -> Driver:
        started.append(Driver(reads, turn))
        return started[-1]

    yield start
    for d in started:
        d.close()


def test_a_line_typed_before_prompt_toolkit_loads_is_read_and_kept_in_history(driver) -> None:
    d = driver(3)
    assert d.wait_for("vc>") == ["vc>"]
    d.child.send("hi therx\x7fe\r")  # prompt_toolkit is held back: the terminal edits
    assert d.wait_for("GOT")[:2] == ["vc> hi there", "GOT 'hi there' echo=on"]
    # The next prompt: half a line typed early, then prompt_toolkit takes over.
    d.child.send("par")
    d.wait_for("vc> par")
    d.load_prompt_toolkit()
    screen = d.settle()
    assert screen[-1] == "vc> par", screen  # drawn once, by prompt_toolkit, with the typed text
    assert sum("par" in line for line in screen) == 1, screen
    d.child.send("tial\r")
    assert "GOT 'partial' echo=on" in d.wait_for("GOT 'partial'")  # echo is back
    # prompt_toolkit's history has the early line too: Up twice recalls it.
    d.child.send("\x1b[A\x1b[A\r")
    assert d.wait_for("GOT 'hi there'", times=2)[-2:] == ["vc> hi there", "GOT 'hi there' echo=on"]


def test_a_continued_line_survives_the_hand_over(driver) -> None:
    d = driver(1)
    d.wait_for("vc>")
    d.child.send("first \\\r")
    d.wait_for("...")  # the continuation prompt, drawn the early way
    d.child.send("sec")
    d.wait_for("... sec")
    d.load_prompt_toolkit()
    d.settle()
    d.child.send("ond\r")
    # prompt_toolkit redrew both lines: its buffer holds the newline, not the backslash.
    assert d.wait_for("GOT")[-3:] == ["vc> first", "... second", "GOT 'first \\nsecond' echo=on"]


def test_ctrl_d_at_the_early_prompt_ends_input(driver) -> None:
    d = driver(1)
    d.wait_for("vc>")
    d.child.send("\x04")
    d.wait_for("END OF INPUT")


def test_ctrl_c_at_the_early_prompt_interrupts(driver) -> None:
    d = driver(1)
    d.wait_for("vc>")
    d.child.send("abc")
    d.wait_for("vc> abc")
    d.child.send("\x03")
    d.wait_for("INTERRUPTED")


def test_keys_typed_during_a_turn_go_to_prompt_toolkit(driver) -> None:
    """They arrive raw: a Ctrl-D typed while the turn runs ends input at the next prompt,
    which waits for prompt_toolkit instead of taking the key as text."""
    d = driver(2, turn=0.5)
    d.wait_for("vc>")
    d.child.send("hi\r")
    d.wait_for("TURN")
    d.child.send("\x04")
    time.sleep(0.8)  # the turn is over: the next prompt waits for prompt_toolkit
    assert d.settle()[-1] == "TURN"
    d.load_prompt_toolkit()
    assert d.wait_for("END OF INPUT")[-1].endswith("END OF INPUT")


def test_a_block_pasted_at_the_early_prompt_is_one_prompt(driver) -> None:
    """Bracketed paste (the terminal wraps a paste in markers): its newlines stay in the
    one prompt, and the echoed markers are drawn over with the prompt as it reads."""
    d = driver(1)
    d.wait_for("vc>")
    d.child.send("fix: \x1b[200~first\rsecond\x1b[201~")  # as a terminal sends a paste
    d.wait_for("second")
    d.child.send("\r")
    screen = d.wait_for("GOT")
    assert screen[-3:] == ["vc> fix: first", "... second", "GOT 'fix: first\\nsecond' echo=on"]
    assert not any("200~" in line or "201~" in line for line in screen), screen


def test_a_pasted_line_wider_than_the_terminal_is_drawn_over_whole(driver) -> None:
    d = driver(2)
    d.wait_for("vc>")
    d.child.send("one\r")
    d.wait_for("GOT 'one'")
    d.child.send("\x1b[200~" + "x" * 100 + "\ry\x1b[201~\r")  # 80 columns: it wraps
    screen = d.wait_for("GOT 'xx")
    assert screen == [
        "vc> one", "GOT 'one' echo=on",  # what was above is kept
        "vc> " + "x" * 76, "x" * 24, "... y",
        "GOT '" + "x" * 75, "x" * 25 + "\\ny' echo=on",  # the driver's line wraps too
    ], screen


def test_no_color_draws_the_early_prompt_and_banner_plain(monkeypatch) -> None:
    """NO_COLOR (https://no-color.org) is honoured before rich and prompt_toolkit load."""
    import io
    import os
    import pty

    from pygent.repl import early_prompt
    from pygent.repl.banner import Plain

    leader, follower = pty.openpty()
    try:
        with os.fdopen(os.dup(follower), "w") as tty:
            assert Plain(tty).style("x", "bold green") == "\x1b[1;32mx\x1b[0m"
            monkeypatch.setenv("NO_COLOR", "1")
            assert Plain(tty).style("x", "bold green") == "x"
    finally:
        os.close(leader)
        os.close(follower)
    assert early_prompt._styled("vc> ") == "vc> "
    monkeypatch.delenv("NO_COLOR")
    assert early_prompt._styled("vc> ") == "\x1b[1;32mvc> \x1b[0m"
    assert Plain(io.StringIO()).style("x", "bold green") == "x"  # not a terminal
