"""The warm pool: ``session/new`` to a ready sandbox, against ``docker run -d`` in the same run.

    python bench/bench_pool.py [--rounds N] [--write-docs]

Needs a Docker engine and the test image (``PYGENT_TEST_IMAGE``, default
``pygent-test:bookworm``). Measures, each a median over ``--rounds``:

- ``docker run -d`` of the same image with the same hardening flags (the baseline), and
  the engine's own steps (create, start, one exec) through the SDK: what a cold start pays;
- a cold Docker session (``SessionService.open_blocking``, no folder, until the sandbox
  answers a command), no pool;
- the same with a warm pool (``pool_size`` 2), waiting for the refill between rounds;
- a copy-on-write session of a folder the pool already knows, cold and warm.

Writes ``bench/results/pool.json``; ``--write-docs`` also writes the "Warm pool" section
of docs/performance.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.perfdoc import replace_block  # noqa: E402
from pygent.runtime.facade import docker_options  # noqa: E402
from pygent.runtime.pool import SandboxPool  # noqa: E402
from pygent.service import SessionOptions, SessionService  # noqa: E402
from pygent.settings import load_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "pool.json"
IMAGE = os.environ.get("PYGENT_TEST_IMAGE", "pygent-test:bookworm")
DOCKER_RUN = [
    "docker", "run", "-d", "--network", "none", "--cap-drop", "ALL", "--security-opt",
    "no-new-privileges", "--read-only", "--tmpfs", "/tmp:size=256m", "--init",
    "--pids-limit", "512", "--memory", "2g", "--memory-swap", "2g",
    "--label", "pygent.bench=1", IMAGE, "sleep", "600",
]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def docker_run(rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        cid = subprocess.run(DOCKER_RUN, capture_output=True, text=True, check=True).stdout.strip()
        times.append(time.perf_counter() - t)
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=True)
    return _ms(statistics.median(times))


def engine_steps(rounds: int) -> dict[str, float]:
    """Where a cold start's time goes: create, start, one exec (SDK, same hardening)."""
    import docker

    client = docker.from_env()
    api = client.api
    steps: dict[str, list[float]] = {"create": [], "start": [], "exec": [], "remove": []}
    with tempfile.TemporaryDirectory() as ws:
        for _ in range(rounds):
            hc = api.create_host_config(
                mounts=[docker.types.Mount("/workspace", ws, type="bind")],
                network_mode="none", cap_drop=["ALL"], security_opt=["no-new-privileges"],
                read_only=True, tmpfs={"/tmp": "size=256m"}, init=True, pids_limit=512,
                mem_limit="2g", memswap_limit="2g",
            )
            t0 = time.perf_counter()
            cid = api.create_container(IMAGE, command=["sleep", "600"], host_config=hc,
                                       labels={"pygent.bench": "1"})["Id"]
            t1 = time.perf_counter()
            api.start(cid)
            t2 = time.perf_counter()
            api.exec_start(api.exec_create(cid, ["true"]))
            t3 = time.perf_counter()
            api.remove_container(cid, force=True)
            t4 = time.perf_counter()
            for key, a, b in (("create", t0, t1), ("start", t1, t2), ("exec", t2, t3),
                              ("remove", t3, t4)):
                steps[key].append(b - a)
    client.close()
    return {k: _ms(statistics.median(v)) for k, v in steps.items()}


def _wait(check: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the pool did not refill")
        time.sleep(0.05)


def sessions(rounds: int, folder: Path, *, pool_size: int) -> dict[str, float]:
    """Median ms from open to a sandbox that answered `true`, no folder and cow."""
    with tempfile.TemporaryDirectory() as data:
        settings = dataclasses.replace(
            load_settings(), image=IMAGE, sessions_dir=Path(data) / "sessions",
            pool_size=pool_size,
        )
        service = SessionService(settings)
        pool = None
        if pool_size:
            pool = SandboxPool(settings, size=pool_size, idle=600.0)
            service.pool = pool
            pool.start(warm=docker_options(settings))
        out: dict[str, list[float]] = {"none": [], "cow": []}
        try:
            # The pool learns the folder from a first session (not measured).
            first = service.open_blocking(SessionOptions(workspace_folder=str(folder),
                                                         runtime="docker"))
            service.close_blocking(first.id)
            for _ in range(rounds):
                for kind in ("none", "cow"):
                    if pool is not None:
                        _wait(lambda: pool.status()["ready"] >= 2 * pool_size)
                    opts = (SessionOptions(runtime="docker", sync_mode="none") if kind == "none"
                            else SessionOptions(workspace_folder=str(folder), runtime="docker"))
                    t = time.perf_counter()
                    session = service.open_blocking(opts)
                    session.runtime.wait_ready()
                    ok = session.runtime.run("true").exit_code == 0
                    out[kind].append(time.perf_counter() - t)
                    assert ok and (kind == "none" or session.sync_mode == "cow"), session.notices
                    service.close_blocking(session.id)
            hits = pool.status()["hits"] if pool is not None else 0
        finally:
            import asyncio

            asyncio.run(service.aclose())
    result = {k: _ms(statistics.median(v)) for k, v in out.items()}
    result["hits"] = hits
    return result


def run(rounds: int) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "proj"
        folder.mkdir()
        for i in range(200):
            (folder / f"m{i:03d}.py").write_text(f"value = {i}\n")
        report: dict[str, Any] = {
            "rounds": rounds,
            "docker_run_ms": docker_run(rounds),
            "engine_steps_ms": engine_steps(rounds),
            "cold": sessions(rounds, folder, pool_size=0),
            "warm": sessions(rounds, folder, pool_size=2),
        }
    report["cpus"] = os.cpu_count()
    report["load_before"] = round(load_before, 2)
    report["load_after"] = round(os.getloadavg()[0], 2)
    return report


def section(r: dict[str, Any]) -> str:
    base = r["docker_run_ms"]
    steps = r["engine_steps_ms"]
    rows = [
        ("`docker run -d` of the same image (the baseline)", f"{base:.0f} ms", "1.00x", ""),
        ("Engine steps of a cold start (SDK): create / start / one exec",
         f"{steps['create']:.0f} / {steps['start']:.0f} / {steps['exec']:.0f} ms", "", ""),
        ("Session, no folder, cold (open until `true` answered)", f"{r['cold']['none']:.0f} ms",
         f"{r['cold']['none'] / base:.2f}x", ""),
        ("Session, no folder, **warm pool**", f"{r['warm']['none']:.0f} ms",
         f"{r['warm']['none'] / base:.2f}x", "<= 50 ms"),
        ("Session, copy-on-write folder, cold", f"{r['cold']['cow']:.0f} ms",
         f"{r['cold']['cow'] / base:.2f}x", ""),
        ("Session, copy-on-write folder the pool knows, **warm pool**",
         f"{r['warm']['cow']:.0f} ms", f"{r['warm']['cow'] / base:.2f}x", "<= 50 ms"),
    ]
    return "\n".join([
        f"Medians of {r['rounds']} rounds; pool hits {r['warm']['hits']} of "
        f"{2 * r['rounds']}; {r['cpus']} cores, load average {r['load_before']} before and "
        f"{r['load_after']} after (a shared machine).",
        "",
        "| What | Time | Against `docker run -d` | Target |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
    ])


def write_docs(r: dict[str, Any]) -> None:
    replace_block(
        "pool", "bench/bench_pool.py", section(r), heading="## Warm pool",
        intro="`python bench/bench_pool.py --write-docs`: `SessionService.open_blocking` until "
        "the sandbox has answered `true`, with and without a warm pool (docs/remote.md), "
        "against `docker run -d` of the same image with the same hardening in the same run.",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    report = run(args.rounds)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if args.write_docs:
        write_docs(report)
        print("wrote docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
