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
ORDER = ["bench_runtime.py", "bench_agent.py", "bench_store.py", "killnine.py", "bench_tasks.py",
         "bench_lsp.py", "bench_channel.py", "bench_startup.py", "bench_real_server.py",
         "bench_launch.py", "bench_cow.py"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="more iterations (slower, steadier)")
    args = parser.parse_args()
    failed = []
    for name in ORDER:
        script = HERE / name
        if not script.exists():
            continue
        cmd = [sys.executable, str(script)] + ([] if args.full else ["--quick"])
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
