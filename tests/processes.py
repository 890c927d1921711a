"""Process helpers for tests: what runs on this machine (containers' processes included)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


def processes_matching(needle: str) -> list[str]:
    """Command lines of live processes (containers' included) that contain ``needle``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if needle in cmdline:
            found.append(cmdline)
    return found


def later(delay: float, fn: Callable[[], object]) -> threading.Thread:
    """Call ``fn`` on a daemon thread after ``delay`` seconds."""

    def run() -> None:
        time.sleep(delay)
        fn()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
