"""Start-up checks that turn a later traceback into one clear line before the first prompt.

A missing API key (with no custom model configured) stops the REPL at once; an
unreachable model server is reported as a warning, because the sandbox (``/cmd``,
``/cp``) still works and the server may come up later. The server check runs in a
background thread while the rest of the REPL starts.
"""

from __future__ import annotations

import threading
import time
from typing import Any

#: Seconds the server check may take in all (the connection attempt's timeout).
PROBE_TIMEOUT = 2.0
#: The SDK's default (pygent.openai_model.DEFAULT_BASE_URL; not imported: it loads openai).
_OPENAI_URL = "https://api.openai.com/v1"


def missing_key_message(settings: Any, custom_model: Any) -> str | None:
    """The one line to print when no model can work, else None."""
    if custom_model is not None or settings.api_key:
        return None
    return (
        "pygent: no API key: set OPENAI_API_KEY (or api_key in pygent.toml); for another "
        "provider set OPENAI_BASE_URL too (a local server accepts any key, e.g. "
        "OPENAI_API_KEY=none)"
    )


class ServerProbe:
    """Connects to the model server in a daemon thread; :meth:`result` waits (bounded).

    A TCP connection, not an HTTP request: it finds what stops every request (a wrong
    host or port, DNS, a server that is down, no network) at the cost of a socket,
    without loading an HTTP stack before the prompt. A rejected key is reported by the
    model layer's warm-up request once the prompt is up (see lazy_model).
    """

    def __init__(self, base_url: str | None, api_key: str | None = None) -> None:
        self.url = (base_url or _OPENAI_URL).rstrip("/")
        self._problem: str | None = None
        self._done = threading.Event()
        self._started = time.monotonic()
        threading.Thread(target=self._run, name="pygent-probe", daemon=True).start()

    def _run(self) -> None:
        try:
            self._problem = self._check()
        finally:
            self._done.set()

    def _check(self) -> str | None:
        import socket
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(self.url)
            host = parts.hostname
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            return f"OPENAI_BASE_URL {self.url!r} is not a valid URL ({exc})"
        if parts.scheme not in ("http", "https") or not host:
            return f"OPENAI_BASE_URL {self.url!r} is not an http(s) URL"
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
                return None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            if isinstance(exc, socket.gaierror):
                reason = f"unknown host {host}"
            elif isinstance(exc, TimeoutError):
                reason = f"no answer within {PROBE_TIMEOUT:g}s"
            return (
                f"cannot reach the model server at {self.url} ({reason}): check "
                "OPENAI_BASE_URL and your network"
            )

    def result(self) -> str | None:
        """The problem found, or None (also when the check has not finished in time)."""
        left = PROBE_TIMEOUT + 0.2 - (time.monotonic() - self._started)
        self._done.wait(max(0.0, left))
        return self._problem
