"""A private event loop on a daemon thread, owned by one Runtime.

The backends hold asyncio streams bound to one loop. Giving each runtime its own
loop thread lets the same runtime serve the synchronous upstream API
(``rt.bash("ls")``) and async callers on any other loop, with cancellation
propagating across: cancelling the awaiting task cancels the coroutine here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str = "pygent-runtime") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it from a synchronous caller."""
        if self.in_loop():
            coro.close()
            raise RuntimeError("LoopThread.call() from inside its own loop would deadlock")
        return self.submit(coro).result(timeout)

    async def run(self, coro: Coroutine[Any, Any, T], *, cleanup_wait: float = 10.0) -> T:
        """Await ``coro`` from another loop; cancelling the caller cancels ``coro``.

        On cancellation the caller waits (up to ``cleanup_wait`` seconds) until ``coro``
        has finished unwinding here, so "cancelled" means the command is really dead.
        """
        if self.in_loop():
            return await coro
        finished = threading.Event()

        async def tracked() -> T:
            try:
                return await coro
            finally:
                finished.set()

        future = self.submit(tracked())
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            await asyncio.to_thread(finished.wait, cleanup_wait)
            raise

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    async def _drain(self) -> None:
        """Cancel whatever still runs here so nothing outlives the loop."""
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks(self.loop) if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.loop.shutdown_asyncgens()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        if not self.in_loop() and self._thread.is_alive():
            try:
                self.submit(self._drain()).result(timeout=10)
            except (concurrent.futures.TimeoutError, RuntimeError):
                pass  # stopping anyway: a stuck task must not block shutdown
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop():
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self.loop.close()
