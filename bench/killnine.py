"""kill -9 harness: SIGKILLs a process writing a session at random moments and audits the file.

Usage: python bench/killnine.py [TRIALS] [--quick] [--seed N] [--dir DIR] [--strict]

Each trial starts a child that resumes the session file, then writes a scripted
conversation (user message, assistant tool calls, a pause "running" the tool, tool
results, answer; now and then a full rewrite). The child reports every append that
returned over a pipe before it starts the next one; the parent SIGKILLs it at a
random moment and then loads the file and counts corrupt files, completed messages
that are missing and tool calls left without a result. The same trials run against a
naive writer (``json.dump`` of the whole list, rewritten in place, as the upstream
project did) to show that the harness does detect corruption.

SIGKILL leaves the page cache intact, so this covers process crashes, not power loss
(see docs/sessions.md). Results: a table on stdout and bench/results/killnine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pygent.errors import SessionError  # noqa: E402
from pygent.store import INTERRUPTED_RESULT, HistoryFile  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "killnine.json"
TRIALS_PER_FILE = 25  # start a fresh file now and then so loads stay quick
_SEQ = re.compile(r"^\[seq=(\d+)\]")


# --- the child: a scripted session writer ----------------------------------------------------


def _turn(seq: int, rng: random.Random) -> list[tuple[int, dict[str, Any]]]:
    """One scripted turn: (seq, message) pairs; every message's content starts with its seq."""
    calls = [f"call_{seq}_{i}" for i in range(rng.choice((1, 1, 2)))]
    out: list[tuple[int, dict[str, Any]]] = [
        (seq, {"role": "user", "content": f"[seq={seq}] please run the tests ({rng.random()})"}),
        (
            seq + 1,
            {
                "role": "assistant",
                "content": f"[seq={seq + 1}] running them",
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "bash", "arguments": json.dumps({"cmd": "pytest"})},
                    }
                    for call_id in calls
                ],
            },
        ),
    ]
    n = seq + 2
    for call_id in calls:
        # Now and then a large output: SIGKILL can cut a multi-megabyte write short
        # (the kernel checks for it between pages), which leaves a torn last line.
        roll = rng.random()
        if roll < 0.01:
            size = 3_000_000
        elif roll < 0.05:
            size = 150_000
        else:
            size = rng.choice((200, 200, 200, 2_000, 20_000))
        out.append(
            (
                n,
                {
                    "role": "tool",
                    "tool_call_id": call_id,
                    "content": f"[seq={n}] " + "passed ñ " * (size // 9),
                },
            )
        )
        n += 1
    out.append((n, {"role": "assistant", "content": f"[seq={n}] all green"}))
    return out


def _ack(text: str) -> None:
    os.write(1, text.encode() + b"\n")


def child(mode: str, path: Path, seq: int, seed: int) -> None:
    """Write the scripted session to ``path`` forever (until killed), acking each append."""
    rng = random.Random(seed)
    if mode == "jsonl":
        history = HistoryFile(path)
        messages = history.load()
    else:
        try:
            with open(path, encoding="utf-8") as fh:
                messages = json.load(fh)
        except (OSError, ValueError):
            messages = []  # what the upstream loader did with a damaged file
    _ack("ready")
    while True:
        for n, message in _turn(seq, rng):
            if message["role"] == "tool":
                time.sleep(rng.uniform(0, 0.003))  # the tool "runs" between call and result
            messages.append(message)
            if mode == "jsonl":
                history.append(message)
            else:
                with open(path, "w", encoding="utf-8") as fh:
                    json.dump(messages, fh)
            _ack(str(n))
            seq = n + 1
        if mode == "jsonl" and rng.random() < 0.03:
            history.rewrite(messages)  # compaction / reset path: must be atomic
            _ack("rewrite")


# --- the parent: kill and audit ---------------------------------------------------------------------


def _seqs(messages: list[dict[str, Any]]) -> set[int]:
    out = set()
    for message in messages:
        match = _SEQ.match(str(message.get("content") or ""))
        if match:
            out.add(int(match.group(1)))
    return out


def _dangling(messages: list[dict[str, Any]]) -> int:
    """Tool calls without a tool result right after their assistant message."""
    count = 0
    for i, message in enumerate(messages):
        ids = [c.get("id") for c in message.get("tool_calls") or []]
        answered = set()
        j = i + 1
        while j < len(messages) and messages[j].get("role") == "tool":
            answered.add(messages[j].get("tool_call_id"))
            j += 1
        count += sum(1 for call_id in ids if call_id not in answered)
    return count


def _audit(mode: str, path: Path) -> dict[str, Any]:
    """Load the file as Pygent (or the naive loader) would after the crash."""
    if mode == "jsonl":
        try:
            history = HistoryFile.read(path)
            messages = history.load()
        except SessionError as exc:
            return {"corrupt": True, "error": str(exc), "messages": []}
        report = history.report
        return {
            "corrupt": report.damaged,
            "torn": report.torn_bytes > 0,
            "interrupted": {
                m.get("tool_call_id")
                for m in messages
                if m.get("role") == "tool" and m.get("content") == INTERRUPTED_RESULT
            },
            "messages": messages,
        }
    if not path.exists():
        return {"corrupt": False, "messages": []}
    try:
        with open(path, encoding="utf-8") as fh:
            messages = json.load(fh)
    except ValueError as exc:
        return {"corrupt": True, "error": f"{type(exc).__name__}: {exc}"[:200], "messages": []}
    return {"corrupt": False, "messages": messages}


def run(mode: str, trials: int, seed: int, workdir: Path, max_delay: float) -> dict[str, Any]:
    rng = random.Random(seed)
    stats = {
        "trials": trials,
        "corrupt_files": 0,
        "lost_completed": 0,
        "dangling_after_load": 0,
        "torn_tails_dropped": 0,
        "interrupted_calls_repaired": 0,
        "acked_messages": 0,
        "rewrites": 0,
        "child_errors": 0,
        "examples": [],
    }
    lost: set[tuple[int, int]] = set()
    interrupted: set[str] = set()  # distinct calls: a repaired call shows up in every later audit
    next_seq = 1
    acked: set[int] = set()
    path = workdir / f"{mode}-0.jsonl"
    for trial in range(trials):
        if trial % TRIALS_PER_FILE == 0:
            path = workdir / f"{mode}-{trial // TRIALS_PER_FILE}.jsonl"
            acked = set()
        proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                mode,
                str(path),
                str(next_seq),
                str(seed + trial),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        if rng.random() < 0.1:
            time.sleep(rng.uniform(0, 0.25))  # sometimes kill during start-up, load or repair
            lines = []
        else:
            lines = [proc.stdout.readline()]
            time.sleep(rng.uniform(0, max_delay))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lines += proc.stdout.read().splitlines()
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stdout.close()
        proc.stderr.close()
        if proc.returncode != -signal.SIGKILL:
            stats["child_errors"] += 1
            stats["examples"].append(
                f"trial {trial}: child exited {proc.returncode}: {stderr[-300:]}"
            )
        for line in lines:
            text = line.strip().decode()
            if text.isdigit():
                acked.add(int(text))
                stats["acked_messages"] += 1
                next_seq = max(next_seq, int(text) + 1)
            elif text == "rewrite":
                stats["rewrites"] += 1
        next_seq += 100  # unacknowledged in-flight messages must not reuse a seq
        audit = _audit(mode, path)
        if audit["corrupt"]:
            stats["corrupt_files"] += 1
            if len(stats["examples"]) < 5:
                stats["examples"].append(f"trial {trial}: {audit.get('error', 'damaged lines')}")
        stats["torn_tails_dropped"] += int(audit.get("torn", False))
        interrupted |= audit.get("interrupted", set())
        stats["dangling_after_load"] += _dangling(audit["messages"])
        present = _seqs(audit["messages"])
        lost |= {(trial // TRIALS_PER_FILE, s) for s in acked - present}
    stats["lost_completed"] = len(lost)
    stats["interrupted_calls_repaired"] = len(interrupted)
    return stats


def _table(results: dict[str, dict[str, Any]]) -> str:
    columns = [
        ("corrupt_files", "corrupt files"),
        ("lost_completed", "lost completed msgs"),
        ("dangling_after_load", "dangling tool calls"),
        ("torn_tails_dropped", "torn tails dropped"),
        ("interrupted_calls_repaired", "calls marked interrupted"),
        ("acked_messages", "acked msgs"),
        ("rewrites", "rewrites"),
        ("child_errors", "child errors"),
    ]
    names = {"jsonl": "HistoryFile (append-only JSONL)", "naive": "naive json.dump in place"}
    head = f"{'writer':34} {'trials':>6} " + " ".join(
        f"{label:>{len(label)}}" for _, label in columns
    )
    rows = [head, "-" * len(head)]
    for mode, stats in results.items():
        cells = " ".join(f"{stats[key]:>{len(label)}}" for key, label in columns)
        rows.append(f"{names[mode]:34} {stats['trials']:>6} {cells}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trials", nargs="?", type=int, default=None, help="kills per writer (200)")
    parser.add_argument("--quick", action="store_true", help="50 kills per writer")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--dir", type=Path, default=None, help="where the session files go")
    parser.add_argument("--max-delay", type=float, default=0.12, help="latest kill, seconds")
    parser.add_argument("--strict", action="store_true", help="exit 1 if HistoryFile lost data")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=4, metavar=("MODE", "PATH", "SEQ", "SEED"))
    args = parser.parse_args(argv)
    if args.child:
        mode, path, seq, seed = args.child
        child(mode, Path(path), int(seq), int(seed))
        return 0
    trials = args.trials or (50 if args.quick else 200)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="pygent-killnine-", dir=args.dir) as tmp:
        for mode in ("jsonl", "naive"):
            started = time.monotonic()
            results[mode] = run(mode, trials, args.seed, Path(tmp), args.max_delay)
            results[mode]["seconds"] = round(time.monotonic() - started, 1)
    print(_table(results))
    for mode, stats in results.items():
        for example in stats["examples"][:3]:
            print(f"  {mode}: {example}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "trials_per_writer": trials,
        "seed": args.seed,
        "max_delay_s": args.max_delay,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "note": "SIGKILL keeps the page cache: process-crash class only, not power loss",
        "results": results,
    }
    args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    ours = results["jsonl"]
    failed = ours["corrupt_files"] or ours["lost_completed"] or ours["dangling_after_load"]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
