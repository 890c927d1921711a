"""Ordered hand-over to one event loop: items pushed from any thread, delivered in push order.

Events of a session come from several threads at once: the turn (the server's own
loop), command output (the runtime's loop thread) and delegated tasks (the task
manager's thread). Front ends that forward them (the language server, ``pygent ui``)
queue each item under a lock the moment it is pushed and deliver the queue on their
loop, so a client sees the events exactly in the order they happened. Pushing from the
loop itself delivers at once; from another thread it schedules one flush per batch.
A ``merge`` function lets an item fold into the last queued one (chunks of one
command's output), so a burst of small items costs the loop one delivery, not one each;
an item pushed with a ``delay`` may wait that long for the loop, so such a burst also
wakes the loop once rather than once per item (each wake-up costs a busy loop a turn).
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
    """Delivers pushed items on ``loop`` in push order, one ``deliver`` call each.

    Args:
        loop: the loop that delivers.
        deliver: called on ``loop`` with each item, in push order.
        merge: ``merge(last, item)`` folds ``item`` into ``last``, the newest item still
            queued, and returns True; or returns False to queue ``item`` after it. Called
            under the queue's lock, so it must be quick and must not push.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[T], None],
        merge: Callable[[T, T], bool] | None = None,
    ) -> None:
        self.loop = loop
        self.deliver = deliver
        self.merge = merge
        self.closed = False
        self._lock = threading.Lock()
        self._pending: collections.deque[T] = collections.deque()
        self._scheduled = False  # a flush is due (soon or after a delay)
        self._urgent = False  # a flush is due soon

    def push(self, item: T, delay: float = 0.0) -> None:
        """Queue one item (any thread); dropped once closed.

        Args:
            item: what to deliver.
            delay: pushed from another thread, the item may wait up to this many
                seconds before the loop delivers it (an item pushed meanwhile without
                a delay brings it along at once). On the loop, items go out at once.
        """
        with self._lock:
            if self.closed:
                return
            if not (
                self._pending and self.merge is not None and self.merge(self._pending[-1], item)
            ):
                self._pending.append(item)
            schedule: float | None = None
            if delay <= 0:
                if not self._urgent:
                    schedule = 0.0
                self._urgent = True
            elif not self._scheduled:
                schedule = delay
            self._scheduled = True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.flush()
        elif schedule is not None:
            try:
                if schedule:
                    self.loop.call_soon_threadsafe(self._flush_later, schedule)
                else:
                    self.loop.call_soon_threadsafe(self.flush)
            except RuntimeError:  # the loop closed: the server is exiting
                log.debug("dropping an update: the server is stopping")

    def _flush_later(self, delay: float) -> None:
        self.loop.call_later(delay, self.flush)

    def flush(self) -> None:
        """Deliver everything queued (on the loop)."""
        with self._lock:
            items = list(self._pending)
            self._pending.clear()
            self._scheduled = self._urgent = False
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
