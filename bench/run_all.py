"""Run every benchmark in one go: ``python bench/run_all.py [--full]``.

Each bench measures its own baseline in the same run and writes its figures to
``bench/results/<name>.json``; docs/performance.md quotes them. ``--quick`` (the
default here) keeps the whole run to a few minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = ["--quick"]
DOCS = ["--write-docs"]  # benches that write docs/performance.md only when asked
#: (script, its arguments in quick mode, its arguments with --full): every bench writes
#: its own part of docs/performance.md (bench/perfdoc.py) with the baseline of its run.
ORDER: list[tuple[str, list[str], list[str]]] = [
    ("bench_runtime.py", QUICK, []),
    ("bench_agent.py", QUICK, []),
    ("bench_store.py", QUICK, []),
    ("killnine.py", [], []),
    ("bench_tasks.py", QUICK, []),
    ("bench_lsp.py", QUICK, []),
    ("bench_lsp_launch.py", QUICK, []),
    ("bench_channel.py", QUICK, []),
    ("bench_attach.py", QUICK, []),
    ("bench_startup.py", QUICK, []),
    ("bench_real_server.py", QUICK, []),
    ("bench_launch.py", QUICK + DOCS, DOCS),
    ("bench_cow.py", QUICK + DOCS, DOCS),
    ("bench_rewind.py", QUICK + DOCS, DOCS),
    ("bench_long_session.py", DOCS, DOCS),
    ("bench_acp.py", QUICK, []),
    ("bench_mcp.py", QUICK + DOCS, DOCS),
    ("bench_diagnostics.py", QUICK + DOCS, DOCS),
    ("bench_sandboxes.py", QUICK + DOCS, DOCS),
    ("bench_pool.py", DOCS, DOCS),
    ("bench_remote.py", DOCS, DOCS),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="more iterations (slower, steadier)")
    failed = []
    parser.add_argument("only", nargs="*", help="run only these benches (e.g. bench_rewind.py)")
    args = parser.parse_args()
    for name, quick, full in ORDER:
        if args.only and name not in args.only:
            continue
        script = HERE / name
        cmd = [sys.executable, str(script), *(full if args.full else quick)]
        print(f"\n=== {name} ===", flush=True)
        start = time.monotonic()
        if subprocess.run(cmd, cwd=HERE.parent).returncode != 0:
            failed.append(name)
        print(f"({time.monotonic() - start:.1f} s)", flush=True)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
