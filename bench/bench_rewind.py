"""Rewind and the per-turn timeline cost, each figure next to its baseline from the same run.

    python bench/bench_rewind.py [--quick] [--files N] [--write-docs]

Needs a Docker engine and the test image (``PYGENT_TEST_IMAGE``, default
``pygent-test:bookworm``). Sessions are made by ``SessionService`` against the scripted
model server of the test suite (tests/openai_server.py), so a turn costs what Pygent
adds, not a model's thinking. Measures:

- rewinding a turn that changed 100 files (``SessionService.rewind``: files and
  conversation, including the checkpoint that makes it undoable), in a copy-on-write
  Docker session and in a mount-mode local session, against ``git checkout -- .`` putting
  the same 100 files back in a git clone of the same tree;
- a trivial turn (the model answers at once, no tool) in a session over an N-file folder
  (default 50,000) in sync modes ``cow`` and ``mount``, against the same turn in a
  session with no folder (all Docker).

Writes ``bench/results/rewind.json``; ``--write-docs`` also writes the "Rewind" section
of docs/performance.md (``--docs-only``: from the saved results).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import perfdoc  # bench/ is on sys.path: these run as scripts

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pygent.service import SessionOptions, SessionService  # noqa: E402
from pygent.settings import load_settings  # noqa: E402
from tests.openai_server import ScriptedOpenAIServer, text_reply, tool_call_reply  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "rewind.json"
BEGIN = "<!-- rewind-figures:begin (written by bench/bench_rewind.py --write-docs) -->"
END = "<!-- rewind-figures:end -->"
IMAGE = os.environ.get("PYGENT_TEST_IMAGE", "pygent-test:bookworm")
CHANGE = "for f in pkg0000/m*.py; do echo '# changed' >> $f; done"  # 100 files of pkg0000
GIT = ["git", "-c", "user.email=b@b", "-c", "user.name=b"]


def make_tree(root: Path, files: int) -> None:
    for i in range(files):
        folder = root / f"pkg{i // 100:04d}"
        if i % 100 == 0:
            folder.mkdir(parents=True)
        (folder / f"m{i % 100:02d}.py").write_text(f"value = {i}\n")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def responder(body: dict[str, Any]) -> Any:
    last = body["messages"][-1]
    if last["role"] == "user" and last["content"] == "change 100 files":
        return tool_call_reply("bash", {"cmd": f"cd {body['_ws']} && {CHANGE}"})
    if last["role"] == "user" and last["content"] == "run true":
        return tool_call_reply("bash", {"cmd": "true"})
    return text_reply("ok")


async def rewind_rounds(service: SessionService, sid: str, rounds: int) -> tuple[list[float], int]:
    took = []
    restored = 0
    for _ in range(rounds):
        start = time.perf_counter()
        result = await service.rewind(sid, 1)
        took.append(time.perf_counter() - start)
        restored = len(result.restored)
        await service.redo(sid)
    return took, restored


def git_checkout_baseline(tree: Path, scratch: Path, rounds: int) -> list[float]:
    clone = scratch / "clone"
    subprocess.run(["cp", "-a", str(tree), str(clone)], check=True)
    subprocess.run(["git", "init", "-q"], cwd=clone, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=clone, check=True)
    subprocess.run([*GIT, "commit", "-qm", "tree"], cwd=clone, check=True)
    took = []
    for _ in range(rounds):
        subprocess.run(["sh", "-c", CHANGE], cwd=clone, check=True)
        start = time.perf_counter()
        subprocess.run(["git", "checkout", "-q", "--", "."], cwd=clone, check=True)
        took.append(time.perf_counter() - start)
    shutil.rmtree(clone)
    return took


async def timed_turns(
    service: SessionService, options: dict[str, SessionOptions], n: int, prompt: str
) -> dict[str, list[float]]:
    """``n`` turns in each session, interleaved (one of each in turn), so the machine's
    load drifts alike over all of them."""
    sessions = {}
    try:
        for name, opts in options.items():
            sessions[name] = await asyncio.to_thread(service.open_blocking, opts)
            await asyncio.to_thread(sessions[name].runtime.wait_ready)
            await service.prompt(sessions[name].id, prompt)  # warm up
        took: dict[str, list[float]] = {name: [] for name in options}
        for _ in range(n):
            for name, session in sessions.items():
                start = time.perf_counter()
                await service.prompt(session.id, prompt)
                took[name].append(time.perf_counter() - start)
        return took
    finally:
        for session in sessions.values():
            await service.close(session.id)


async def run(files: int, rounds: int) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="pygent-bench-rewind-"))
    server = ScriptedOpenAIServer()
    server.__enter__()
    try:
        small, big = scratch / "small", scratch / "big"
        make_tree(small, 1000)
        print(f"making a {files}-file tree...", flush=True)
        make_tree(big, files)
        (scratch / "cfg").mkdir()
        settings = load_settings(
            {"image": IMAGE},
            environ={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench",
                     "PYGENT_MODEL": "bench", "PYGENT_SESSIONS_DIR": str(scratch / "data" / "sessions")},
            cwd=scratch / "cfg",
        )
        report: dict[str, Any] = {"files": files, "load_before": load(), "cpus": os.cpu_count()}
        service = SessionService(settings)
        ws = {"cow": "/workspace", "mount": ""}

        for mode, runtime in (("cow", "docker"), ("mount", "local")):
            folder = scratch / f"rewind-{mode}"
            subprocess.run(["cp", "-a", str(small), str(folder)], check=True)
            ws["mount"] = str(folder)
            server.set_responder(lambda body, m=mode: responder({**body, "_ws": ws[m]}))
            session = await asyncio.to_thread(service.open_blocking, SessionOptions(
                workspace_folder=str(folder), runtime=runtime, sync_mode=mode,
                approval_mode="never"))
            assert session.sync_mode == mode, session.notices
            await service.prompt(session.id, "change 100 files")
            turn = service.timeline(session.id)[0]
            assert len(turn.files) == 100, [f.path for f in turn.files][:5]
            took, restored = await rewind_rounds(service, session.id, rounds)
            assert restored == 100, restored
            report[f"rewind_{mode}_ms"] = ms(statistics.median(took))
            report[f"rewind_{mode}_max_ms"] = ms(max(took))
            await service.close(session.id)
        report["git_checkout_ms"] = ms(statistics.median(git_checkout_baseline(small, scratch, rounds)))

        server.set_responder(responder)
        n = rounds * 10
        report["turns"] = n
        options = {"none": SessionOptions(runtime="docker", sync_mode="none", approval_mode="never")}
        for mode in ("cow", "mount"):
            options[mode] = SessionOptions(workspace_folder=str(big), runtime="docker",
                                           sync_mode=mode, approval_mode="never")
        for key, prompt, count in (("turn", "hi", n), ("tool_turn", "run true", rounds * 2)):
            took = await timed_turns(service, options, count, prompt)
            for name, values in took.items():
                report[f"{key}_{name}_ms"] = ms(statistics.median(values))
        await service.aclose()
        report["load_after"] = load()
        return report
    finally:
        server.__exit__(None, None, None)
        shutil.rmtree(scratch, ignore_errors=True)


def section(r: dict[str, Any]) -> str:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "n/a"

    none, tool = r["turn_none_ms"], r["tool_turn_none_ms"]
    rows = [
        "| What | Pygent | Baseline (same run) | Target |",
        "|---|---|---|---|",
        f"| Rewind of a turn that changed 100 files, copy-on-write Docker session (median; max) "
        f"| {r['rewind_cow_ms']} ms ({r['rewind_cow_max_ms']} ms) | `git checkout -- .` of the "
        f"same 100 files: {r['git_checkout_ms']} ms | <= 200 ms |",
        f"| Rewind of a turn that changed 100 files, mount mode, local runtime (median; max) "
        f"| {r['rewind_mount_ms']} ms ({r['rewind_mount_max_ms']} ms) | `git checkout -- .`: "
        f"{r['git_checkout_ms']} ms | <= 200 ms |",
        f"| A trivial turn over a {r['files']}-file folder, sync `cow` (median of {r['turns']}) "
        f"| {r['turn_cow_ms']} ms | no folder: {none} ms ({ratio(r['turn_cow_ms'], none)}) | <= 1.5x |",
        f"| A trivial turn over a {r['files']}-file folder, sync `mount` (median of {r['turns']}) "
        f"| {r['turn_mount_ms']} ms | no folder: {none} ms ({ratio(r['turn_mount_ms'], none)}) | <= 1.5x |",
        f"| A turn that runs one command (`true`), sync `cow` | {r['tool_turn_cow_ms']} ms "
        f"| no folder: {tool} ms ({ratio(r['tool_turn_cow_ms'], tool)}) | (none) |",
        f"| A turn that runs one command (`true`), sync `mount` | {r['tool_turn_mount_ms']} ms "
        f"| no folder: {tool} ms ({ratio(r['tool_turn_mount_ms'], tool)}) | (none) |",
    ]
    return "\n".join([
        BEGIN,
        f"{r['files']} files in folders of 100, Docker engine {r.get('engine', '?')}, "
        f"{r['cpus']} cores, load average {r['load_before']} before and {r['load_after']} after "
        "(a shared machine).",
        "",
        *rows,
        END,
    ])


def write_docs(r: dict[str, Any]) -> None:
    perfdoc.replace_block(
        "rewind", "bench/bench_rewind.py", section(r), heading="## Rewind",
        intro=("`python bench/bench_rewind.py --write-docs`: rewinding a turn (docs/rewind.md) and\n"
            "what the timeline adds to every turn, each figure with its baseline measured in\n"
            "the same run.\n\n"),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--docs-only", action="store_true",
                        help="write docs/performance.md from bench/results/rewind.json")
    args = parser.parse_args()
    if args.docs_only:
        write_docs(json.loads(RESULTS.read_text()))
        return 0
    report = asyncio.run(run(args.files, 2 if args.quick else 5))
    report["engine"] = perfdoc.engine_version()
    perfdoc.save_results(RESULTS, report)
    if args.write_docs:
        write_docs(report)
        print(f"wrote {perfdoc.PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
