"""The start-up lines, written with plain ANSI codes so they appear before rich is imported."""

from __future__ import annotations

import os
import sys
from typing import TextIO

_STYLES = {
    "bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "magenta": "35",
    "cyan": "36", "bold red": "1;31", "bold green": "1;32", "bold yellow": "1;33",
    "bold magenta": "1;35",
}  # fmt: skip


class Plain:
    """Writes styled lines to a stream; colours only on a terminal, and not with NO_COLOR
    set (https://no-color.org, as rich and prompt_toolkit do)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.color = self.stream.isatty() and not os.environ.get("NO_COLOR")

    def style(self, text: str, style: str) -> str:
        code = _STYLES.get(style)
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and code else text

    def line(self, *parts: tuple[str, str] | str) -> None:
        """Write one line from ``"text"`` or ``("text", "style")`` parts."""
        out = "".join(p if isinstance(p, str) else self.style(*p) for p in parts)
        self.stream.write(out + "\n")
        self.stream.flush()


def describe_approvals(mode: str, isolated: bool) -> str:
    """One phrase on when the user will be asked, for the start-up hint line."""
    if mode == "confirm":
        return "every command asks first"
    if mode in ("never", "api"):
        return "nothing asks (except protected paths)"
    if mode == "read-only":
        return "read-only: only read-only commands run"
    return "commands run without asking" if isolated else "asks before commands and writes"


def print_banner(
    out: Plain,
    *,
    persona: str,
    model: str,
    where: str,
    isolated: bool,
    workspace: str,
    notices: list[str],
) -> None:
    """Who answers, which model, and where commands run (plus any loud notice)."""
    out.line(
        (persona, "bold magenta"),
        (" · model ", "dim"),
        (model, "bold"),
        (" · ", "dim"),
        (where, "bold green" if isolated else "bold yellow"),
    )
    out.line((f"workspace {workspace}", "dim"))
    for notice in notices:
        out.line((f"⚠ {notice}", "bold yellow"))
