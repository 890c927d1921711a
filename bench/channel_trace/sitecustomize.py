"""Timestamps of ``pygent/session/list`` inside ``pygent lsp`` for ``bench_channel.py --trace`` (loaded there only).

``bench_channel.py --trace`` puts this folder first on the server's ``PYTHONPATH`` and
names a file in ``PYGENT_BENCH_TRACE``; Python imports this module at start-up. It wraps
the stdin thread's read and its ``session/list`` answer
(:mod:`pygent.lsp.reader_answers`) and writes one line per answered request: its id, when
the read returned (the thread runs again, with the GIL), when the answer began and ended,
how long the thread waited for a CPU from the start of that read to the end of the answer
(the kernel's count, ``/proc/thread-self/schedstat``; a thread blocked in a read or
waiting for the GIL is not counted) and how long the answer ran on a CPU.
``CLOCK_MONOTONIC`` is one clock for every process of the machine, so the client's send
and receive times line up with these. The kernel is asked only before the read and after
the answer: each question is a system call, which gives the GIL away and waits to get it
back, and that wait must not land inside what is measured. Nothing of this runs unless
the variable is set.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
import time
from typing import Any

TRACE = os.environ.get("PYGENT_BENCH_TRACE")


def _sched() -> tuple[int, int]:
    """This thread's time on a CPU and waiting for one (ns), from the kernel."""
    with open("/proc/thread-self/schedstat") as f:
        run, wait, _ = f.read().split()
    return int(run), int(wait)


def _install(path: str) -> None:
    import pygent.lsp.reader_answers as ra
    import pygent.lsp.server as server_module

    real_os = os
    last = threading.local()
    records: list[tuple[int, ...]] = []
    ids = re.compile(rb'"id": *(\d+)')

    class TimedOs:
        """``os`` for reader_answers: its ``read`` notes when the data came and the CPU wait."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real_os, name)

        def read(self, fd: int, n: int) -> bytes:
            _, waited = _sched()
            data = real_os.read(fd, n)
            last.read = (time.monotonic_ns(), waited)
            return data

    ra.os = TimedOs()  # type: ignore[assignment]
    plain = ra.session_list_answer

    def session_list_answer(server: Any) -> Any:
        answer = plain(server)

        def timed(body: bytes) -> bool:
            if ra._PROBE not in body:
                return bool(answer(body))
            began = time.monotonic_ns()
            cpu0 = time.thread_time_ns()
            done = answer(body)
            cpu1 = time.thread_time_ns()
            ended = time.monotonic_ns()
            _, waited = _sched()
            found = ids.search(body)
            read_at, waited_before = getattr(last, "read", (began, waited))
            if done and found:
                records.append((int(found.group(1)), read_at, began, ended,
                                waited - waited_before, cpu1 - cpu0))
            return bool(done)

        return timed

    server_module.session_list_answer = session_list_answer  # type: ignore[assignment]

    def dump() -> None:
        with open(path, "w") as f:
            f.writelines(" ".join(map(str, r)) + "\n" for r in list(records))

    def every_second() -> None:  # the server may end without atexit (a signal)
        while True:
            time.sleep(1)
            dump()

    atexit.register(dump)
    threading.Thread(target=every_second, name="bench-trace", daemon=True).start()


if TRACE:
    _install(TRACE)
