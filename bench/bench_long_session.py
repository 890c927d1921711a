"""Long-session benchmark: a 500-step session against the scripted server, across compactions.

Usage: python bench/bench_long_session.py [--steps 500] [--window 6000] [--write-docs]

One turn of N tool calls (an instant in-process tool, so the figures are Pygent's and
the HTTP round trip's, not a subprocess's) in a session whose declared context window
makes it compact many times. Per step: the time between two model requests reaching
the server. Figures, each against a baseline of the same run:

- step time in each later stretch of 10 steps against steps 6-15 (target: within 1.5x),
  with the same session run without compaction (a window big enough) as the contrast;
- each compaction's own cost, its model call excluded (target < 20 ms), against that
  model call.

Results: a table on stdout, bench/results/long_session.json, and with --write-docs its
section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import perfdoc  # bench/ is on sys.path: these run as scripts

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pygent import Agent  # noqa: E402
from pygent import compaction as cx  # noqa: E402
from pygent.runtime import Runtime  # noqa: E402
from pygent.settings import load_settings  # noqa: E402
from pygent.tools import ToolRegistry  # noqa: E402
from tests.openai_server import ScriptedOpenAIServer, text_reply, tool_call_reply  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "long_session.json"
BEGIN = "<!-- long-session-figures:begin (written by bench/bench_long_session.py --write-docs) -->"
END = "<!-- long-session-figures:end -->"


class TimedModel:
    """The real model, with the time spent in summary calls recorded."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.summary_seconds = 0.0

    def __getattr__(self, name: str) -> Any:  # base_url, _async_client, aclose...
        return getattr(self.inner, name)

    async def astream(self, messages: list, model: str, tools: Any, *, on_text: Any = None,
                      on_discard: Any = None) -> Any:
        started = time.perf_counter()
        try:
            return await self.inner.astream(messages, model, tools, on_text=on_text,
                                            on_discard=on_discard)
        finally:
            if messages and messages[0].get("content") == cx.SUMMARIZER:
                self.summary_seconds += time.perf_counter() - started


def run(steps: int, window: int, tmp: Path) -> dict[str, Any]:
    tmp.mkdir(parents=True, exist_ok=True)
    server = ScriptedOpenAIServer().start()
    done = {"n": 0}
    cpu: list[float] = []  # the process's CPU time at each step's request: less noisy than
    # wall time on a loaded machine (the server is in this process too)

    def respond(body: dict[str, Any]) -> Any:
        if body["messages"][0]["content"] != cx.SUMMARIZER:
            cpu.append(time.process_time())
        if body["messages"][0]["content"] == cx.SUMMARIZER:
            return text_reply(f"## Task\nbench\n## State of the work\n{done['n']} steps done")
        if done["n"] < steps:
            done["n"] += 1
            return tool_call_reply("note", {"text": f"step {done['n']} " + "x" * 300})
        return text_reply("finished")

    server.set_responder(respond)
    env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench",
           "PYGENT_MODEL": "test-model", "PYGENT_USE_DOCKER": "0",
           "PYGENT_CONTEXT_WINDOW": str(window)}
    settings = load_settings(environ=env, cwd=tmp)
    tools = ToolRegistry()

    async def note(ctx: Any, text: str) -> str:
        return f"noted: {text}"

    tools.register("note", "Write a note.", {"type": "object", "properties": {
        "text": {"type": "string"}}, "required": ["text"]}, note)
    rt = Runtime(settings=settings, workspace=tmp / f"ws{window}")
    agent = Agent(runtime=rt, settings=settings, tools=tools, checkpoints=False,
                  history_file=tmp / f"history-{window}.jsonl")
    agent.model = TimedModel(agent.model)
    own: list[float] = []
    summary_calls: list[float] = []
    original = agent._compact_now

    async def timed(focus: str, *, automatic: bool) -> Any:
        model_before = agent.model.summary_seconds
        started = time.perf_counter()
        result = await original(focus, automatic=automatic)
        total = time.perf_counter() - started
        model = agent.model.summary_seconds - model_before
        own.append(total - model)
        summary_calls.append(model)
        return result

    agent._compact_now = timed  # type: ignore[method-assign]
    try:
        result = agent.turn("take notes", max_steps=steps + 5)
        arrivals = [r.received_monotonic for r in server.chat_requests
                    if r.body["messages"][0]["content"] != cx.SUMMARIZER]
    finally:
        agent.close()
        rt.cleanup()
        server.stop()
    step_times = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    cpu_steps = [b - a for a, b in zip(cpu, cpu[1:], strict=False)]
    cpu_base = statistics.median(cpu_steps[5:15])
    cpu_stretches = [statistics.median(cpu_steps[i:i + 10])
                     for i in range(10, len(cpu_steps) - 9, 10)]
    # A step that compacted includes its summary call: the others show the loop's cost.
    base = statistics.median(step_times[5:15])
    stretches = [statistics.median(step_times[i:i + 10]) for i in range(10, len(step_times) - 9, 10)]
    return {
        "window": window,
        "stop_reason": result.stop_reason.value,
        "steps": len(step_times) + 1,
        "compactions": len(own),
        "step10_ms": round(base * 1000, 3),
        "median_stretch_ms": round(statistics.median(stretches) * 1000, 3),
        "median_ratio": round(statistics.median(stretches) / base, 2),
        "p90_ratio": round(sorted(stretches)[int(len(stretches) * 0.9)] / base, 2),
        "worst_stretch_ms": round(max(stretches) * 1000, 3),
        "last_stretch_ms": round(stretches[-1] * 1000, 3),
        "worst_ratio": round(max(stretches) / base, 2),
        "last_ratio": round(stretches[-1] / base, 2),
        "compaction_own_ms": {
            "median": round(statistics.median(own) * 1000, 2) if own else None,
            "max": round(max(own) * 1000, 2) if own else None,
        },
        "stretches_ms": [round(x * 1000, 2) for x in stretches],
        "cpu_step10_ms": round(cpu_base * 1000, 3),
        "cpu_median_ratio": round(statistics.median(cpu_stretches) / cpu_base, 2),
        "cpu_worst_ratio": round(max(cpu_stretches) / cpu_base, 2),
        "cpu_last_ratio": round(cpu_stretches[-1] / cpu_base, 2),
        "summary_call_ms_median": round(statistics.median(summary_calls) * 1000, 2)
        if summary_calls else None,
    }


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the runs (a shared machine's noise hits single runs)."""
    out: dict[str, Any] = {"runs": len(runs)}
    for key, value in runs[0].items():
        values = [r[key] for r in runs]
        if isinstance(value, dict):
            out[key] = {k: (statistics.median([v[k] for v in values])
                            if values[0][k] is not None else None) for k in value}
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = round(statistics.median(values), 3)
        elif isinstance(value, list):
            out[key] = values
        else:
            out[key] = value
    return out


def section(r: dict[str, Any]) -> str:
    c, n = r["compacting"], r["no_compaction"]
    return "\n".join([
        BEGIN,
        f"{c['steps']:.0f} steps, a {c['window']:,.0f}-token window ({c['compactions']:.0f} "
        f"compactions); each figure the median of {c['runs']} runs; "
        f"Python {r['python']}, {r['cpus']} cores, load average {r['load']} (a shared machine).",
        "",
        "| What | Pygent | Baseline (same run) | Target |",
        "|---|---|---|---|",
        f"| Step time, the median stretch of 10 steps (90th percentile; worst) | "
        f"{c['median_stretch_ms']} ms ({c['median_ratio']}x; {c['p90_ratio']}x; "
        f"{c['worst_ratio']}x) | steps 6-15: {c['step10_ms']} ms | <= 1.5x |",
        f"| Step time, last 10 steps | {c['last_stretch_ms']} ms ({c['last_ratio']}x) | "
        f"steps 6-15: {c['step10_ms']} ms | <= 1.5x |",
        f"| CPU time per step (this process: agent and server), median stretch; worst; "
        f"last | {c['cpu_median_ratio']}x; {c['cpu_worst_ratio']}x; {c['cpu_last_ratio']}x | "
        f"steps 6-15: {c['cpu_step10_ms']} ms | <= 1.5x |",
        f"| Same, without compaction: median stretch; worst; last | "
        f"{n['cpu_median_ratio']}x; {n['cpu_worst_ratio']}x; {n['cpu_last_ratio']}x | "
        f"steps 6-15: {n['cpu_step10_ms']} ms | (contrast) |",
        f"| Same session without compaction, last 10 steps | {n['last_stretch_ms']} ms "
        f"({n['last_ratio']}x) | steps 6-15: {n['step10_ms']} ms | (contrast) |",
        f"| Compaction's own cost, model call excluded (median; max) | "
        f"{c['compaction_own_ms']['median']} ms ({c['compaction_own_ms']['max']} ms) | "
        f"the summary call: {c['summary_call_ms_median']} ms | < 20 ms |",
        END,
    ])


def write_docs(r: dict[str, Any]) -> None:
    perfdoc.replace_block(
        "long-session", "bench/bench_long_session.py", section(r), heading="## Long sessions",
        intro=("`python bench/bench_long_session.py --write-docs`: one turn of 500 tool calls\n"
            "(an instant in-process tool) against the scripted server, in a session whose\n"
            "context window makes it compact again and again (see docs/long-sessions.md). A\n"
            "step is the time between two model requests reaching the server.\n\n"),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--window", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each session; each figure is the median over them")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="pygent-bench-long-"))
    try:
        compacting = _median_of([run(args.steps, args.window, tmp / f"c{i}")
                                 for i in range(args.repeat)])
        contrast = _median_of([run(args.steps, 10_000_000, tmp / f"n{i}")
                               for i in range(args.repeat)])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = {"compacting": compacting, "no_compaction": contrast,
              "python": platform.python_version(), "cpus": os.cpu_count(),
              "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    print(json.dumps(report, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    if args.write_docs:
        write_docs(report)
        print(f"wrote {perfdoc.PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
