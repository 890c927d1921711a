"""Session store benchmark: append latency vs full rewrite, and loading a 100 MB history.

Usage: python bench/bench_store.py [--quick] [--dir DIR] [--load-mb 100]

For histories of 10, 1,000 and 10,000 messages it measures, in the same run and on
the same disk: ``HistoryFile.append`` (one write + fdatasync), the atomic full rewrite
a non-append store would need per message (temp file + fsync + rename + directory
fsync, i.e. ``HistoryFile.rewrite``), and the naive ``json.dump`` rewrite in place
that the upstream project did (no fsync: fast, but see bench/killnine.py). Then it
builds a history of about 100 MB and times loading it (read-only and opened for
writing) in a fresh process, with that process's peak RSS, plus one append to it.
Results: a table on stdout and bench/results/store.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pygent.store import HistoryFile  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "store.json"
LENGTHS = (10, 1_000, 10_000)


def _message(i: int, rng: random.Random) -> dict[str, Any]:
    """A chat message of realistic shape; about 1 KB on average."""
    kind = i % 4
    if kind == 0:
        return {"role": "user", "content": f"step {i}: please look at module_{i}.py " * 3}
    if kind == 1:
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {
                        "name": "bash",
                        "arguments": json.dumps({"cmd": f"pytest -k t{i}"}),
                    },
                }
            ],
        }
    if kind == 2:
        lines = rng.randint(5, 60)
        return {
            "role": "tool",
            "tool_call_id": f"call_{i - 1}",
            "content": "\n".join(f"tests/test_{j}.py::test_case PASSED" for j in range(lines)),
        }
    return {"role": "assistant", "content": "All tests pass. " * rng.randint(5, 40)}


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {
        "median_ms": round(statistics.median(ordered) / 1e6, 3),
        "p99_ms": round(p99 / 1e6, 3),
        "samples": len(ordered),
    }


def _time(fn: Callable[[], None], samples: int) -> dict[str, float]:
    out = []
    for _ in range(samples):
        start = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - start)
    return _percentiles(out)


def _naive_rewrite(path: Path, messages: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(messages, fh)


def bench_lengths(workdir: Path, samples: int, rewrite_samples: int) -> list[dict[str, Any]]:
    rng = random.Random(1)
    rows = []
    for n in LENGTHS:
        messages = [_message(i, rng) for i in range(n)]
        path = workdir / f"append-{n}.jsonl"
        history = HistoryFile(path)
        history.append_many(messages)
        extra = _message(n + 1, rng)
        append = _time(functools.partial(history.append, extra), samples)
        size = path.stat().st_size
        full = messages + [extra]
        k = rewrite_samples if n >= 10_000 else samples
        rewrite = _time(functools.partial(history.rewrite, full), k)
        history.close()

        naive_path = workdir / f"naive-{n}.json"
        naive_stats = _time(functools.partial(_naive_rewrite, naive_path, full), k)
        rows.append(
            {
                "messages": n,
                "file_bytes": size,
                "append": append,
                "atomic_rewrite": rewrite,
                "naive_rewrite_no_fsync": naive_stats,
                "rewrite_over_append": round(rewrite["median_ms"] / append["median_ms"], 1),
            }
        )
    return rows


LOADER = """
import json, resource, sys, time
from pathlib import Path
from pygent.store import HistoryFile
path, mode = Path(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
if mode == "read":
    view = HistoryFile.read(path)
    messages = view.load()
else:
    history = HistoryFile(path)
    messages = history.load()
loaded = time.perf_counter() - start
out = {"seconds": round(loaded, 3), "messages": len(messages),
       "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
if mode == "write":
    start = time.perf_counter()
    history.append({"role": "user", "content": "one more"})
    out["append_ms"] = round((time.perf_counter() - start) * 1e3, 3)
    history.close()
print(json.dumps(out))
"""


def bench_big_load(workdir: Path, megabytes: int) -> dict[str, Any]:
    rng = random.Random(2)
    path = workdir / "big.jsonl"
    target = megabytes * 1024 * 1024
    built = time.perf_counter()
    with HistoryFile(path, redact=str) as history:
        i = 0
        while path.stat().st_size < target:
            batch = [_message(i + j, rng) for j in range(2_000)]
            history.append_many(batch)
            i += len(batch)
    built = time.perf_counter() - built
    out: dict[str, Any] = {
        "file_mb": round(path.stat().st_size / 1024 / 1024, 1),
        "build_seconds": round(built, 1),
    }
    for mode in ("read", "write"):
        result = subprocess.run(
            [sys.executable, "-c", LOADER, str(path), mode],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        out[f"load_{mode}"] = json.loads(result.stdout)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (a real disk)")
    parser.add_argument("--load-mb", type=int, default=100)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    samples, rewrite_samples = (50, 5) if args.quick else (300, 20)
    with tempfile.TemporaryDirectory(prefix="pygent-bench-store-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        rows = bench_lengths(workdir, samples, rewrite_samples)
        big = bench_big_load(workdir, args.load_mb)

    print(
        f"{'messages':>8} {'file KB':>8} {'append med/p99 ms':>18} "
        f"{'atomic rewrite med/p99 ms':>26} {'naive dump med ms':>17} {'rewrite/append':>14}"
    )
    for row in rows:
        a, r, nv = row["append"], row["atomic_rewrite"], row["naive_rewrite_no_fsync"]
        print(
            f"{row['messages']:>8} {row['file_bytes'] // 1024:>8} "
            f"{a['median_ms']:>8.3f} / {a['p99_ms']:<7.3f} "
            f"{r['median_ms']:>12.3f} / {r['p99_ms']:<11.3f} "
            f"{nv['median_ms']:>17.3f} {row['rewrite_over_append']:>13.1f}x"
        )
    for mode in ("read", "write"):
        result = big[f"load_{mode}"]
        extra = f", then one append {result['append_ms']} ms" if "append_ms" in result else ""
        print(
            f"load {big['file_mb']} MB history ({mode}): {result['seconds']} s, "
            f"{result['messages']} messages, peak RSS {result['max_rss_mb']} MB{extra}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "quick": args.quick,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "lengths": rows,
        "big_history": big,
    }
    args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
