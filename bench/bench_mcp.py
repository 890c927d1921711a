"""MCP tool calls and server start-up (issue 17), each figure against a baseline of the same run.

    python bench/bench_mcp.py [--quick] [--write-docs | --docs-only]

Needs a Docker engine and the image .ci/mcp-setup.sh builds (``pygent-mcp:...``).

- Call overhead: the median latency of one ``echo`` call of our SDK-built test server
  (tests/mcp/fault_server.py) made by Pygent (``McpManager.acall`` from another event
  loop, as the agent makes it: argument validation, the hop to the runtime's loop, the
  ``docker exec`` stream into the container, result conversion) against a plain MCP SDK
  client calling the same server as a host process (``stdio_client`` + ``ClientSession``).
  Target: Pygent in the sandbox <= 1.5 x baseline + 1 ms. The local sandbox is shown too.
- Session start with 3 stdio servers (mcp-server-git, mcp-server-time, server-everything)
  in the container: each started alone, then the three together. Target: together <=
  the slowest alone + 100 ms (they start in parallel). Beside the wall times, the CPU
  each start costs: the container's (its cgroup's ``cpuacct.usage``: the server
  processes and the exec) and ours (this process: the ``docker exec`` stream, the
  handshake, listing and checking the tools), since on a machine with fewer free cores
  than servers the CPU, not the launch, bounds the parallel start.
  ``--compare-image IMAGE`` starts each server alone in another image too (the same
  run), e.g. the previous test image, to measure what an image change saved.

Writes ``bench/results/mcp.json``; ``--write-docs`` writes the "MCP servers" section of
docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import perfdoc  # bench/ is on sys.path: these run as scripts

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

from pygent.mcp.config import McpServerSpec  # noqa: E402
from pygent.mcp.manager import McpManager  # noqa: E402
from pygent.runtime import Runtime  # noqa: E402
from pygent.settings import load_settings  # noqa: E402
from pygent.tools import ToolRegistry  # noqa: E402
from tests.mcp import servers  # noqa: E402

FAULT = ROOT / "tests" / "mcp" / "fault_server.py"
RESULTS = ROOT / "bench" / "results" / "mcp.json"
BEGIN = "<!-- mcp-figures:begin (written by bench/bench_mcp.py --write-docs) -->"
END = "<!-- mcp-figures:end -->"


async def baseline_calls(n: int) -> list[float]:
    """A plain SDK client calling echo on the server as a host process."""
    params = StdioServerParameters(command=sys.executable, args=[str(FAULT)])
    times = []
    with open("/dev/null", "w") as devnull:
        async with stdio_client(params, errlog=devnull) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await session.list_tools()
                for _ in range(5):
                    await session.call_tool("echo", {"text": "warm"})
                for i in range(n):
                    t0 = time.perf_counter()
                    await session.call_tool("echo", {"text": f"call {i}"})
                    times.append(time.perf_counter() - t0)
    return times


def _runtime(docker: bool, image: str | None = None) -> Runtime:
    settings = dataclasses.replace(load_settings(), image=image or servers.image())
    rt = Runtime(use_docker=docker, settings=settings, initial_files=[str(FAULT)])
    rt.wait_ready()
    return rt


async def pygent_calls(docker: bool, n: int) -> list[float]:
    rt = _runtime(docker)
    command = ("python3-mcp", "/workspace/fault_server.py") if docker else (
        sys.executable, str(rt.workspace / "fault_server.py"))
    spec = McpServerSpec(name="fault", command=command[0], args=command[1:])
    manager = McpManager([spec], rt, ToolRegistry())
    try:
        await asyncio.to_thread(manager.start_blocking)
        tool = manager.registry.get("mcp__fault__echo")
        assert tool is not None, manager.status()
        schema = tool.parameters
        for _ in range(5):
            await manager.acall("fault", "echo", {"text": "warm"}, schema)
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            result = await manager.acall("fault", "echo", {"text": f"call {i}"}, schema)
            times.append(time.perf_counter() - t0)
            assert result.ok, result.content
        return times
    finally:
        await manager.aclose()
        await asyncio.to_thread(rt.cleanup)


THREE = (
    McpServerSpec(name="git", command="mcp-server-git"),
    McpServerSpec(name="time", command="mcp-server-time"),
    McpServerSpec(name="every", command="mcp-server-everything", args=("stdio",)),
)


SKEWS: list[float] = []  # per start of the three: last launch - first launch


def _container_cpu(rt: Runtime) -> float | None:
    """CPU seconds the sandbox's container has used so far (its cgroup), None if unknown."""
    cid = getattr(rt.backend, "container_id", None)
    if not cid:
        return None
    v1 = Path("/sys/fs/cgroup/cpuacct/docker") / cid / "cpuacct.usage"  # cgroup v1, cgroupfs
    if v1.exists():
        return int(v1.read_text()) / 1e9
    for v2 in (Path("/sys/fs/cgroup/system.slice") / f"docker-{cid}.scope" / "cpu.stat",
               Path("/sys/fs/cgroup/docker") / cid / "cpu.stat"):
        if v2.exists():
            stats = dict(line.split() for line in v2.read_text().splitlines())
            return int(stats["usage_usec"]) / 1e6
    return None


def start_wall(rt: Runtime, specs: tuple[McpServerSpec, ...]) -> tuple[float, float, float]:
    """(wall, container CPU, our CPU) in seconds to start ``specs`` until all are ready."""
    manager = McpManager(list(specs), rt, ToolRegistry())
    cpu0, ours0 = _container_cpu(rt), time.process_time()
    t0 = time.perf_counter()
    manager.start_blocking()
    wall = time.perf_counter() - t0
    cpu1, ours1 = _container_cpu(rt), time.process_time()
    bad = [s for s in manager.status() if s.state != "ready"]
    launched = [c.launched_at for c in manager.connections.values()]
    if len(launched) > 1:
        SKEWS.append(max(launched) - min(launched))
    manager.stop_blocking()
    assert not bad, bad
    container = (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else float("nan")
    return wall, container, ours1 - ours0


def _alone(image: str, rounds: int) -> dict[str, dict[str, float]]:
    """Each server started alone in ``image``: median wall and CPU."""
    rt = _runtime(True, image)
    try:
        start_wall(rt, THREE)  # warm the page cache
        runs: dict[str, list[tuple[float, float, float]]] = {s.name: [] for s in THREE}
        for _ in range(rounds):
            for spec in THREE:
                runs[spec.name].append(start_wall(rt, (spec,)))
    finally:
        rt.cleanup()
    return {name: _medians(v) for name, v in runs.items()}


def _medians(runs: list[tuple[float, float, float]]) -> dict[str, float]:
    return {key: statistics.median(r[i] for r in runs) for i, key in enumerate(("wall_s", "cpu_s", "ours_s"))}


def start_figures(rounds: int, compare_image: str | None = None) -> dict[str, Any]:
    rt = _runtime(True)
    try:
        start_wall(rt, THREE)  # warm the page cache
        alone: dict[str, list[tuple[float, float, float]]] = {s.name: [] for s in THREE}
        together: list[tuple[float, float, float]] = []
        for _ in range(rounds):
            for spec in THREE:
                alone[spec.name].append(start_wall(rt, (spec,)))
            together.append(start_wall(rt, THREE))
    finally:
        rt.cleanup()
    each = {k: _medians(v) for k, v in alone.items()}
    medians = {k: v["wall_s"] for k, v in each.items()}
    both = _medians(together)
    out: dict[str, Any] = {
        "alone_s": medians, "slowest_alone_s": max(medians.values()),
        "sequential_s": sum(medians.values()),
        "alone_cpu_s": {k: v["cpu_s"] for k, v in each.items()},
        "alone_ours_s": {k: v["ours_s"] for k, v in each.items()},
        "launch_skew_ms": statistics.median(SKEWS) * 1000,
        "together_s": both["wall_s"], "together_cpu_s": both["cpu_s"], "together_ours_s": both["ours_s"],
        "rounds": rounds, "image": servers.image(),
    }
    if compare_image:
        out["compare"] = {"image": compare_image, "alone": _alone(compare_image, rounds)}
    return out


async def _open_once(service: Any, specs: tuple[McpServerSpec, ...]) -> tuple[float, float]:
    """(seconds until ``create`` returned, seconds until every server was ready)."""
    from pygent.service import SessionOptions

    t0 = time.perf_counter()
    session = await service.create(SessionOptions(runtime="docker", approval_mode="never", mcp_servers=specs))
    opened = time.perf_counter() - t0
    try:
        if session.mcp is not None:
            await session.mcp.await_started()
            bad = [st for st in session.mcp.status() if st.state != "ready"]
            assert not bad, bad
        return opened, time.perf_counter() - t0
    finally:
        await service.close(session.id)


def open_figures(rounds: int) -> dict[str, Any]:
    """Session open (``SessionService.create``, as ``session/new``) with the three servers
    against a session with none, the same run: the servers start in the background, so
    open should cost about the same; then the time until they are all ready."""
    from pygent.service import SessionService

    settings = dataclasses.replace(load_settings(), image=servers.image(), sessions_dir=Path(
        os.environ.get("TMPDIR", "/tmp")) / f"pygent-bench-mcp-{os.getpid()}")

    async def measure() -> dict[str, Any]:
        service = SessionService(settings)
        try:
            await _open_once(service, ())  # warm: imports, first container
            await _open_once(service, THREE)
            none, three, ready = [], [], []
            for _ in range(rounds):
                none.append((await _open_once(service, ()))[0])
                opened, all_ready = await _open_once(service, THREE)
                three.append(opened)
                ready.append(all_ready)
        finally:
            await service.aclose()
        return {"none_s": statistics.median(none), "three_s": statistics.median(three),
                "three_ready_s": statistics.median(ready), "rounds": rounds}

    return asyncio.run(measure())


#: Where a Python server's start CPU goes, in the image: an interpreter that does
#: nothing, one that imports the MCP SDK, one that imports the server (its modules, no
#: I/O), and how many modules came from .pyc files and how many were compiled.
_IMPORT_PROBE = r"""
import resource, subprocess, sys
def cpu(code):
    out = subprocess.run([sys.executable, "-c", "import resource; " + code +
        "; r = resource.getrusage(resource.RUSAGE_SELF); print(r.ru_utime + r.ru_stime)"],
        capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])
import statistics
for name, code in [("python", "pass"), ("sdk", "import mcp.server, mcp_types"),
                   ("time", "import mcp_server_time.server"), ("git", "import mcp_server_git.server")]:
    print(name, statistics.median(cpu(code) for _ in range(5)))
v = subprocess.run([sys.executable, "-v", "-c", "import mcp_server_git.server"], capture_output=True, text=True).stderr
print("pyc", v.count("code object from"))
print("compiled", sum(1 for line in v.splitlines() if line.startswith("# wrote") or "could not create" in line
                      or "bytecode is stale" in line))
"""


def import_cpu() -> dict[str, float]:
    """CPU of a Python server's imports in the image (see _IMPORT_PROBE), medians of 5."""
    import subprocess

    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--read-only", "-e", "PYTHONPATH=/opt/pygent-mcp/site",
         servers.image(), "python3", "-c", _IMPORT_PROBE],
        capture_output=True, text=True, check=True, timeout=300,
    )
    return {k: float(v) for k, v in (line.split() for line in done.stdout.splitlines())}


def run(quick: bool, compare_image: str | None = None) -> dict[str, Any]:
    n = 100 if quick else 400
    load = os.getloadavg()[0]  # at the start (load_end: at the end)
    imports = import_cpu()  # (quick, and a broken image fails here, before the long parts)
    base = asyncio.run(baseline_calls(n))
    docker = asyncio.run(pygent_calls(True, n))
    local = asyncio.run(pygent_calls(False, n))
    b, d, loc = (statistics.median(x) * 1000 for x in (base, docker, local))
    starts = start_figures(2 if quick else 5, compare_image)
    opens = open_figures(2 if quick else 5)
    return {
        "cpus": os.cpu_count() or 0,
        "load": load,
        "calls": n,
        "baseline_host_sdk_ms": b,
        "pygent_docker_ms": d,
        "pygent_local_ms": loc,
        "ratio_docker": d / b,
        "target_docker_ms": 1.5 * b + 1.0,
        "docker_within_target": d <= 1.5 * b + 1.0,
        "start": starts,
        "start_within_target": starts["together_s"] <= starts["slowest_alone_s"] + 0.1,
        "open": opens,
        "imports_cpu_s": imports,
        "load_end": os.getloadavg()[0],
    }


def section(r: dict[str, Any]) -> str:
    s = r["start"]
    alone = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in s["alone_s"].items())
    cpu = s.get("alone_cpu_s", {})
    cpu_alone = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in cpu.items())
    cpu_sum = sum(cpu.values())
    floor = s.get("together_cpu_s", float("nan")) / max(r["cpus"], 1)
    rows = [
        BEGIN,
        "",
        "| figure | Pygent | baseline (same run) | ratio | target |",
        "|---|---|---|---|---|",
        f"| MCP `echo` call, server in the Docker sandbox (median of {r['calls']}) "
        f"| {r['pygent_docker_ms']:.2f} ms | {r['baseline_host_sdk_ms']:.2f} ms (plain SDK client, server on the host) "
        f"| {r['ratio_docker']:.2f}x | <= 1.5x + 1 ms: {'met' if r['docker_within_target'] else 'NOT met'} |",
        f"| same call, server in the local sandbox | {r['pygent_local_ms']:.2f} ms "
        f"| {r['baseline_host_sdk_ms']:.2f} ms | {r['pygent_local_ms'] / r['baseline_host_sdk_ms']:.2f}x | |",
        f"| start of 3 stdio servers in the container (median of {s['rounds']}) "
        f"| {s['together_s'] * 1000:.0f} ms together | slowest alone {s['slowest_alone_s'] * 1000:.0f} ms ({alone}) "
        f"| {s['together_s'] / s['slowest_alone_s']:.2f}x | <= slowest + 100 ms: "
        f"{'met' if r['start_within_target'] else 'NOT met'} |",
        f"| same, against starting them one after another | {s['together_s'] * 1000:.0f} ms "
        f"| {s['sequential_s'] * 1000:.0f} ms (sum of the three alone) "
        f"| {s['together_s'] / s['sequential_s']:.2f}x | |",
        f"| the three launched within (last launch - first, median) | {s['launch_skew_ms']:.1f} ms "
        "| | | parallel launch |",
    ]
    if cpu:
        rows += [
            f"| CPU of the start of the three, in the container (cgroup) | {s['together_cpu_s'] * 1000:.0f} ms "
            f"| {cpu_sum * 1000:.0f} ms (sum alone: {cpu_alone}) | {s['together_cpu_s'] / cpu_sum:.2f}x | |",
            f"| wall-time floor of the three on {r['cpus']} idle cores (their CPU / cores) | {floor * 1000:.0f} ms "
            f"| the slowest alone on an idle core (its CPU): {max(cpu.values()) * 1000:.0f} ms "
            f"| {floor / max(cpu.values()):.2f}x | <= slowest + 100 ms: "
            f"{'possible' if floor <= max(cpu.values()) + 0.1 else 'NOT possible'} on {r['cpus']} cores |",
            f"| our own CPU (this process: exec streams, handshake, tool listing and schema checks) "
            f"| {s['together_ours_s'] * 1000:.0f} ms for the three "
            f"| {s['together_cpu_s'] * 1000:.0f} ms in the container | "
            f"{s['together_ours_s'] / s['together_cpu_s']:.2f}x | |",
        ]
    o = r.get("open")
    if o:
        rows += [
            f"| session open (`session/new`) with the 3 servers, Docker (median of {o['rounds']}) "
            f"| {o['three_s'] * 1000:.0f} ms | {o['none_s'] * 1000:.0f} ms (a session with no MCP server) "
            f"| {o['three_s'] / o['none_s']:.2f}x | the servers start in the background |",
            f"| same, until all 3 are ready (tools listed; a turn's first request waits for this) "
            f"| {o['three_ready_s'] * 1000:.0f} ms | | | |",
        ]
    imp = r.get("imports_cpu_s")
    if imp:
        sdk = imp["sdk"] - imp["python"]
        rows += [
            f"| CPU of importing the MCP SDK in the image (`mcp.server`, `mcp_types`) "
            f"| {sdk * 1000:.0f} ms | {imp['python'] * 1000:.0f} ms (an interpreter that imports nothing) "
            f"| | |",
            f"| CPU of importing the time / git server (SDK included) | {imp['time'] * 1000:.0f} / "
            f"{imp['git'] * 1000:.0f} ms | SDK share {sdk / imp['time']:.0%} / {sdk / imp['git']:.0%} "
            f"| | {imp['pyc']:.0f} modules from .pyc, {imp['compiled']:.0f} compiled |",
        ]
    compare = s.get("compare")
    if compare:
        for name, old in compare["alone"].items():
            rows.append(
                f"| {name} alone, this image against `{compare['image'].split(':')[-1]}` "
                f"| {s['alone_s'][name] * 1000:.0f} ms, CPU {cpu.get(name, float('nan')) * 1000:.0f} ms "
                f"| {old['wall_s'] * 1000:.0f} ms, CPU {old['cpu_s'] * 1000:.0f} ms "
                f"| {cpu.get(name, float('nan')) / old['cpu_s']:.2f}x CPU | |"
            )
    rows += [
        "",
        f"Machine: {r['cpus']} cores, load average {r['load']:.1f} at the start of the run and "
        f"{r.get('load_end', r['load']):.1f} at its end (shared with",
        "other jobs). The three servers are launched together (the launch row) and nothing",
        "in Pygent serialises them after that; our own work is the small CPU row above. A",
        "server's start is mostly CPU in the container (the Python servers spend most of it",
        "building the MCP SDK's pydantic models at import, .pyc files or not), so with fewer",
        "free cores than servers they share the CPU: the wall time of the three cannot go",
        "below their CPU divided by the cores (the floor row), even on an idle machine, and",
        "that floor is compared with what the slowest server alone would take on an idle",
        "core (its CPU). The target needs about one free core per server. The wall-time",
        "rows grow with the machine's load (the load average above); the CPU rows do not.",
        "",
        END,
    ]
    return "\n".join(rows)


def write_docs(r: dict[str, Any]) -> None:
    perfdoc.replace_block(
        "mcp", "bench/bench_mcp.py", section(r), heading="## MCP servers",
        intro=("`python bench/bench_mcp.py --write-docs` (see docs/mcp.md): a tool call of an MCP\n"
            "server running in the session's sandbox against a plain MCP SDK client calling the\n"
            "same server on the host, and the start of three real servers in the container.\n\n"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--docs-only", action="store_true", help="write the docs from the saved results")
    parser.add_argument("--compare-image", metavar="IMAGE",
                        help="also start each server alone in IMAGE (e.g. the previous test image)")
    args = parser.parse_args()
    if args.docs_only:
        write_docs(json.loads(RESULTS.read_text()))
        return
    r = run(args.quick, args.compare_image)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(r, indent=2) + "\n")
    print(section(r))
    if args.write_docs:
        write_docs(r)


if __name__ == "__main__":
    main()
