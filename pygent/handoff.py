"""Ordered hand-over to one event loop: items pushed from any thread, delivered in push order.

Events of a session come from several threads at once: the turn (the server's own
loop), command output (the runtime's loop thread) and delegated tasks (the task
manager's thread). Front ends that forward them (the language server, ``pygent ui``)
queue each item under a lock the moment it is pushed and deliver the queue on their
loop, so a client sees the events exactly in the order they happened. Pushing from the
loop itself delivers at once; from another thread it schedules one flush per batch.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class LoopHandoff(Generic[T]):
    """Delivers pushed items on ``loop`` in push order, one ``deliver`` call each."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[T], None]) -> None:
        self.loop = loop
        self.deliver = deliver
        self.closed = False
        self._lock = threading.Lock()
        self._pending: collections.deque[T] = collections.deque()
        self._scheduled = False

    def push(self, item: T) -> None:
        """Queue one item (any thread); dropped once closed."""
        with self._lock:
            if self.closed:
                return
            self._pending.append(item)
            schedule = not self._scheduled
            self._scheduled = True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.flush()
        elif schedule:
            try:
                self.loop.call_soon_threadsafe(self.flush)
            except RuntimeError:  # the loop closed: the server is exiting
                log.debug("dropping an update: the server is stopping")

    def flush(self) -> None:
        """Deliver everything queued (on the loop)."""
        with self._lock:
            items = list(self._pending)
            self._pending.clear()
            self._scheduled = False
        for item in items:
            try:
                self.deliver(item)
            except Exception:  # one bad item must not lose the ones after it
                log.exception("delivering an update failed")

    def close(self) -> None:
        """Deliver what is queued, then drop whatever is pushed later."""
        self.flush()
        with self._lock:
            self.closed = True
