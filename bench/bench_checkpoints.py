"""Checkpoint benchmark: what a per-turn workspace checkpoint costs (ADVERSARIAL G10).

Usage: python bench/bench_checkpoints.py [--files N] [--turns N]

A workspace of N small source files (default 1,000, ~1 KB each): the first checkpoint
(every file read, hashed and copied), then one per "turn" with nothing changed, with 10
files changed, and the restore after ``rm -rf`` of half the files; plus the store's size
after the turns (bounded by ``keep``). Results: a table on stdout and
bench/results/checkpoints.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pygent.checkpoints import Checkpoints  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "checkpoints.json"


def _ms(samples: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(samples) * 1000, 2),
            "max_ms": round(max(samples) * 1000, 2), "n": len(samples)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="pygent-bench-cp-"))
    try:
        ws = tmp / "ws"
        for i in range(args.files):
            path = ws / f"pkg{i % 25}" / f"mod{i}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"def f{i}():\n    return {i}\n" * 40)
        size = sum(p.stat().st_size for p in ws.rglob("*") if p.is_file())
        cp = Checkpoints.for_workspace(tmp / "data", ws)
        started = time.perf_counter()
        cp.checkpoint()
        first = time.perf_counter() - started
        unchanged, changed = [], []
        for turn in range(args.turns):
            started = time.perf_counter()
            cp.checkpoint()
            unchanged.append(time.perf_counter() - started)
            for j in range(10):
                (ws / f"pkg{j}" / f"mod{j}.py").write_text(f"# turn {turn}\n" * 100)
            started = time.perf_counter()
            ident = cp.checkpoint()
            changed.append(time.perf_counter() - started)
        for sub in list(ws.iterdir())[:12]:
            shutil.rmtree(sub)
        started = time.perf_counter()
        report = cp.restore(str(ident))
        restore = time.perf_counter() - started
        results = {
            "files": args.files,
            "workspace_bytes": size,
            "first_checkpoint_ms": round(first * 1000, 1),
            "unchanged_turn": _ms(unchanged),
            "ten_files_changed_turn": _ms(changed),
            "restore_after_rm_rf_ms": round(restore * 1000, 1),
            "restored_files": len(report.restored),
            "store_bytes_after_turns": cp.disk_usage(),
            "checkpoints_kept": len(cp.list()),
            "python": platform.python_version(),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for key, value in results.items():
        print(f"{key:28} {value}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
