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
# "password=..." would rewrite the user's source in the saved conversation. A group
# named "keep" is text around the secret that stays.
_PATTERNS = (
    r"(?P<keep>(?i:authorization\s*:\s*bearer\s+))[^\s\"',]+",
    r"(?P<keep2>(?i:\bbearer\s+))[A-Za-z0-9._~+/=-]{16,}",
    r"\bsk-[A-Za-z0-9_-]{16,}",
    r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}",
    r"\bgithub_pat_[A-Za-z0-9_]{30,}",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
)
# A substring every pattern match contains: most strings hold none of them, and a
# plain substring test is ~50x faster than running the regex over the text.
_TRIGGERS = ("sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "AKIA", "xox")


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
        # Longest first, so a secret that contains another is replaced whole.
        self._values = tuple(values)
        self._exact = re.compile("|".join(map(re.escape, values))) if values else None
        self._patterns = re.compile("|".join(_PATTERNS)) if patterns else None

    @staticmethod
    def _replace(match: re.Match[str]) -> str:
        groups = match.groupdict()
        return (groups.get("keep") or groups.get("keep2") or "") + REDACTED

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if self._exact is not None and any(value in text for value in self._values):
            text = self._exact.sub(REDACTED, text)
        if self._patterns is not None and (
            any(trigger in text for trigger in _TRIGGERS) or "bearer" in text.lower()
        ):
            text = self._patterns.sub(self._replace, text)
        return text


_cached: tuple[tuple[str, ...], Redactor] | None = None


def current_redactor() -> Redactor:
    """A :class:`Redactor` for the secrets in the environment right now.

    Reading the environment costs microseconds per call; code that redacts many
    strings at once (a whole history) takes one redactor and reuses it.
    """
    global _cached
    values = tuple(secrets_from_env())
    if _cached is None or _cached[0] != values:
        _cached = (values, Redactor(values))
    return _cached[1]


def redact_secrets(text: str) -> str:
    """``text`` with secrets from the current environment and known token shapes replaced.

    The environment is read on every call, so a key set after start-up is still hidden.
    """
    return current_redactor()(text)


def redact_value(value: Any, redact: Callable[[str], str] = redact_secrets) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with ``redact`` applied to every string."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item, redact) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item, redact) for item in value]
    return value


__all__ = [
    "REDACTED",
    "Redactor",
    "current_redactor",
    "redact_secrets",
    "redact_value",
    "secrets_from_env",
]
