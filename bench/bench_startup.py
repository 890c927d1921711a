"""Start-up time of the terminal REPL: from launching ``pygent`` to its first prompt.

Each run starts the installed ``pygent`` script in a pseudo-terminal (``--no-docker``,
a private HOME, the scripted OpenAI-compatible server as the model) and stops the
clock when ``vc> `` appears; the baseline, measured in the same run and the same way,
is ``python -c pass`` from start to exit. Medians of N runs, after one warm-up run
each (so both read from a warm page cache).

    python bench/bench_startup.py [--runs N] [--quick]

Writes ``bench/results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.openai_server import ScriptedOpenAIServer  # noqa: E402

PROMPT = "vc> "
TARGET_MS = 400.0


def _pygent_argv() -> list[str]:
    script = Path(sys.executable).with_name("pygent")
    if not script.is_file():
        raise SystemExit(
            f"the pygent script is not installed next to {sys.executable}: pip install -e ."
        )
    return [str(script), "--no-docker"]


def _env(server: ScriptedOpenAIServer, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYGENT_", "OPENAI_", "XDG_"))}
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        TERM="xterm-256color",
        OPENAI_BASE_URL=server.base_url,
        OPENAI_API_KEY="sk-bench",
        PYGENT_MODEL="test-model",
        PROMPT_TOOLKIT_NO_CPR="1",
    )
    return env


def time_to_prompt(env: dict[str, str], cwd: Path) -> float:
    """Seconds from spawning pygent to its first prompt (then it is told to quit)."""
    argv = _pygent_argv()
    start = time.perf_counter()
    child = pexpect.spawn(
        argv[0],
        argv[1:],
        env=env,
        cwd=str(cwd),
        encoding="utf-8",
        codec_errors="replace",
        timeout=30,
    )
    child.expect_exact(PROMPT)
    elapsed = time.perf_counter() - start
    child.send("\x04")  # Ctrl-D: a clean exit, so no sandbox is left behind
    child.expect(pexpect.EOF)
    child.close()
    return elapsed


def time_python_pass(env: dict[str, str], cwd: Path) -> float:
    """Seconds from spawning ``python -c pass`` in a pty to its exit."""
    start = time.perf_counter()
    child = pexpect.spawn(sys.executable, ["-c", "pass"], env=env, cwd=str(cwd), timeout=30)
    child.expect(pexpect.EOF)
    elapsed = time.perf_counter() - start
    child.close()
    return elapsed


def _summary(samples: list[float]) -> dict[str, object]:
    ms = [round(s * 1000, 1) for s in samples]
    return {
        "median_ms": round(statistics.median(samples) * 1000, 1),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "samples_ms": ms,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="measured runs of each (default 21)")
    parser.add_argument("--quick", action="store_true", help="5 runs")
    args = parser.parse_args(argv)
    runs = 5 if args.quick else args.runs
    with ScriptedOpenAIServer() as server, tempfile.TemporaryDirectory() as tmp:
        home, cwd = Path(tmp) / "home", Path(tmp) / "cwd"
        home.mkdir()
        cwd.mkdir()
        env = _env(server, home)
        time_to_prompt(env, cwd)  # warm-up: page cache, .pyc files, the history file
        time_python_pass(env, cwd)
        pygent_times, python_times = [], []
        for _ in range(runs):  # interleaved, so a busy moment hits both alike
            pygent_times.append(time_to_prompt(env, cwd))
            python_times.append(time_python_pass(env, cwd))
    pygent, baseline = _summary(pygent_times), _summary(python_times)
    result = {
        "benchmark": "pygent --no-docker: launch to first prompt, in a pty",
        "runs": runs,
        "pygent": pygent,
        "python_c_pass": baseline,
        "overhead_ms": round(float(pygent["median_ms"]) - float(baseline["median_ms"]), 1),
        "target_ms": TARGET_MS,
        "meets_target": float(pygent["median_ms"]) < TARGET_MS,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
    }
    out = ROOT / "bench" / "results" / "startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"pygent to first prompt: median {pygent['median_ms']} ms "
        f"(min {pygent['min_ms']}, max {pygent['max_ms']}); python -c pass: median "
        f"{baseline['median_ms']} ms; target < {TARGET_MS:.0f} ms; written to {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
