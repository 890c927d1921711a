"""Runtime benchmark: what one command and one session cost in the Docker sandbox.

Usage: python bench/bench_runtime.py [--quick] [--image IMAGE] [-n N]

Measured in one run, side by side, on the same engine, container and image, in
interleaved rounds (so a change in the machine's load touches every row alike):
  1. the floor: a shell already running in the container, one exec socket, a
     blocking ``echo x`` round trip with no event loop: the least a command can cost;
     the same round trip on the event loop; and the event loop running the line
     Pygent sends per command (``eval``, exit status, cwd, both end markers);
  2. ``docker exec`` per command, the upstream way (``container.exec_run("true")``);
  3. Pygent: ``Runtime.bash("true")`` (the synchronous API: its loop thread, the disk
     watchdog, the backend's recovery checks, the persistent shell), the async
     ``DockerBackend.run("true")``, and ``LocalBackend.run("true")`` for reference;
  4. session start (container create + start + shell ready) and cleanup (close()).
Results: a table on stdout and bench/results/runtime.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pygent.runtime.docker_backend import DockerBackend, DockerOptions  # noqa: E402
from pygent.runtime.docker_engine import connect  # noqa: E402
from pygent.runtime.docker_transport import SHELL_COMMAND, ExecStream, _hijack_exec  # noqa: E402
from pygent.runtime.facade import Runtime  # noqa: E402
from pygent.runtime.local import LocalBackend  # noqa: E402
from pygent.runtime.shell import END_FUNCTION, command_line  # noqa: E402
from pygent.settings import load_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "runtime.json"
DEFAULT_IMAGE = os.environ.get("PYGENT_TEST_IMAGE", "pygent-test:bookworm")


def _stats(samples: list[float]) -> dict[str, float]:
    """Median, p90, min and max in milliseconds."""
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {
        "n": len(ordered),
        "median_ms": statistics.median(ordered) * 1000,
        "p90_ms": p90 * 1000,
        "min_ms": ordered[0] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def _raw_exec(backend: DockerBackend) -> Any:
    """A second shell in the sandbox container on a raw, blocking exec socket."""
    assert backend._client is not None and backend.container_id is not None
    api = backend._client.api
    exec_id = api.exec_create(
        backend.container_id, SHELL_COMMAND, stdin=True, stdout=True, stderr=True,
        user=backend.user, workdir="/workspace",
    )["Id"]
    sock, _early = _hijack_exec(api, exec_id)
    sock.setblocking(True)
    return sock


class _Waiter:
    """A receiver that resolves a future once each stream's output ends as expected."""

    def __init__(self) -> None:
        self.future: asyncio.Future[None] | None = None
        self.expect = {1: b"", 2: b""}
        self.got = {1: b"", 2: b""}

    def arm(self, out: bytes, err: bytes = b"") -> asyncio.Future[None]:
        self.future = asyncio.get_running_loop().create_future()
        self.expect = {1: out, 2: err}
        self.got = {1: b"", 2: b""}
        return self.future

    def shell_output(self, stream: int, data: bytes) -> None:
        self.got[stream] += data
        if all(self.got[k].endswith(v) for k, v in self.expect.items()):
            if self.future is not None and not self.future.done():
                self.future.set_result(None)

    def shell_closed(self) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_exception(ConnectionError("the bench shell closed"))

    def shell_exited(self) -> None:
        pass


async def _stream(backend: DockerBackend) -> tuple[ExecStream, _Waiter]:
    assert backend._client is not None and backend.container_id is not None
    stream = await ExecStream.open(
        backend._client, backend.container_id, SHELL_COMMAND, user=backend.user
    )
    waiter = _Waiter()
    stream.attach(waiter)
    return stream, waiter


Once = Callable[[], Any]  # a sync function, or one returning an awaitable


async def setup(backend: DockerBackend, local: LocalBackend, runtime: Runtime,
                closers: list[Callable[[], Any]]) -> dict[str, Once]:
    """One ``once`` per measurement, all on the same container."""
    sock = _raw_exec(backend)
    closers.append(sock.close)

    def floor_blocking() -> None:
        # A shell already running in the container, one exec socket, no event loop:
        # send `echo x`, read the reply frame (8-byte header + "x\n").
        sock.sendall(b"echo x\n")
        got = b""
        while not got.endswith(b"x\n"):
            got += sock.recv(4096)

    floor_stream, floor_waiter = await _stream(backend)
    closers.append(floor_stream.close)

    async def floor_loop() -> None:
        # The same round trip on the event loop: the socket's protocol callback
        # resolves a future when "x\n" arrives (Pygent's I/O model, no protocol).
        done = floor_waiter.arm(b"x\n")
        floor_stream.write(b"echo x\n")
        await done

    proto_stream, proto_waiter = await _stream(backend)
    closers.append(proto_stream.close)
    proto_stream.write(f"exec 3<&-; {END_FUNCTION}\n".encode())
    token = "0123456789ab"
    line = command_line("true", token)
    want_out, want_err = b":0:/workspace\n", f"{token}\n".encode()

    async def protocol_loop() -> None:
        # The line PersistentShell sends per command, waiting for both end markers.
        done = proto_waiter.arm(want_out, want_err)
        proto_stream.write(line)
        await done

    assert backend._client is not None and backend.container_id is not None
    container = backend._client.containers.get(backend.container_id)

    def docker_exec() -> None:
        assert container.exec_run(["true"], user=backend.user).exit_code == 0

    async def backend_run() -> None:
        result = await backend.run("true", timeout=30)
        assert result.exit_code == 0, result

    def runtime_bash() -> None:
        out = runtime.bash("true")
        assert out == "$ true\n", out

    async def local_run() -> None:
        result = await local.run("true", timeout=30)
        assert result.exit_code == 0, result

    return {
        "floor_blocking_socket": floor_blocking,
        "floor_event_loop": floor_loop,
        "protocol_floor_marker_line": protocol_loop,
        "pygent_runtime_bash_true": runtime_bash,
        "pygent_docker_backend_run_true": backend_run,
        "docker_exec_run_true": docker_exec,
        "pygent_local_backend_run_true": local_run,
    }


async def measure(cases: dict[str, Once], n: int, rounds: int) -> dict[str, list[float]]:
    """Time each case n times, interleaved in rounds so that a change in the machine's
    load during the run touches every case alike; each round starts with a warm-up."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    per_round = max(1, n // rounds)
    for _ in range(rounds):
        for name, once in cases.items():
            count = max(2, per_round // 10) if name == "docker_exec_run_true" else per_round
            for i in range(count + 5):
                start = time.perf_counter()
                got = once()
                if asyncio.iscoroutine(got):
                    await got
                if i >= 5:
                    samples[name].append(time.perf_counter() - start)
    return samples


async def bench_sessions(
    options: DockerOptions, n: int, base: Path
) -> tuple[list[float], list[float]]:
    starts, closes = [], []
    for i in range(n + 1):
        backend = DockerBackend(base / f"s{i}", options)
        t0 = time.perf_counter()
        await backend.start()
        t1 = time.perf_counter()
        result = await backend.run("true", timeout=30)
        assert result.exit_code == 0
        t2 = time.perf_counter()
        await backend.close()
        t3 = time.perf_counter()
        if i:  # the first one warms the client and the reaper
            starts.append(t1 - t0)
            closes.append(t3 - t2)
    return starts, closes


def _engine() -> dict[str, str]:
    client = connect()
    try:
        version = client.version()
        info = client.info()
    finally:
        client.close()
    return {
        "engine": version.get("Version", "?"),
        "api": version.get("ApiVersion", "?"),
        "storage": info.get("Driver", "?"),
        "cgroup": str(info.get("CgroupVersion", "?")),
    }


LABELS = {
    "floor_blocking_socket": "floor: exec socket round trip, blocking (echo x)",
    "floor_event_loop": "floor on the event loop (echo x)",
    "protocol_floor_marker_line": "event loop + Pygent's per-command line",
    "pygent_runtime_bash_true": "Pygent Runtime.bash('true') (sync API)",
    "pygent_docker_backend_run_true": "Pygent DockerBackend.run('true') (async)",
    "docker_exec_run_true": "docker exec per command (exec_run)",
    "pygent_local_backend_run_true": "Pygent LocalBackend.run('true')",
    "session_start": "session start (create+start+shell)",
    "session_close": "session cleanup (close)",
}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    n = args.n or (300 if args.quick else 3000)
    rounds = 3 if args.quick else 10
    n_sessions = 5 if args.quick else 20
    options = DockerOptions(image=args.image, pull=False)
    base = Path(tempfile.mkdtemp(prefix="pygent-bench-"))
    backend = DockerBackend(base / "ws", options)
    await backend.start()
    (base / "local").mkdir()
    local = LocalBackend(base / "local")
    await local.start()
    settings = load_settings({"image": args.image}, environ={}, cwd=base)
    runtime = Runtime(use_docker=True, workspace=base / "rt", settings=settings)
    runtime.wait_ready(120)
    closers: list[Callable[[], Any]] = []
    try:
        cases = await setup(backend, local, runtime, closers)
        samples = await measure(cases, n, rounds)
    finally:
        for close in closers:
            close()
        runtime.cleanup()
        await backend.close()
        await local.close()
    starts, closes = await bench_sessions(options, n_sessions, base)
    shutil.rmtree(base, ignore_errors=True)
    rows = {name: _stats(values) for name, values in samples.items()}
    rows["session_start"] = _stats(starts)
    rows["session_close"] = _stats(closes)
    med = {k: v["median_ms"] for k, v in rows.items()}
    floor = med["floor_blocking_socket"]
    bash = med["pygent_runtime_bash_true"]
    return {
        "date": datetime.date.today().isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1min": os.getloadavg()[0],
            **_engine(),
            "image": args.image,
        },
        "quick": args.quick,
        "rounds": rounds,
        "results": rows,
        "ratios": {
            "runtime_bash_over_floor": bash / floor,
            "backend_run_over_floor": med["pygent_docker_backend_run_true"] / floor,
            "event_loop_floor_over_floor": med["floor_event_loop"] / floor,
            "protocol_floor_over_floor": med["protocol_floor_marker_line"] / floor,
            "docker_exec_over_runtime_bash": med["docker_exec_run_true"] / bash,
            "docker_over_local_backend": med["pygent_docker_backend_run_true"]
            / med["pygent_local_backend_run_true"],
        },
        "goals": {
            "runtime_bash_within_2x_of_floor": bash <= 2 * floor,
            "at_least_20x_below_docker_exec": med["docker_exec_run_true"] >= 20 * bash,
            "session_start_under_300ms": med["session_start"] < 300,
        },
    }


def _print(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"{report['date']}  {m['cpus']} CPUs  Python {m['python']}  Docker {m['engine']} "
        f"(API {m['api']}, {m['storage']}, cgroup v{m['cgroup']})  image {m['image']}  "
        f"load {m['load_average_1min']:.2f}"
    )
    print(f"{'':50} {'n':>6} {'median ms':>10} {'p90 ms':>10} {'min ms':>9}")
    for key, label in LABELS.items():
        r = report["results"][key]
        print(
            f"{label:50} {r['n']:>6} {r['median_ms']:>10.3f} {r['p90_ms']:>10.3f} "
            f"{r['min_ms']:>9.3f}"
        )
    for name, value in report["ratios"].items():
        print(f"  {name}: {value:.2f}x")
    for goal, met in report["goals"].items():
        print(f"  {'met ' if met else 'MISS'} {goal}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke run)")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="a local image with /bin/sh")
    parser.add_argument("-n", type=int, default=0, help="iterations per command measurement")
    report = asyncio.run(main(parser.parse_args()))
    _print(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")
