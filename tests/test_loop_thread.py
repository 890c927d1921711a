"""LoopThread.call, the synchronous API's hand-over to the runtime's loop thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import pytest

from pygent.runtime.loop import LoopThread


def test_call_returns_the_result_and_raises_the_error() -> None:
    lt = LoopThread()
    try:
        async def answer() -> int:
            await asyncio.sleep(0)
            return 42

        async def fail() -> None:
            raise ValueError("bad input")

        assert lt.call(answer()) == 42
        with pytest.raises(ValueError, match="bad input"):
            lt.call(fail())
    finally:
        lt.stop()


def test_a_timeout_cancels_the_work_once_and_says_so() -> None:
    lt = LoopThread()
    unwound: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            unwound.append("cancelled")

    try:
        started = time.monotonic()
        with pytest.raises(concurrent.futures.TimeoutError):
            lt.call(slow(), timeout=0.2)
        assert time.monotonic() - started < 5
        assert unwound == ["cancelled"]  # the work was stopped before the error returned
    finally:
        lt.stop()
