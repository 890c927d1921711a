"""Make untrusted text safe for the terminal: no escape sequences, no hidden characters.

Command output and model text reach the user's terminal; an ANSI or OSC sequence in
them could recolour, move the cursor, retitle the window or hide part of a command
the user is asked to approve (ADVERSARIAL B10, C3). Output is *stripped*; text shown
for an approval is made *visible* instead, so nothing is hidden from the decision.
"""

from __future__ import annotations

import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other two-byte escapes, 8-bit CSI.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
# C0/C1 controls except tab and newline (carriage returns are handled separately).
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Characters that reorder or hide text (Trojan Source, zero-width joiners...).
_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def _collapse_returns(line: str) -> str:
    """A progress bar redraws with ``\\r``: keep what a terminal would finally show."""
    line = line.rstrip("\r")
    return line.rsplit("\r", 1)[-1] if "\r" in line else line


def strip_terminal_codes(text: str) -> str:
    """Output text without escape sequences, control characters or ``\\r`` redraws."""
    text = _ESCAPES.sub("", text)
    if "\r" in text:
        text = "\n".join(_collapse_returns(line) for line in text.split("\n"))
    return _INVISIBLE.sub("", _CONTROLS.sub("", text))


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"<U+{code:04X}>"


def make_visible(text: str) -> str:
    """``text`` with every control or invisible character shown as an escape.

    Used for what an approval shows: the user must see exactly what would run.
    """
    text = text.replace("\x1b", "\\x1b").replace("\r", "\\r")
    text = _CONTROLS.sub(_escape_char, text)
    return _INVISIBLE.sub(_escape_char, text)
