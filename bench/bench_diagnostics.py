"""Diagnostics benchmark: end of a command -> ``publishDiagnostics`` written for 1,000
problems, and the matchers' parsing cost per MB of tool output.

Usage: python bench/bench_diagnostics.py [--quick] [--write-docs]

Latency: a real :class:`~pygent.lsp.server.PygentLanguageServer` (its pygls protocol
writing real JSON-RPC frames to an in-memory writer) follows a session over a folder of
50 files; the agent's ``bash`` call prints 1,000 ruff problems (20 per file) in 64 KiB
chunks as the runtime does; the clock runs from the ``tool_call_finished`` event to the
last ``publishDiagnostics`` frame written (parse, map, replace, convert, serialise). The
baseline, same run and same bytes: serialising and writing the same 50 notifications
from diagnostics already built (the floor any publisher pays).
Parsing: 1 MB of ruff output and 1 MB of pytest output through
:func:`~pygent.diagnostics.matchers.recognise`, with the command named (its matchers
only) and unnamed (``make check``: the whole table); baseline, same bytes: one
``re.finditer`` over every line and a plain ``split``.
Results on stdout, in bench/results/diagnostics.json and (``--write-docs``) in
docs/performance.md between the diagnostics-figures markers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import perfdoc  # bench/ is on sys.path: these run as scripts

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lsprotocol import types as lsp  # noqa: E402

from pygent import events as ev  # noqa: E402
from pygent.diagnostics.board import ProblemBoard  # noqa: E402
from pygent.diagnostics.mapping import PathMapper  # noqa: E402
from pygent.diagnostics.matchers import recognise  # noqa: E402
from pygent.lsp.diagnostics import _SessionProblems, to_diagnostic  # noqa: E402
from pygent.lsp.server import create_server  # noqa: E402
from pygent.settings import load_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "diagnostics.json"
BEGIN = "<!-- diagnostics-figures:begin (written by bench/bench_diagnostics.py --write-docs) -->"
END = "<!-- diagnostics-figures:end -->"
FILES, PER_FILE = 50, 20
COMMAND = "ruff check --output-format=concise ."


class Sink:
    """The server's writer: counts the frames and bytes it is given."""

    backlog = 0

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.frames += 1
        self.bytes += len(data)

    def close(self, timeout: float = 5.0) -> None:
        pass


def ruff_output(files: int, per_file: int) -> str:
    lines = [
        f"pkg/mod_{f}.py:{n + 1}:5: F841 Local variable `v{n}` is assigned to but never used"
        for f in range(files)
        for n in range(per_file)
    ]
    return "\n".join(lines) + f"\nFound {files * per_file} errors.\n"


def pytest_output(failures: int) -> str:
    block = (
        "___________________________ test_case_{i} ___________________________\n\n"
        "    def test_case_{i}():\n>       assert compute({i}) == {j}\nE       assert {i} == {j}\n"
        "E        +  where {i} = compute({i})\n\ntests/test_mod_{k}.py:{line}: AssertionError\n"
    )
    body = "".join(block.format(i=i, j=i + 1, k=i % 40, line=10 + i % 300) for i in range(failures))
    return (
        "=================================== FAILURES ===================================\n" + body
    )


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def publish_latency(folder: Path, runs: int) -> dict[str, Any]:
    server = create_server(load_settings({}, config_file=None))
    sink = Sink()
    server.protocol.set_writer(sink)
    server.loop = asyncio.get_running_loop()
    diag = server.diagnostics
    output = ruff_output(FILES, PER_FILE)
    chunks = [output[i : i + 65536] for i in range(0, len(output), 65536)]
    done = asyncio.Event()
    published: list[float] = []

    def on_published(_count: int) -> None:
        published.append(time.perf_counter())
        done.set()

    diag.on_published = on_published
    samples, baseline = [], []
    for run in range(runs):
        board = ProblemBoard()
        mapper = PathMapper([str(folder), "/workspace"], lambda rel: (folder / rel).exists())
        diag.sessions["s"] = _SessionProblems(folder, board, mapper)
        call = f"c{run}"
        diag._on_event(
            "s", ev.ToolCallProposed(call_id=call, tool="bash", arguments={"cmd": COMMAND})
        )
        for chunk in chunks:
            diag._on_event("s", ev.ToolOutput(call_id=call, text=chunk))
        frames_before = sink.frames
        done.clear()
        start = time.perf_counter()
        diag._on_event("s", ev.ToolCallFinished(call_id=call, tool="bash", output=output[-4000:]))
        await done.wait()
        samples.append((published[-1] - start) * 1000)
        assert sink.frames - frames_before == FILES, "one notification per file"
        assert board.count() == FILES * PER_FILE
        # Baseline: the same 50 notifications, diagnostics already built, written again.
        built = {rel: [to_diagnostic(p) for p in board.problems(rel)] for rel in board.files()}
        start = time.perf_counter()
        for rel, items in built.items():
            server.text_document_publish_diagnostics(
                lsp.PublishDiagnosticsParams(uri=(folder / rel).as_uri(), diagnostics=items)
            )
        baseline.append((time.perf_counter() - start) * 1000)
    diag.close()
    return {
        "problems": FILES * PER_FILE,
        "files": FILES,
        "output_bytes": len(output),
        "median_ms": round(statistics.median(samples), 2),
        "p90_ms": round(_pct(samples, 0.9), 2),
        "baseline_median_ms": round(statistics.median(baseline), 2),
        "ratio": round(statistics.median(samples) / statistics.median(baseline), 2),
        "runs": runs,
    }


def _time(fn: Any, repeat: int) -> float:
    best = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best.append(time.perf_counter() - start)
    return statistics.median(best)


def parse_cost(repeat: int) -> list[dict[str, Any]]:
    rows = []
    line = re.compile(r"^.*$", re.MULTILINE)
    for name, text, command in (
        ("ruff", ruff_output(200, 60), COMMAND),
        ("pytest", pytest_output(4000), "python3 -m pytest -q"),
    ):
        mb = 1024 * 1024
        text = (text * (mb // len(text) + 1))[:mb]
        text = text[: text.rfind("\n") + 1]
        megabytes = len(text.encode()) / mb
        named = _time(lambda t=text, c=command: recognise(t, c), repeat)
        unnamed = _time(lambda t=text: recognise(t, "make check"), repeat)
        finditer = _time(lambda t=text: sum(1 for _ in line.finditer(t)), repeat)
        split = _time(lambda t=text: t.split("\n"), repeat)
        problems = len(recognise(text, command).problems)
        rows.append(
            {
                "output": name,
                "megabytes": round(megabytes, 3),
                "problems": problems,
                "named_ms_per_mb": round(named * 1000 / megabytes, 1),
                "unnamed_ms_per_mb": round(unnamed * 1000 / megabytes, 1),
                "finditer_ms_per_mb": round(finditer * 1000 / megabytes, 1),
                "split_ms_per_mb": round(split * 1000 / megabytes, 2),
                "named_over_finditer": round(named / finditer, 2),
            }
        )
    return rows


def render(latency: dict[str, Any], parsing: list[dict[str, Any]]) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = [
        f"{latency['problems']} problems in {latency['files']} files, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load} (a shared machine).",
        "",
        "| What | Pygent | Baseline (same run) | Target |",
        "|---|---|---|---|",
        f"| End of command -> last `publishDiagnostics` written, {latency['problems']} problems "
        f"(median; p90 of {latency['runs']}) | {latency['median_ms']} ms ({latency['p90_ms']} ms) "
        f"| writing the same {latency['files']} notifications, diagnostics prebuilt: "
        f"{latency['baseline_median_ms']} ms ({latency['ratio']}x) | < 50 ms |",
    ]
    for r in parsing:
        rows.append(
            f"| Parse 1 MB of {r['output']} output ({r['problems']} problems): command named; "
            f"unnamed (whole table) | {r['named_ms_per_mb']} ms/MB; {r['unnamed_ms_per_mb']} ms/MB "
            f"| `re.finditer` over every line: {r['finditer_ms_per_mb']} ms/MB "
            f"({r['named_over_finditer']}x); `split`: {r['split_ms_per_mb']} ms/MB |  |"
        )
    return "\n".join(rows)


def write_docs(text: str) -> None:
    perfdoc.replace_block(
        "diagnostics", "bench/bench_diagnostics.py", text, heading="## Diagnostics",
        intro="`python bench/bench_diagnostics.py --write-docs`: problems read from a command's "
        "output and published to the editor (see docs/diagnostics.md).",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    runs, repeat = (10, 3) if args.quick else (40, 7)
    with tempfile.TemporaryDirectory(prefix="pygent-bench-diag-") as tmp:
        folder = Path(tmp)
        (folder / "pkg").mkdir()
        for f in range(FILES):
            (folder / "pkg" / f"mod_{f}.py").write_text("x = 1\n" * PER_FILE)
        latency = asyncio.run(publish_latency(folder, runs))
    parsing = parse_cost(repeat)
    text = render(latency, parsing)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"latency": latency, "parsing": parsing}, indent=2) + "\n")
    if args.write_docs:
        write_docs(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
