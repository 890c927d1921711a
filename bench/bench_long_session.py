"""Long-session benchmark: a 500-step session against the scripted server, across compactions.

Usage: python bench/bench_long_session.py [--steps 500] [--window 6000] [--write-docs]

One turn of N tool calls (an instant in-process tool, so the figures are Pygent's and
the HTTP round trip's, not a subprocess's) in a session whose declared context window
makes it compact many times. Per step: the time between two model requests reaching
the server. Figures, each against a baseline of the same run:

- step time in each later stretch of 10 steps against steps 6-15 (target: within 1.5x),
  with the same session run without compaction (a window big enough) as the contrast;
- each compaction's own cost, its model call excluded (target < 20 ms), against that
  model call;
- CPU time per step, of the whole process and split between Pygent's own thread (the
  agent's event loop: the loop, the tools, the HTTP client) and the scripted server's
  (a harness that parses every request whole, as a real server would, but in this
  process): what grows with the request is then seen on each side;
- Pygent's own work to build a request's bytes from the conversation, at step 10's
  size and across the compaction cycle, each message encoded once for the session
  against the whole body encoded at every step (what Pygent did before).

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
import threading
import time
from pathlib import Path
from typing import Any

import perfdoc  # bench/ is on sys.path: these run as scripts

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pygent import Agent  # noqa: E402
from pygent import compaction as cx  # noqa: E402
from pygent.context_window import message_tokens  # noqa: E402
from pygent.request_body import RequestEncoder  # noqa: E402
from pygent.runtime import Runtime  # noqa: E402
from pygent.server_profile import RequestOptions, ServerProfile, build_body  # noqa: E402
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
        self.agent_cpu: list[float] = []  # the agent thread's CPU time at each step's call

    def __getattr__(self, name: str) -> Any:  # base_url, _async_client, aclose...
        return getattr(self.inner, name)

    async def astream(self, messages: list, model: str, tools: Any, *, on_text: Any = None,
                      on_discard: Any = None) -> Any:
        started = time.perf_counter()
        if not (messages and messages[0].get("content") == cx.SUMMARIZER):
            self.agent_cpu.append(time.thread_time())  # runs on the agent's loop thread
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

    server_cpu: list[tuple[int, float]] = []  # (handler thread, its CPU time) per step

    def respond(body: dict[str, Any]) -> Any:
        if body["messages"][0]["content"] != cx.SUMMARIZER:
            cpu.append(time.process_time())
            server_cpu.append((threading.get_ident(), time.thread_time()))
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
    agent_cpu = agent.model.agent_cpu
    agent_steps = [b - a for a, b in zip(agent_cpu, agent_cpu[1:], strict=False)]
    # A keep-alive connection is served by one thread; a step served by another (a
    # reconnection) has no figure of its own.
    server_steps = [b[1] - a[1] if a[0] == b[0] else None
                    for a, b in zip(server_cpu, server_cpu[1:], strict=False)]
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
        **_ratios("agent", agent_steps),
        **_ratios("server", server_steps),
    }


def _ratios(name: str, steps: list[float | None]) -> dict[str, float]:
    """Steps 6-15's median CPU time and each later stretch of 10 steps against it."""
    def median(values: list[float | None]) -> float:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else 0.0

    base = median(steps[5:15]) or 1e-9
    stretches = [median(steps[i:i + 10]) / base for i in range(10, len(steps) - 9, 10)]
    return {f"{name}_cpu_step10_ms": round(base * 1000, 3),
            f"{name}_cpu_stretches_ms": [round(x * base * 1000, 3) for x in stretches],
            f"{name}_cpu_median_ratio": round(statistics.median(stretches), 2),
            f"{name}_cpu_p90_ratio": round(sorted(stretches)[int(len(stretches) * 0.9)], 2),
            f"{name}_cpu_worst_ratio": round(max(stretches), 2),
            f"{name}_cpu_last_ratio": round(stretches[-1], 2)}


def _pair(i: int) -> list[dict[str, Any]]:
    """One step of the session above: the model's call and the tool's result."""
    args = json.dumps({"text": f"step {i} " + "x" * 300})
    return [{"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{i}", "type": "function",
                 "function": {"name": "note", "arguments": args}}]},
            {"role": "tool", "tool_call_id": f"call_{i}", "content": f"noted: step {i} " + "x" * 300}]


def request_body(window: int, repeat: int = 100) -> dict[str, Any]:
    """Pygent's own work to turn the conversation into the bytes of the next request,
    at step 10's size, at the two ends of the range the compacting session lives in
    (45% and 80% of the window) and at the uncompacted session's last step: each
    message encoded once for the session (now) against the whole body encoded at every
    step (before). CPU time of this thread, the least of ``repeat`` tries: these are
    tens of microseconds, which a loaded machine's noise hides in a whole step."""
    system = {"role": "system", "content": "You are Pygent. " + "y" * 2000}
    tools = [{"type": "function", "function": {"name": "note", "description": "Write a note.",
              "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}}]
    options, profile = RequestOptions(), ServerProfile("http://bench", "test-model")
    tools_tokens = cx.tools_tokens(tools)

    def steps_for(share: float) -> int:
        tokens, n = message_tokens(system) + tools_tokens, 0
        while tokens < share * window:
            n += 1
            tokens += sum(message_tokens(m) for m in _pair(n))
        return n

    def body(messages: list[dict[str, Any]]) -> dict[str, Any]:
        return build_body(messages, "test-model", tools, stream=True, options=options,
                          profile=profile)

    def cost(steps: int, whole: bool) -> float:
        best = float("inf")
        encoder = RequestEncoder()
        history = [system, *[m for i in range(1, steps) for m in _pair(i)]]
        for k in range(repeat):
            encoder.encode(body(history))  # the step before: its messages are known
            grown = [*history, *_pair(steps + k)]  # fresh objects each try
            started = time.thread_time()
            if whole:
                json.dumps(body(grown), ensure_ascii=False, separators=(",", ":"),
                           allow_nan=False).encode()
            else:
                encoder.encode(body(grown))
            best = min(best, time.thread_time() - started)
        return best * 1e6

    sizes = {"step 10": 10, "45%": steps_for(0.45), "80%": steps_for(0.8), "step 500": 500}
    out: dict[str, Any] = {}
    for label, n in sizes.items():
        out[label] = {"messages": 2 * n + 1, "kb": round(len(json.dumps(body(
            [system, *[m for i in range(1, n + 1) for m in _pair(i)]]))) / 1024, 1),
            "once_us": round(cost(n, False), 1), "whole_us": round(cost(n, True), 1)}
    return out


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


def across_runs(runs: dict[str, Any], stretches: str, base: str) -> dict[str, Any]:
    """Each 10-step stretch's median over the runs, against the runs' median step 10.

    Growth that Pygent causes comes back at the same place in every run (the sessions
    are identical: the same requests, compactions at the same steps); a shared
    machine's noise hits one run's stretch and not the others'. So the worst of these
    medians is the measure of "stays flat", beside any single run's worst."""
    per_position = [statistics.median(xs) for xs in zip(*runs[stretches], strict=False)]
    worst = max(per_position)
    return {"worst_ratio": round(worst / runs[base], 2),
            "worst_at_step": 11 + 10 * per_position.index(worst),
            "last_ratio": round(per_position[-1] / runs[base], 2)}


def section(r: dict[str, Any]) -> str:
    c, n = r["compacting"], r["no_compaction"]
    wall = across_runs(c, "stretches_ms", "step10_ms")
    own = across_runs(c, "agent_cpu_stretches_ms", "agent_cpu_step10_ms")
    return "\n".join([
        BEGIN,
        f"{c['steps']:.0f} steps, a {c['window']:,.0f}-token window ({c['compactions']:.0f} "
        f"compactions); each figure the median of {c['runs']} runs; "
        f"Python {r['python']}, {r['cpus']} cores, load average {r['load']} (a shared machine).",
        "",
        "| What | Pygent | Baseline (same run) | Target |",
        "|---|---|---|---|",
        f"| Step time, each stretch of 10 steps as the median of the {c['runs']} runs: the "
        f"worst (at step; last) | {wall['worst_ratio']}x (step {wall['worst_at_step']}; "
        f"{wall['last_ratio']}x) | steps 6-15: {c['step10_ms']} ms | <= 1.5x |",
        f"| CPU time per step of Pygent's thread, the same way: the worst (at step; last) | "
        f"{own['worst_ratio']}x (step {own['worst_at_step']}; {own['last_ratio']}x) | "
        f"steps 6-15: {c['agent_cpu_step10_ms']} ms | <= 1.5x |",
        f"| Step time, one run's median stretch of 10 steps (90th percentile; worst) | "
        f"{c['median_stretch_ms']} ms ({c['median_ratio']}x; {c['p90_ratio']}x; "
        f"{c['worst_ratio']}x) | steps 6-15: {c['step10_ms']} ms | <= 1.5x |",
        f"| Step time, last 10 steps | {c['last_stretch_ms']} ms ({c['last_ratio']}x) | "
        f"steps 6-15: {c['step10_ms']} ms | <= 1.5x |",
        f"| CPU time per step (this process: agent and server), median stretch; worst; "
        f"last | {c['cpu_median_ratio']}x; {c['cpu_worst_ratio']}x; {c['cpu_last_ratio']}x | "
        f"steps 6-15: {c['cpu_step10_ms']} ms | <= 1.5x |",
        f"| CPU time per step, Pygent's thread (agent loop, tools, HTTP client): median "
        f"stretch (90th percentile; worst); last | {c['agent_cpu_median_ratio']}x "
        f"({c['agent_cpu_p90_ratio']}x; {c['agent_cpu_worst_ratio']}x); "
        f"{c['agent_cpu_last_ratio']}x | steps 6-15: {c['agent_cpu_step10_ms']} ms | <= 1.5x |",
        f"| CPU time per step, the scripted server's thread (the harness): median stretch "
        f"(90th percentile; worst); last | {c['server_cpu_median_ratio']}x "
        f"({c['server_cpu_p90_ratio']}x; {c['server_cpu_worst_ratio']}x); "
        f"{c['server_cpu_last_ratio']}x | steps 6-15: {c['server_cpu_step10_ms']} ms | (harness) |",
        f"| Same, without compaction: median stretch; worst; last | "
        f"{n['cpu_median_ratio']}x; {n['cpu_worst_ratio']}x; {n['cpu_last_ratio']}x | "
        f"steps 6-15: {n['cpu_step10_ms']} ms | (contrast) |",
        f"| Same, without compaction: Pygent's thread, median stretch; last (the server's "
        f"thread) | {n['agent_cpu_median_ratio']}x; {n['agent_cpu_last_ratio']}x "
        f"({n['server_cpu_median_ratio']}x; {n['server_cpu_last_ratio']}x) | steps 6-15: "
        f"{n['agent_cpu_step10_ms']} ms ({n['server_cpu_step10_ms']} ms) | (contrast) |",
        f"| Same session without compaction, last 10 steps | {n['last_stretch_ms']} ms "
        f"({n['last_ratio']}x) | steps 6-15: {n['step10_ms']} ms | (contrast) |",
        f"| Compaction's own cost, model call excluded (median; max) | "
        f"{c['compaction_own_ms']['median']} ms ({c['compaction_own_ms']['max']} ms) | "
        f"the summary call: {c['summary_call_ms_median']} ms | < 20 ms |",
        *_body_rows(r["request_body_us"]),
        END,
    ])


def _body_rows(b: dict[str, Any]) -> list[str]:
    """The request-body rows: each message encoded once against the whole body each step."""
    base = b["step 10"]
    rows = []
    for label, what in (("45%", "a request at 45% of the window (just after a compaction)"),
                        ("80%", "at 80% (just before the next)"),
                        ("step 500", "the uncompacted session's step 500")):
        x = b[label]
        rows.append(
            f"| Building the request body, {what}: {x['messages']} messages, {x['kb']} KB; "
            f"each message encoded once (before: the whole body each step) | {x['once_us']} us "
            f"({x['once_us'] / base['once_us']:.2f}x) (before: {x['whole_us']} us, "
            f"{x['whole_us'] / base['whole_us']:.2f}x) | step 10 ({base['messages']} messages): "
            f"{base['once_us']} us (before: {base['whole_us']} us) | (a part of the step) |")
    return rows


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
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of each session; each figure is the median over them")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="pygent-bench-long-"))
    try:
        # Interleaved, so a burst of other work on the machine hits both kinds alike.
        runs = [(run(args.steps, args.window, tmp / f"c{i}"),
                 run(args.steps, 10_000_000, tmp / f"n{i}")) for i in range(args.repeat)]
        compacting = _median_of([c for c, _ in runs])
        contrast = _median_of([n for _, n in runs])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = {"compacting": compacting, "no_compaction": contrast,
              "request_body_us": request_body(args.window),
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
