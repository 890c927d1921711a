"""Start-up time of the terminal REPL: from launching ``pygent`` to its first prompt.

Each run starts the installed ``pygent`` script in a pseudo-terminal (``--no-docker``,
a private HOME, the scripted OpenAI-compatible server as the model) and stops the
clock when ``vc> `` appears; the baseline, measured in the same run and the same way,
is ``python -c pass`` from start to exit. Runs alternate between the two, after one
warm-up run each (so both read from a warm page cache). Wall time depends on what
else the machine does, so the CPU time each used is recorded too, with the load.

    python bench/bench_startup.py [--runs N] [--quick]

Writes ``bench/results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
_TICK = os.sysconf("SC_CLK_TCK")


def _pygent_argv() -> list[str]:
    script = Path(sys.executable).with_name("pygent")
    if not script.is_file():
        raise SystemExit(f"no pygent script next to {sys.executable}: pip install -e .")
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
        PROMPT_TOOLKIT_NO_CPR="1",  # nothing answers cursor-position requests in pexpect
    )
    return env


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def time_to_prompt(env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds from spawning pygent to its first prompt; then it quits."""
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
    cpu = _cpu_seconds(child.pid)
    child.send("\x04")  # Ctrl-D: a clean exit, so no sandbox is left behind
    child.expect(pexpect.EOF)
    child.close()
    return elapsed, cpu


def time_python_pass(env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``python -c pass`` spawned in a pty, start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    child = pexpect.spawn(sys.executable, ["-c", "pass"], env=env, cwd=str(cwd), timeout=30)
    child.expect(pexpect.EOF)
    elapsed = time.perf_counter() - start
    child.close()  # waits for it, so its CPU time is in RUSAGE_CHILDREN
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _summary(runs: list[tuple[float, float]]) -> dict[str, object]:
    wall = [round(w * 1000, 1) for w, _ in runs]
    return {
        "median_ms": round(statistics.median(wall), 1),
        "min_ms": min(wall),
        "max_ms": max(wall),
        "cpu_median_ms": round(statistics.median(c for _, c in runs) * 1000, 1),
        "samples_ms": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="measured runs of each (default 21)")
    parser.add_argument("--quick", action="store_true", help="5 runs")
    args = parser.parse_args(argv)
    runs = 5 if args.quick else args.runs
    load = [os.getloadavg()[0]]
    with ScriptedOpenAIServer() as server, tempfile.TemporaryDirectory() as tmp:
        home, cwd = Path(tmp) / "home", Path(tmp) / "cwd"
        home.mkdir()
        cwd.mkdir()
        env = _env(server, home)
        time_to_prompt(env, cwd)  # warm-up: page cache, .pyc files, the history file
        time_python_pass(env, cwd)
        pygent_runs, python_runs = [], []
        for _ in range(runs):  # alternating, so a busy moment hits both alike
            pygent_runs.append(time_to_prompt(env, cwd))
            python_runs.append(time_python_pass(env, cwd))
    load.append(os.getloadavg()[0])
    pygent, baseline = _summary(pygent_runs), _summary(python_runs)
    result = {
        "benchmark": "pygent --no-docker: launch to first prompt, in a pty",
        "runs": runs,
        "pygent": pygent,
        "python_c_pass": baseline,
        "overhead_ms": round(float(pygent["median_ms"]) - float(baseline["median_ms"]), 1),
        "target_ms": TARGET_MS,
        "meets_target": float(pygent["median_ms"]) < TARGET_MS,
        "load_average_1min": [round(x, 2) for x in load],
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
    }
    out = ROOT / "bench" / "results" / "startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"pygent to first prompt: median {pygent['median_ms']} ms (min {pygent['min_ms']}, "
        f"max {pygent['max_ms']}; CPU {pygent['cpu_median_ms']} ms); python -c pass: median "
        f"{baseline['median_ms']} ms (CPU {baseline['cpu_median_ms']} ms); target < "
        f"{TARGET_MS:.0f} ms; load {result['load_average_1min']}; written to {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
