"""Start-up checks that turn a later traceback into one clear line before the first prompt.

A missing API key (with no custom model configured) stops the REPL at once; an
unreachable model server or a rejected key is reported as a warning, because the
sandbox (``/cmd``, ``/cp``) still works and the server may come up later. The
server check runs in a background thread while the rest of the REPL starts.
"""

from __future__ import annotations

import threading
import time
from typing import Any

#: Seconds the server check may take in all.
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
    """``GET {base_url}/models`` in a daemon thread; :meth:`result` waits for it (bounded)."""

    def __init__(self, base_url: str | None, api_key: str | None) -> None:
        self.url = (base_url or _OPENAI_URL).rstrip("/")
        self._key = api_key
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
        import urllib.error
        import urllib.request

        request = urllib.request.Request(f"{self.url}/models", method="GET")
        if self._key:
            request.add_header("Authorization", f"Bearer {self._key}")
        try:
            with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT) as response:
                response.read(1)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                return (
                    f"the model server at {self.url} rejected the API key (HTTP {exc.code}): "
                    "check OPENAI_API_KEY"
                )
            return None  # reachable; some servers simply have no /models
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return (
                f"cannot reach the model server at {self.url} ({reason}): check "
                "OPENAI_BASE_URL and your network"
            )
        return None

    def result(self) -> str | None:
        """The problem found, or None (also when the check has not finished in time)."""
        left = PROBE_TIMEOUT + 0.2 - (time.monotonic() - self._started)
        self._done.wait(max(0.0, left))
        return self._problem
