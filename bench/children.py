"""Child processes of a bench: spawned in their own group, timed, measured from /proc,
and killed on every way out (a timeout, an error, Ctrl-C, SIGTERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _read(path: str, size: int = 1024) -> bytes:
    # os.open/os.read: a tenth of the cost of Path.read_text, which matters when a
    # sampler reads every process's stat file while the measured program runs.
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def parent_pids() -> dict[int, int]:
    """pid -> parent pid for every process (one pass over /proc)."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = _read(f"/proc/{name}/stat")
            except OSError:
                continue  # it ended while we looked
            out[int(name)] = int(stat.rpartition(b")")[2].split(None, 2)[1])
    return out


def tree(root: int) -> list[int]:
    """``root`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_pids().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def rss_bytes(pid: int) -> int:
    """Resident memory of one process now (0 once it is gone)."""
    try:
        return int(_read(f"/proc/{pid}/statm", 256).split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, all its threads."""
    fields = _read(f"/proc/{pid}/stat").rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def peak_rss_bytes(pid: int) -> int:
    """The peak resident memory of a live process so far (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Children:
    """Every process group a bench starts, so that all of them can be killed."""

    def __init__(self) -> None:
        self._roots: set[int] = set()
        self._lock = threading.Lock()

    def add(self, pid: int) -> None:
        with self._lock:
            self._roots.add(pid)

    def kill(self, pid: int) -> None:
        """Kill ``pid``'s descendants (even ones that left its group) and its group."""
        for child in reversed(tree(pid)):
            try:
                os.kill(child, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass  # already gone
        try:
            os.killpg(pid, signal.SIGKILL)  # each child leads its own group
        except (ProcessLookupError, PermissionError):
            pass  # nothing is left in it
        with self._lock:
            self._roots.discard(pid)

    def kill_all(self) -> None:
        with self._lock:
            roots = list(self._roots)
        for pid in roots:
            self.kill(pid)


CHILDREN = Children()


class TreeSampler(threading.Thread):
    """Peak summed resident memory of a process tree.

    Members are read every ``interval`` seconds; the tree itself (a pass over all of
    /proc, about 1 ms) is refreshed every ``refresh`` ticks, so the sampler costs the
    measured program a few percent of one core.
    """

    def __init__(self, root: int, interval: float = 0.01, refresh: int = 5) -> None:
        super().__init__(daemon=True, name=f"rss-sampler-{root}")
        self.root, self.interval, self.refresh, self.peak = root, interval, refresh, 0
        self._done = threading.Event()

    def run(self) -> None:
        members, tick = [self.root], 0
        while not self._done.is_set():
            if tick % self.refresh == 0:
                members = tree(self.root)
            self.peak = max(self.peak, sum(rss_bytes(p) for p in members))
            tick += 1
            self._done.wait(self.interval)

    def stop(self) -> int:
        self._done.set()
        self.join(timeout=2)
        return self.peak


@dataclass
class Run:
    """One finished process."""

    code: int
    started: float  # time.monotonic() just before the spawn
    exited: float  # time.monotonic() when wait4 returned
    cpu_s: float  # user + system, its waited-for descendants included
    max_rss: int  # bytes: the largest single process of the tree (wait4)
    output: str  # stdout and stderr together
    timed_out: bool
    tree_peak: int = 0  # bytes, summed over the tree, when sampled


def spawn_and_wait(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    *,
    log: Path,
    timeout: float,
    stdin: str | None = None,
    sample_memory: bool = False,
) -> Run:
    """Run ``argv`` in a new session (its own process group), killed after ``timeout`` s.

    ``stdin`` is written to a pipe that is then closed; without it stdin is /dev/null.
    Output goes to ``log`` (a file, so a chatty child never blocks on a full pipe).
    """
    fired = threading.Event()
    with open(log, "wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        CHILDREN.add(proc.pid)

        def expire() -> None:
            fired.set()
            CHILDREN.kill(proc.pid)

        timer = threading.Timer(timeout, expire)
        timer.start()
        sampler = TreeSampler(proc.pid) if sample_memory else None
        try:
            if sampler is not None:
                sampler.start()
            if stdin is not None and proc.stdin is not None:
                try:
                    proc.stdin.write(stdin.encode())
                    proc.stdin.close()
                except BrokenPipeError:
                    pass  # it exited without reading: its exit status says why
            # wait4 rather than Popen.wait: it also returns this child's own rusage.
            _, status, usage = os.wait4(proc.pid, 0)
            exited = time.monotonic()
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            timer.cancel()
            peak = sampler.stop() if sampler is not None else 0
            CHILDREN.kill(proc.pid)  # whatever it left behind in its group
    return Run(
        code=proc.returncode,
        started=started,
        exited=exited,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss=usage.ru_maxrss * 1024,
        output=log.read_text(errors="replace"),
        timed_out=fired.is_set(),
        tree_peak=peak,
    )
