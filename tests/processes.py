"""Process helpers for tests: what runs on this machine (containers' processes included)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator


def command_lines() -> Iterator[list[bytes]]:
    """The argv of every live process (containers' included)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                yield fh.read().rstrip(b"\0").split(b"\0")
        except OSError:  # gone meanwhile
            continue


def processes_matching(needle: str) -> list[str]:
    """Command lines of live processes (containers' included) that contain ``needle``."""
    lines = (b" ".join(argv).decode(errors="replace") for argv in command_lines())
    return [line for line in lines if needle in line]


def later(delay: float, fn: Callable[[], object]) -> threading.Thread:
    """Call ``fn`` on a daemon thread after ``delay`` seconds."""

    def run() -> None:
        time.sleep(delay)
        fn()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
