"""Sandbox benchmark: what a command, a session start and an idle session cost per sandbox kind.

Usage: python bench/bench_sandboxes.py [--quick] [-n N] [--write-docs]

Measured in one run, in interleaved rounds (a change in the machine's load touches
every row alike), through the public synchronous API (``Runtime.run("true")``):
  1. per-command cost: Docker with runc (the baseline for gVisor and Podman) and with
     runsc (gVisor, when the engine has it), rootful Podman's Docker API socket (a
     `podman system service` this bench starts, .ci/podman-setup.sh's image store),
     bubblewrap and the bare local shell (the baseline for bubblewrap); each figure is a
     ratio against its baseline;
  2. session start (``Runtime(...)`` until the shell answers) and cleanup;
  3. memory of one idle sandbox (the container's cgroup usage; for bubblewrap and
     local the RSS of the shell's processes), the capacity model's input in
     docs/scaling.md.
Results: a table on stdout, bench/results/sandboxes.json, and with --write-docs the
section between the sandboxes-figures markers in docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pygent.runtime.bwrap import bwrap_unavailable_reason  # noqa: E402
from pygent.runtime.facade import Runtime  # noqa: E402
from pygent.runtime.local import tagged_processes  # noqa: E402
from pygent.settings import load_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "sandboxes.json"
DOCS = ROOT / "docs" / "performance.md"
BEGIN = "<!-- sandboxes-figures:begin (written by bench/bench_sandboxes.py --write-docs) -->"
END = "<!-- sandboxes-figures:end -->"
IMAGE = os.environ.get("PYGENT_TEST_IMAGE", "pygent-test:bookworm")

#: kind -> settings overrides; "baseline" names the row each ratio divides by.
KINDS: dict[str, dict[str, Any]] = {
    "local": {"use_docker": False},
    "bwrap": {"use_docker": None, "sandbox": "bwrap"},
    "docker-runc": {"use_docker": True, "image": IMAGE},
    "docker-runsc": {"use_docker": True, "image": IMAGE, "docker_runtime": "runsc"},
    "podman": {"use_docker": True, "image": IMAGE},
}
BASELINE = {"bwrap": "local", "docker-runsc": "docker-runc", "podman": "docker-runc"}
#: DOCKER_HOST per kind (set while that kind runs); the podman socket once started.
ENGINES: dict[str, str] = {}


def start_podman(folder: Path) -> tuple[subprocess.Popen[bytes] | None, str | None]:
    """Rootful ``podman system service`` on a socket in ``folder``: (process, None), or
    (None, why it cannot run here)."""
    if os.geteuid() != 0:
        return None, "the bench starts a rootful Podman: run it as root"
    setup = subprocess.run(["bash", str(ROOT / ".ci" / "podman-setup.sh")], capture_output=True,
                           text=True, timeout=900)
    if setup.returncode != 0:
        return None, f".ci/podman-setup.sh failed: {setup.stderr.strip()[-300:]}"
    env = dict(line.split("=", 1) for line in setup.stdout.splitlines() if "=" in line)
    sock = folder / "podman.sock"
    proc = subprocess.Popen(
        ["podman", *shlex.split(env["PYGENT_PODMAN_ROOTFUL_FLAGS"]), "system", "service",
         "--time=0", f"unix://{sock}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env={**os.environ, "CONTAINERS_CONF": env["PYGENT_PODMAN_CONF"]},
    )
    deadline = time.monotonic() + 60
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_podman(proc)
            return None, "podman system service did not start"
        time.sleep(0.1)
    ENGINES["podman"] = f"unix://{sock}"
    return proc, None


def stop_podman(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


def runsc_reason() -> str | None:
    """Why gVisor cannot be measured here, or None."""
    try:
        from pygent.runtime.docker_engine import connect

        client = connect()
        return None if "runsc" in (client.info().get("Runtimes") or {}) else \
            "the engine has no runsc runtime (.ci/gvisor-setup.sh registers it)"
    except Exception as exc:  # noqa: BLE001 - any engine failure only drops the row
        return f"no Docker engine: {exc}"


def use_engine(kind: str) -> None:
    """DOCKER_HOST for ``kind``: Podman's socket, else the default engine."""
    if kind in ENGINES:
        os.environ["DOCKER_HOST"] = ENGINES[kind]
    else:
        os.environ.pop("DOCKER_HOST", None)


def make(kind: str, folder: Path) -> tuple[Runtime, float]:
    use_engine(kind)
    start = time.perf_counter()
    rt = Runtime(workspace=folder, settings=load_settings(KINDS[kind], environ={}))
    rt.wait_ready(120)
    rt.run("true")
    return rt, time.perf_counter() - start


def memory_bytes(rt: Runtime) -> int | None:
    """What one idle sandbox holds in memory."""
    backend: Any = rt.backend
    if rt.kind == "docker":
        try:
            stats = backend._client.api.stats(backend.container_id, stream=False)
        except Exception:  # noqa: BLE001 - an engine without the stats endpoint: no figure
            return None
        mem = stats.get("memory_stats", {})
        usage = mem.get("usage")
        cache = (mem.get("stats") or {}).get("cache", 0)
        return None if usage is None else int(usage) - int(cache)
    total = 0
    for pid in tagged_processes(backend.tag):
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("-n", type=int, default=0, help="commands per round")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    per_round = args.n or (100 if args.quick else 300)
    skipped: dict[str, str] = {}
    reason = bwrap_unavailable_reason()
    if reason:
        skipped["bwrap"] = reason
    reason = runsc_reason()
    if reason:
        skipped["docker-runsc"] = reason
    scratch = Path(tempfile.mkdtemp(prefix="pygent-bench-sandboxes-"))
    podman, reason = start_podman(scratch)
    if reason:
        skipped["podman"] = reason
    kinds = [k for k in KINDS if k not in skipped]
    try:
        rows = measure(kinds, rounds, per_round, scratch)
    finally:
        stop_podman(podman)
    write(rows, skipped, rounds, per_round, args.write_docs)


def measure(kinds: list[str], rounds: int, per_round: int, scratch: Path) -> dict[str, dict[str, Any]]:
    """Each kind's medians (interleaved rounds)."""
    cmd: dict[str, list[float]] = {k: [] for k in kinds}
    starts: dict[str, list[float]] = {k: [] for k in kinds}
    closes: dict[str, list[float]] = {k: [] for k in kinds}
    memory: dict[str, list[int]] = {k: [] for k in kinds}
    for r in range(rounds):
        for kind in kinds:  # interleaved: every kind once per round
            rt, started = make(kind, scratch / f"{kind}-{r}")
            starts[kind].append(started)
            for _ in range(20):  # warm up the fast path
                rt.run("true")
            t0 = time.perf_counter()
            for _ in range(per_round):
                rt.run("true")
            cmd[kind].append((time.perf_counter() - t0) / per_round)
            time.sleep(0.3)  # let the sandbox settle before reading its memory
            mem = memory_bytes(rt)
            if mem is not None:
                memory[kind].append(mem)
            t0 = time.perf_counter()
            rt.cleanup()
            closes[kind].append(time.perf_counter() - t0)
    use_engine("")
    rows: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        rows[kind] = {
            "command_ms": median_ms(cmd[kind]),
            "start_ms": median_ms(starts[kind]),
            "close_ms": median_ms(closes[kind]),
            "memory_mib": (statistics.median(memory[kind]) / (1 << 20)) if memory[kind] else None,
        }
    for kind, base in BASELINE.items():
        if kind in rows and base in rows:
            rows[kind]["command_ratio"] = rows[kind]["command_ms"] / rows[base]["command_ms"]
            rows[kind]["start_ratio"] = rows[kind]["start_ms"] / rows[base]["start_ms"]
            rows[kind]["baseline"] = base
    return rows


def write(rows: dict[str, dict[str, Any]], skipped: dict[str, str], rounds: int, per_round: int,
          write_docs: bool) -> None:
    """The table on stdout, the JSON results and (``write_docs``) docs/performance.md."""
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}",
        "rounds": rounds,
        "commands_per_round": per_round,
        "rows": rows,
        "skipped": skipped,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    table = render(result)
    print(table)
    if write_docs:
        text = DOCS.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            DOCS.write_text(head + BEGIN + "\n" + table + END + tail)
        else:
            DOCS.write_text(text.rstrip("\n") + "\n\n## Sandboxes\n\n" + BEGIN + "\n" + table + END + "\n")


def render(result: dict[str, Any]) -> str:
    lines = [
        f"Measured {result['date'][:10]} on {result['machine']}: {result['rounds']} interleaved "
        f"rounds of {result['commands_per_round']} `Runtime.run(\"true\")` per sandbox kind; "
        "medians. Ratios divide by the baseline measured in the same run.",
        "",
        "| sandbox | per command | vs baseline | session start | vs baseline | cleanup | idle memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, row in result["rows"].items():
        ratio = f"{row['command_ratio']:.2f}x {row['baseline']}" if "command_ratio" in row else "baseline"
        sratio = f"{row['start_ratio']:.1f}x {row['baseline']}" if "start_ratio" in row else ""
        mem = f"{row['memory_mib']:.1f} MiB" if row["memory_mib"] is not None else "n/a"
        lines.append(f"| {kind} | {row['command_ms']:.3f} ms | {ratio} | {row['start_ms']:.0f} ms "
                     f"| {sratio} | {row['close_ms']:.0f} ms | {mem} |")
    for kind, why in result["skipped"].items():
        lines.append(f"| {kind} | not measured: {why} | | | | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
