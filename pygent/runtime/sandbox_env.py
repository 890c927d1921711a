"""The environment a sandboxed command sees: an allow-list, never a copy of the host's.

Anything given to a container at creation is readable by every process in it via
``/proc/1/environ``, and a local child inherits whatever it is given, so no host
secret may be passed: only the variables named here plus those the user named
explicitly (``-e NAME=value`` or ``env`` in settings).
"""

from __future__ import annotations

import os

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
