"""Runtime benchmark: what one command and one session cost in the Docker sandbox.

Usage: python bench/bench_runtime.py [--quick] [--image IMAGE] [-n N]

Measured in one run, side by side, on the same engine and image:
  1. floor: a raw round trip to a shell already running in the container (one exec
     socket: write ``echo x``, read the line back), the least any command can cost;
     and the same socket running the marker script Pygent's persistent shell sends
     for each command (eval, exit status and cwd on stdout, a marker on stderr);
  2. ``docker exec`` per command, the upstream way (``container.exec_run("true")``);
  3. Pygent: ``DockerBackend.run("true")`` (persistent shell, end marker, exit status,
     cwd tracking, watchdog), and ``LocalBackend.run("true")`` for reference;
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pygent.runtime.docker_backend import DockerBackend, DockerOptions  # noqa: E402
from pygent.runtime.docker_engine import connect  # noqa: E402
from pygent.runtime.docker_transport import SHELL_COMMAND, ExecStream  # noqa: E402
from pygent.runtime.local import LocalBackend  # noqa: E402

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


async def _time(n: int, fn: Callable[[], Awaitable[Any]], warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        await fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return samples


async def bench_floor(backend: DockerBackend, n: int) -> list[float]:
    """A raw exec-socket round trip to a second shell (the same one Pygent uses: bash)."""
    assert backend._client is not None and backend.container_id is not None
    stream = await ExecStream.open(
        backend._client, backend.container_id, SHELL_COMMAND, user=backend.user
    )

    async def once() -> None:
        await stream.write(b"echo x\n")
        line = await stream.stdout.readline()
        assert line == b"x\n", line

    try:
        return await _time(n, once)
    finally:
        stream.close()


async def bench_protocol_floor(backend: DockerBackend, n: int) -> list[float]:
    """The raw socket doing what PersistentShell asks of the shell for one command:
    ``eval 'true' </dev/null``, then the end marker on stdout and on stderr."""
    assert backend._client is not None and backend.container_id is not None
    stream = await ExecStream.open(
        backend._client, backend.container_id, SHELL_COMMAND, user=backend.user
    )
    script = (
        b"eval 'true' </dev/null\n"
        b"__r=$?; printf '\\nTOKEN:%s:%s\\n' \"$__r\" \"$PWD\"; printf '\\nTOKEN\\n' >&2\n"
    )

    async def once() -> None:
        await stream.write(script)
        await stream.stdout.readuntil(b"TOKEN:")
        await stream.stdout.readline()
        await stream.stderr.readuntil(b"TOKEN\n")

    try:
        return await _time(n, once)
    finally:
        stream.close()


async def bench_docker_exec(backend: DockerBackend, n: int) -> list[float]:
    """``container.exec_run("true")`` per command (blocking SDK call, timed as is)."""
    assert backend._client is not None and backend.container_id is not None
    container = backend._client.containers.get(backend.container_id)

    async def once() -> None:
        result = container.exec_run(["true"], user=backend.user)
        assert result.exit_code == 0

    return await _time(n, once, warmup=3)


async def bench_run(backend: DockerBackend | LocalBackend, n: int) -> list[float]:
    async def once() -> None:
        result = await backend.run("true", timeout=30)
        assert result.exit_code == 0, result

    return await _time(n, once)


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


async def main(args: argparse.Namespace) -> dict[str, Any]:
    n = args.n or (200 if args.quick else 2000)
    n_exec = max(20, n // 10)
    n_sessions = 5 if args.quick else 20
    options = DockerOptions(image=args.image, pull=False)
    base = Path(tempfile.mkdtemp(prefix="pygent-bench-"))
    backend = DockerBackend(base / "ws", options)
    await backend.start()
    local = LocalBackend(base / "local")
    (base / "local").mkdir()
    await local.start()
    try:
        floor = await bench_floor(backend, n)
        protocol = await bench_protocol_floor(backend, n)
        pygent = await bench_run(backend, n)
        docker_exec = await bench_docker_exec(backend, n_exec)
        local_run = await bench_run(local, n)
    finally:
        await backend.close()
        await local.close()
    starts, closes = await bench_sessions(options, n_sessions, base)
    shutil.rmtree(base, ignore_errors=True)
    rows = {
        "floor_exec_socket_round_trip": _stats(floor),
        "protocol_floor_marker_script": _stats(protocol),
        "pygent_docker_run_true": _stats(pygent),
        "docker_exec_run_true": _stats(docker_exec),
        "pygent_local_run_true": _stats(local_run),
        "session_start": _stats(starts),
        "session_close": _stats(closes),
    }
    med = {k: v["median_ms"] for k, v in rows.items()}
    return {
        "date": datetime.date.today().isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            **_engine(),
            "image": args.image,
        },
        "quick": args.quick,
        "results": rows,
        "ratios": {
            "pygent_over_floor": med["pygent_docker_run_true"]
            / med["floor_exec_socket_round_trip"],
            "pygent_over_protocol_floor": med["pygent_docker_run_true"]
            / med["protocol_floor_marker_script"],
            "docker_exec_over_pygent": med["docker_exec_run_true"] / med["pygent_docker_run_true"],
            "pygent_docker_over_local": med["pygent_docker_run_true"]
            / med["pygent_local_run_true"],
        },
        "goals": {
            "per_command_within_2x_of_floor": med["pygent_docker_run_true"]
            <= 2 * med["floor_exec_socket_round_trip"],
            "at_least_20x_below_docker_exec": med["docker_exec_run_true"]
            >= 20 * med["pygent_docker_run_true"],
            "session_start_under_300ms": med["session_start"] < 300,
        },
    }


def _print(report: dict[str, Any]) -> None:
    labels = {
        "floor_exec_socket_round_trip": "floor: exec socket round trip",
        "protocol_floor_marker_script": "same socket, Pygent's marker script",
        "pygent_docker_run_true": "Pygent DockerBackend.run('true')",
        "docker_exec_run_true": "docker exec per command (exec_run)",
        "pygent_local_run_true": "Pygent LocalBackend.run('true')",
        "session_start": "session start (create+start+shell)",
        "session_close": "session cleanup (close)",
    }
    m = report["machine"]
    print(
        f"{report['date']}  {m['cpus']} CPUs  Python {m['python']}  Docker {m['engine']} "
        f"(API {m['api']}, {m['storage']}, cgroup v{m['cgroup']})  image {m['image']}"
    )
    print(f"{'':38} {'n':>6} {'median ms':>10} {'p90 ms':>10} {'min ms':>9}")
    for key, label in labels.items():
        r = report["results"][key]
        print(
            f"{label:38} {r['n']:>6} {r['median_ms']:>10.3f} {r['p90_ms']:>10.3f} "
            f"{r['min_ms']:>9.3f}"
        )
    ratios = report["ratios"]
    print(
        f"Pygent / floor: {ratios['pygent_over_floor']:.2f}x   "
        f"Pygent / marker-script floor: {ratios['pygent_over_protocol_floor']:.2f}x   "
        f"docker exec / Pygent: {ratios['docker_exec_over_pygent']:.0f}x   "
        f"Pygent docker / local: {ratios['pygent_docker_over_local']:.2f}x"
    )
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
