"""Delegated tasks in parallel: wall time of N = 1, 3, 8 tasks against N times one task.

Each task is a sub-agent on the local runtime running a short command sequence
(three ``bash`` calls, then a final answer) against the scripted OpenAI-compatible
server (in its own process), which answers instantly. What is measured is the wall time from the first
``start_task`` to the last task's end, including each task's sandbox start and
removal. A ratio ``wall / (N x single)`` well below 1 means the tasks overlap.

    python bench/bench_tasks.py [--quick] [--repeat R]

Writes ``bench/results/tasks.json`` and the "## Delegated tasks" section of
``docs/performance.md`` (other sections of that page are left as they are).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pygent.agent import Agent, TurnResult  # noqa: E402
from pygent.runtime import Runtime  # noqa: E402
from pygent.settings import Settings, load_settings  # noqa: E402
from pygent.tasks import TaskManager  # noqa: E402
from tests.openai_server import ScriptedOpenAIServer, text_reply, tool_call_reply  # noqa: E402

log = logging.getLogger("bench_tasks")

COMMANDS = ("echo step one", "ls -la", "python3 -c 'print(6 * 7)'")
SIZES = (1, 3, 8)
SECTION = "## Delegated tasks"


def _responder(body: dict[str, Any]) -> Any:
    """Every sub-agent runs COMMANDS in order, then answers; no waiting on the model."""
    step = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
    if step < len(COMMANDS):
        return tool_call_reply("bash", {"cmd": COMMANDS[step]})
    return text_reply("done")


def _bare_turn(settings: Settings, parent: Runtime) -> float:
    """The same work as one task, as a plain agent turn on an existing runtime."""

    async def turn() -> tuple[float, TurnResult]:
        agent = Agent(runtime=parent, settings=settings)
        try:
            began = time.perf_counter()
            result = await agent.arun("task: run the commands")
            return time.perf_counter() - began, result
        finally:
            await agent.model.aclose()  # its HTTP client belongs to this loop
            agent.close()

    elapsed, result = asyncio.run(turn())
    if result.steps != len(COMMANDS) + 1:
        raise SystemExit(f"the baseline turn did not run the script: {result}")
    return elapsed


def _run_batch(settings: Settings, parent: Runtime, n: int) -> float:
    """Seconds from the first start_task to the end of the last of ``n`` tasks."""
    with TaskManager(settings=settings, max_tasks=n) as manager:
        began = time.perf_counter()
        ids = [manager.start_task(f"task {i}: run the commands", parent) for i in range(n)]
        infos = [manager.wait(tid, timeout=120) for tid in ids]
        elapsed = time.perf_counter() - began
    failed = [i for i in infos if i.status != "finished"]
    if failed:
        raise SystemExit(f"a benchmark task did not finish: {failed[0]}")
    return elapsed


def _serve(urls: multiprocessing.Queue[str], stop: Any) -> None:
    """The scripted model server, in its own process: its CPU time and GIL are not ours."""
    with ScriptedOpenAIServer() as server:
        server.set_responder(_responder)
        urls.put(server.base_url)
        stop.wait()


def measure(repeat: int) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    urls: multiprocessing.Queue[str] = context.Queue()
    stop = context.Event()
    server = context.Process(target=_serve, args=(urls, stop), daemon=True)
    server.start()
    try:
        base_url = urls.get(timeout=30)
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(
                {"api_key": "sk-bench", "base_url": base_url, "model": "bench-model",
                 "use_docker": False},
                environ={}, cwd=Path(tmp))  # fmt: skip
            parent = Runtime(use_docker=False, settings=settings)
            try:
                _run_batch(settings, parent, 1)  # warm-up: imports, first connections
                bare: list[float] = []
                samples: dict[int, list[float]] = {n: [] for n in SIZES}
                # Interleaved, so a burst of load on the machine hits every size alike.
                for _ in range(repeat):
                    bare.append(_bare_turn(settings, parent))
                    for n in SIZES:
                        samples[n].append(_run_batch(settings, parent, n))
            finally:
                parent.cleanup()
    finally:
        stop.set()
        server.join(timeout=10)
    single = statistics.median(samples[1])
    rows = []
    for n in SIZES:
        wall = statistics.median(samples[n])
        rows.append({
            "tasks": n,
            "wall_s": round(wall, 4),
            "serial_estimate_s": round(n * single, 4),
            "ratio": round(wall / (n * single), 3),
            "min_s": round(min(samples[n]), 4),
            "max_s": round(max(samples[n]), 4),
        })  # fmt: skip
    bare_turn = statistics.median(bare)
    # Best runs against best runs: the medians of two noisy series can differ by more
    # than the few milliseconds a task adds.
    overhead = min(samples[1]) - min(bare)
    return {
        "repeat": repeat,
        "bare_turn_s": round(bare_turn, 4),
        "bare_turn_min_s": round(min(bare), 4),
        "task_overhead_s": round(overhead, 4),
        "commands_per_task": len(COMMANDS),
        "model_steps_per_task": len(COMMANDS) + 1,
        "runtime": "local",
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "load_average": round(os.getloadavg()[0], 2),
        "rows": rows,
    }


def _table(report: dict[str, Any]) -> str:
    lines = [
        "| tasks | wall time (s) | N x one task (s) | ratio |",
        "|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['tasks']} | {r['wall_s']:.3f} | {r['serial_estimate_s']:.3f} | {r['ratio']:.2f} |"
        )
    return "\n".join(lines)


def _section(report: dict[str, Any]) -> str:
    return (
        f"{SECTION}\n\n"
        "`python bench/bench_tasks.py`: N sub-agents started at once with "
        "`TaskManager.start_task`, each on its own local runtime running "
        f"{report['commands_per_task']} commands ({report['model_steps_per_task']} model "
        "steps) against the scripted model server, which answers instantly. Wall time is "
        "from the first `start_task` to the last task's end, sandbox start and removal "
        f"included (median of {report['repeat']} runs); the ratio is wall time over N times "
        "the single-task time, so 1.0 would mean the tasks ran one after another.\n\n"
        f"{_table(report)}\n\n"
        f"The same script as a plain agent turn (`Agent.arun`) on an existing runtime takes "
        f"{report['bare_turn_s'] * 1000:.0f} ms (median); comparing the best runs, starting "
        f"a task (its own runtime, agent and thread hand-offs) and removing it costs "
        f"{report['task_overhead_s'] * 1000:.0f} ms. The tasks share one Python process: "
        "model streaming and event handling are CPU work under one GIL, which is why the "
        "ratio stays above 1/N; waits (the model, commands) overlap fully.\n\n"
        f"Machine: {report['machine']}; 1-minute load average {report['load_average']} at the "
        "end of the run (other work on the machine makes these figures noisier). "
        "Raw figures: `bench/results/tasks.json`.\n"
    )


def write_docs(report: dict[str, Any], page: Path) -> None:
    """Replace (or append) this benchmark's section; other sections are kept verbatim."""
    text = page.read_text(encoding="utf-8") if page.exists() else "# Performance\n"
    section = _section(report)
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    page.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--repeat", type=int, default=None, help="runs per size (default 9)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    repeat = args.repeat or (3 if args.quick else 9)
    report = measure(repeat)
    sys.stdout.write(_table(report) + "\n")
    sys.stdout.write(
        f"bare agent turn: {report['bare_turn_s'] * 1000:.1f} ms; task overhead: "
        f"{report['task_overhead_s'] * 1000:.1f} ms\n"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tasks.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    write_docs(report, ROOT / "docs" / "performance.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
