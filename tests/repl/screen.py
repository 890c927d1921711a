"""A tiny terminal screen for rendering tests: what a user sees once rich has drawn and erased.

It understands what rich's live display writes to a terminal without colours (text,
newline, carriage return, cursor up, erase line, cursor hide/show) and fails on any
other control sequence, so a test never passes because something went unread.
"""

from __future__ import annotations

import re

_CSI = re.compile(r"\x1b\[(\??)([0-9;]*)([A-Za-z])")


class Screen:
    """The lines a terminal of ``width`` columns shows after ``feed`` (scrollback included)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.rows: list[list[str]] = [[]]
        self.row = 0
        self.col = 0

    def feed(self, data: str) -> None:
        i = 0
        while i < len(data):
            c = data[i]
            if c == "\x1b":
                match = _CSI.match(data, i)
                if match is None:
                    raise AssertionError(f"unsupported escape {data[i : i + 8]!r}")
                self._control(*match.groups())
                i = match.end()
                continue
            if c == "\n":
                self.row += 1
                self.col = 0
                self._line()
            elif c == "\r":
                self.col = 0
            elif c < " ":
                raise AssertionError(f"unsupported control character {c!r}")
            else:
                if self.col >= self.width:  # auto-wrap
                    self.row += 1
                    self.col = 0
                line = self._line()
                line.extend(" " * (self.col + 1 - len(line)))
                line[self.col] = c
                self.col += 1
            i += 1

    def _line(self) -> list[str]:
        while len(self.rows) <= self.row:
            self.rows.append([])
        return self.rows[self.row]

    def _control(self, private: str, args: str, final: str) -> None:
        n = int(args) if args.isdigit() else 1
        if private == "?" and args == "25" and final in "hl":
            return  # cursor shown / hidden
        if not private and final == "A":
            self.row = max(0, self.row - n)
        elif not private and final == "K" and args == "2":
            self._line().clear()
        elif not private and final == "m":
            return  # colours and styles
        else:
            raise AssertionError(f"unsupported escape CSI {private}{args}{final}")

    @property
    def lines(self) -> list[str]:
        out = ["".join(line).rstrip() for line in self.rows]
        while out and not out[-1]:
            out.pop()
        return out

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
