"""Secret redaction: replaces API keys and tokens with ``[redacted]`` before text is persisted."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"

# Values shorter than this are not treated as secrets: replacing a 4-character
# placeholder key such as "test" everywhere would mangle the conversation.
MIN_SECRET_LENGTH = 8

_SECRET_NAME_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "PASSWORD")

# High-precision shapes only: a history file holds code, and a loose pattern such as
# "password=..." would rewrite the user's source in the saved conversation.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)(authorization\s*:\s*bearer\s+)[^\s\"',]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{16,}"), r"\1" + REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}"), REDACTED),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{30,}"), REDACTED),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), REDACTED),
)


def secrets_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of variables that hold secrets, longest first.

    ``environ`` defaults to ``os.environ``. A variable counts when its name ends in
    ``_KEY``, ``_TOKEN``, ``_SECRET`` or ``PASSWORD`` (``OPENAI_API_KEY`` included) and
    its value has at least :data:`MIN_SECRET_LENGTH` characters.
    """
    env = os.environ if environ is None else environ
    values = {
        value
        for name, value in env.items()
        if name.upper().endswith(_SECRET_NAME_SUFFIXES) and len(value) >= MIN_SECRET_LENGTH
    }
    return sorted(values, key=len, reverse=True)


class Redactor:
    """A callable ``str -> str`` that hides the given secret values and known token shapes."""

    def __init__(self, secrets: Iterable[str] = (), *, patterns: bool = True) -> None:
        """``secrets``: exact values to hide; ``patterns``: also hide ``sk-...``, bearer tokens etc."""
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._values = tuple(values)
        # Longest first, so a secret that contains another is replaced whole.
        self._exact = re.compile("|".join(map(re.escape, values))) if values else None
        self._patterns = _PATTERNS if patterns else ()

    def __call__(self, text: str) -> str:
        if self._exact is not None:
            text = self._exact.sub(REDACTED, text)
        for pattern, replacement in self._patterns:
            text = pattern.sub(replacement, text)
        return text


_cached: tuple[tuple[str, ...], Redactor] | None = None


def redact_secrets(text: str) -> str:
    """``text`` with secrets from the current environment and known token shapes replaced.

    The environment is read on every call (a key set after start-up is still
    hidden); the compiled pattern is rebuilt only when the secret values change.
    """
    global _cached
    values = tuple(secrets_from_env())
    if _cached is None or _cached[0] != values:
        _cached = (values, Redactor(values))
    return _cached[1](text)


def redact_value(value: Any, redact: Callable[[str], str] = redact_secrets) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with ``redact`` applied to every string."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item, redact) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item, redact) for item in value]
    return value


__all__ = ["REDACTED", "Redactor", "redact_secrets", "redact_value", "secrets_from_env"]
