"""The environment a sandboxed command sees: an allow-list, never a copy of the host's.

Anything given to a container at creation is readable by every process in it via
``/proc/1/environ``, and a local child inherits whatever it is given, so no host
secret may be passed: only the variables named here plus those the user named
explicitly (``-e NAME=value`` or ``env`` in settings).

A local command also runs as the same user as Pygent and can read Pygent's own
``/proc/PID/environ``, which shows the environment Pygent was *started* with, whatever
``os.environ`` says later: :func:`scrub_exec_environ` blanks the secrets there.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

#: Variable names that hold secrets (the same rule as :mod:`pygent.redact`).
SECRET_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "PASSWORD", "_PASS", "_CREDENTIALS")

#: Host variables a local command may inherit (locale, path, terminal basics).
HOST_ALLOWLIST = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME",
                  "SHELL", "TMPDIR")

#: Settings that keep tools from waiting on a terminal that is not there.
NON_INTERACTIVE = {
    "TERM": "dumb",
    "PAGER": "cat",
    "GIT_PAGER": "cat",
    "MANPAGER": "cat",
    "GIT_EDITOR": "true",
    "EDITOR": "true",
    "VISUAL": "true",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "true",
    "SSH_ASKPASS": "true",
    "DEBIAN_FRONTEND": "noninteractive",
    "PYTHONUNBUFFERED": "1",
    "PIP_NO_INPUT": "1",
    "CI": "1",
}


def sandbox_environment(
    extra: dict[str, str] | None = None, *, host: bool, home: str = "/tmp"
) -> dict[str, str]:
    """The environment for sandboxed commands.

    Args:
        extra: variables the user named explicitly; they win over the defaults.
        host: True for the local backend (inherit the allow-listed host variables).
        home: the HOME the commands see.
    """
    env: dict[str, str] = {}
    if host:
        env.update({k: v for k in HOST_ALLOWLIST if (v := os.environ.get(k)) is not None})
    else:
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env["LANG"] = "C.UTF-8"
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["HOME"] = home
    env.update(NON_INTERACTIVE)
    env.update(extra or {})
    return env


def is_secret_name(name: str) -> bool:
    """True for variable names such as ``OPENAI_API_KEY`` or ``GITHUB_TOKEN``."""
    return name.upper().endswith(SECRET_SUFFIXES)


def looks_like_token(value: str) -> bool:
    """True for values shaped like an API key or token (``sk-...``, ``ghp_...``, ``AKIA...``)."""
    from pygent.redact import Redactor

    return Redactor(patterns=True)(value) != value


def scrub_exec_environ() -> int:
    """Overwrite the values of secret variables in this process's start-up environment.

    ``/proc/PID/environ`` reads the memory block the kernel filled at ``execve``; neither
    ``del os.environ[...]`` nor ``unsetenv`` changes it, so a local command could read
    the API key from its parent (ADVERSARIAL D3). Secrets are recognised by name
    (:func:`is_secret_name`) or by shape (:func:`looks_like_token`); their values are
    overwritten in place with NUL bytes; ``os.environ`` (a copy made at start-up) keeps
    them for Pygent.
    Linux only; returns how many values were blanked (0 when nothing could be done).
    """
    if not sys.platform.startswith("linux"):
        return 0
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
        # Fields 50 and 51 of /proc/PID/stat (env_start, env_end); index = field - 3.
        start, end = int(fields[47]), int(fields[48])
        with open("/proc/self/environ", "rb") as fh:
            shown = fh.read()
    except (OSError, IndexError, ValueError) as exc:
        log.debug("cannot locate the start-up environment: %s", exc)
        return 0
    if end <= start or ctypes.string_at(start, end - start) != shown:
        log.debug("the start-up environment is not where /proc says; not scrubbed")
        return 0
    blanked = 0
    offset = 0
    for entry in shown.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        text = value.decode("utf-8", "replace")
        if sep and text.strip("\0") and (is_secret_name(name.decode("latin-1"))
                                          or looks_like_token(text)):
            at = start + offset + len(name) + 1
            ctypes.memset(at, 0, len(value))
            blanked += 1
        offset += len(entry) + 1
    return blanked
