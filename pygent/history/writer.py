"""``AppendQueue``: a history file's appends written and synced on a thread of their own.

Each append is a write and an ``fdatasync`` (1-3 ms, far more on a busy disk); done on
the caller's event loop, twenty sessions finishing a step at once held the loop for
tens of milliseconds. The queue takes the messages at once and a writer thread saves
them, every batch that waited meanwhile with one write and one sync (group commit).
The caller learns when its messages are on disk from :meth:`AppendQueue.synced`:
an acknowledgement (a turn's end) waits for it, so "acknowledged" still means saved.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from pygent.errors import SessionError

#: An idle writer thread exits after this many seconds; the next append starts another.
IDLE_EXIT = 5.0


class AppendQueue:
    """Saves queued messages in order on a writer thread, many per write and sync.

    Args:
        write: saves a batch of messages (``HistoryFile.append_many``); called on the
            writer thread, in queue order; raises :class:`SessionError` when it fails.
        name: the writer thread's name.
    """

    def __init__(self, write: Callable[[list[Any]], None], name: str = "pygent-history") -> None:
        self._write = write
        self._name = name
        self._cond = threading.Condition()
        self._queue: list[Any] = []
        self._queued = 0  # messages ever queued
        self._done = 0  # messages ever written (or failed)
        self._waiters: list[tuple[int, concurrent.futures.Future[None]]] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self._error: SessionError | None = None  # the last batch's, until one succeeds

    def put(self, message: Any) -> None:
        """Queue one message (a snapshot the caller no longer changes); returns at once."""
        with self._cond:
            if self._closed:
                raise SessionError("the history file is closed")
            self._queue.append(message)
            self._queued += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def synced(self) -> concurrent.futures.Future[None]:
        """A future set once every message queued so far is on disk.

        It fails with the :class:`SessionError` of the last batch when that could not be
        saved (its messages stay pending in the file and go with the next batch), until a
        later batch is saved.
        """
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._cond:
            if self._done < self._queued:
                self._waiters.append((self._queued, future))
            elif self._error is not None:  # failed before anyone asked: still not saved
                future.set_exception(self._error)
            else:
                future.set_result(None)
        return future

    def wait(self) -> None:
        """Block until everything queued is written (errors are for :meth:`synced`)."""
        if threading.current_thread() is self._thread:
            return  # the writer itself (never: it does not call back into the file)
        with self._cond:
            while self._done < self._queued:
                self._cond.wait()

    def close(self) -> None:
        """Write what is queued, then stop the writer thread; later puts fail."""
        self.wait()
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _main(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    if self._closed or not self._cond.wait(IDLE_EXIT) and not self._queue:
                        self._thread = None
                        return
                batch, self._queue = self._queue, []
            error: SessionError | None = None
            try:
                self._write(batch)
            except SessionError as exc:
                error = exc
            except Exception as exc:  # never leave a waiter hanging: report it as a save error
                error = SessionError(f"could not save session: {exc}")
            with self._cond:
                self._error = error
                self._done += len(batch)
                ready = [f for upto, f in self._waiters if upto <= self._done]
                self._waiters = [(upto, f) for upto, f in self._waiters if upto > self._done]
                self._cond.notify_all()
            for future in ready:
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)


def snapshot(value: Any) -> Any:
    """A copy of a JSON-like value's containers (strings are immutable): what is queued
    must not change when the caller later edits its message in place."""
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snapshot(v) for v in value]
    return value
