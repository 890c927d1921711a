"""The REPL's display while rich still loads: the session's events kept in order until it is up.

A line typed the moment the prompt shows is sent to the model before rich, the renderer
and the terminal approver are loaded (they load behind the request, while the server
thinks): what the session says meanwhile is kept here and handed to the renderer, in
order, as soon as it is attached; an approval asked meanwhile waits for the terminal's
approver.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

from pygent.approval import ApprovalRequest, ApprovalResponse, Approver


class PendingView:
    """Stands in for the renderer (``on_event``, ``on_retry``) until :meth:`attach`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._renderer: Any = None

    def on_event(self, event: Any) -> None:
        self._call("on_event", event)

    def on_retry(self, attempt: int, delay: float, reason: str) -> None:
        self._call("on_retry", attempt, delay, reason)

    def _call(self, name: str, *args: Any) -> None:
        with self._lock:
            renderer = self._renderer
            if renderer is None:
                self._pending.append((name, args))
                return
        getattr(renderer, name)(*args)

    def attach(self, renderer: Any) -> None:
        """Hand over what was kept, then pass everything straight on. Call it on the loop
        the renderer is attached to: what it is handed there is shown before anything new."""
        with self._lock:
            for name, args in self._pending:
                getattr(renderer, name)(*args)
            self._pending.clear()
            self._renderer = renderer


class LateApprover:
    """The session's approver until the terminal's own is built: a request waits for it.

    Args:
        ready: waits until the terminal's approver is built, and returns it.
    """

    def __init__(self, ready: Callable[[], Awaitable[Approver]]) -> None:
        self._ready = ready

    async def request_approval(self, request: ApprovalRequest) -> ApprovalResponse:
        approver = await self._ready()
        return await approver.request_approval(request)
