"""Attaching the terminal to a long session: ``pygent attach`` on a session of 1,000 messages.

A real ``pygent serve`` (private host folder, local runtime) holds one session that a
client drove through 250 turns against the scripted model server (each: a prompt, a
``bash`` call, its output and an answer: 1,000 messages). Then, in turn:

- ``python -c pass``, launch to exit (the floor);
- ``pygent/session/transcript`` alone, from a client already connected (the host's part);
- ``pygent attach ID`` in a pseudo-terminal: from launch to the last answer on screen,
  and its own figure from connecting to the transcript rendered (``PYGENT_ATTACH_TIMING``),
  with the CPU time it used from launch to then (which, unlike the wall clock, a loaded
  machine hardly changes), against ``python -c pass``'s CPU time.

Writes ``bench/results/attach.json`` and the "## Attach" section of ``docs/performance.md``.
Usage: ``python bench/bench_attach.py [--turns N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import perfdoc  # noqa: E402
import pexpect  # noqa: E402

from pygent.lsp.client import RpcClient  # noqa: E402
from pygent.lsp.host_socket import socket_path, wait_until_answers  # noqa: E402
from pygent.repl.attach import FULL_TURNS  # noqa: E402
from tests.openai_server import ScriptedOpenAIServer  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "attach.json"
SECTION = "## Attach"
TARGET_MS = 200
LAST = "the very last answer of the session"
_TIMING = re.compile(r"\[attach\] (\d+) updates on screen in ([\d.]+) ms \(cpu (\d+) ms")


def _env(base: Path, host_dir: Path, server: ScriptedOpenAIServer) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
        "HOME": str(base), "XDG_DATA_HOME": str(base / "data"), "XDG_CONFIG_HOME": str(base / "cfg"),
        "PYGENT_HOST_DIR": str(host_dir), "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-bench", "PYGENT_MODEL": "bench", "PYGENT_USE_DOCKER": "0",
        "PYGENT_APPROVAL_MODE": "never", "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1",
    }


async def _fill(sock: Path, server: ScriptedOpenAIServer, turns: int) -> tuple[str, float, int]:
    """A session of ``turns`` x 4 messages; returns its id, the transcript fetch time
    (ms, median of 5) and the transcript's length."""
    client = await RpcClient.connect_unix(sock)
    await client.initialize("bench")
    sid = (await client.request("pygent/session/new", {"runtime": "local"}))["sessionId"]
    for i in range(turns):
        server.add_tool_call("bash", {"cmd": f"echo step {i}"})
        server.add_text(LAST if i == turns - 1 else f"answer {i}: done, the step printed its number")
        result = await client.request("pygent/session/prompt", {"sessionId": sid, "prompt": f"step {i}"})
        assert result["stopReason"] == "end_turn", result
    fetch = []
    for _ in range(5):
        started = time.perf_counter()
        transcript = await client.request("pygent/session/transcript", {"sessionId": sid})
        fetch.append((time.perf_counter() - started) * 1000)
    await client.aclose()
    return sid, statistics.median(fetch), len(transcript["events"])


def _attach_round(env: dict[str, str], sid: str) -> tuple[float, float, int, float]:
    started = time.perf_counter()
    child = pexpect.spawn(sys.executable, ["-m", "pygent", "attach", sid], env=env,
                          encoding="utf-8", codec_errors="replace", dimensions=(50, 120), timeout=60)
    child.expect(LAST)
    on_screen = (time.perf_counter() - started) * 1000
    child.expect(_TIMING)
    count, own, cpu = int(child.match.group(1)), float(child.match.group(2)), float(child.match.group(3))
    child.expect("attached> ")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    return on_screen, own, count, cpu


def _floor() -> tuple[float, float]:
    """``python -c pass``: wall clock and CPU time (ms)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


def run(turns: int, rounds: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="pgb-", dir="/tmp"))
    server = ScriptedOpenAIServer()
    server.start()
    env = _env(base, base / "h", server)
    host = subprocess.Popen([sys.executable, "-m", "pygent", "serve", "--idle-timeout", "0"],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(base / "host.log", "wb"))
    try:
        assert wait_until_answers(base / "h", 60, alive=lambda: host.poll() is None)
        sid, fetch_ms, events = asyncio.run(_fill(socket_path(base / "h"), server, turns))
        _attach_round(dict(env, PYGENT_ATTACH_TIMING="1"), sid)  # warm-up
        floor, floor_cpu, screen, own, cpu = [], [], [], [], []
        count = 0
        for _ in range(rounds):
            wall, used = _floor()
            floor.append(wall)
            floor_cpu.append(used)
            a, b, count, c = _attach_round(dict(env, PYGENT_ATTACH_TIMING="1"), sid)
            screen.append(a)
            own.append(b)
            cpu.append(c)
    finally:
        host.terminate()
        host.wait(60)
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    med = lambda values: round(statistics.median(values), 1)  # noqa: E731
    return {
        "turns": turns, "messages": turns * 4, "transcript_updates": events, "rendered": count,
        "rounds": rounds, "python_c_pass_ms": med(floor), "transcript_request_ms": round(fetch_ms, 1),
        "attach_connect_to_rendered_ms": med(own), "attach_launch_to_screen_ms": med(screen),
        "python_c_pass_cpu_ms": med(floor_cpu), "attach_cpu_to_screen_ms": med(cpu),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load": os.getloadavg()[0],
    }


def write_doc(r: dict[str, Any]) -> None:
    own = r["attach_connect_to_rendered_ms"]
    verdict = "met" if own < TARGET_MS else f"missed by {own - TARGET_MS:.0f} ms"
    section = f"""{SECTION}

`python bench/bench_attach.py`: a real `pygent serve` holds a session of {r["messages"]:,}
messages ({r["turns"]} turns of a prompt, a `bash` call, its output and an answer;
{r["transcript_updates"]:,} updates in its transcript), and `pygent attach` joins it in a
pseudo-terminal. Medians of {r["rounds"]} rounds, alternating with `python -c pass`:

| measurement | ms | x `python -c pass` |
|---|---:|---:|
| `python -c pass`, launch to exit (baseline) | {r["python_c_pass_ms"]} | 1.0 |
| `pygent/session/transcript` from a connected client (the host's part) | {r["transcript_request_ms"]} | {r["transcript_request_ms"] / r["python_c_pass_ms"]:.1f} |
| `pygent attach`: connect, fetch and render the transcript | {own} | {own / r["python_c_pass_ms"]:.1f} |
| `pygent attach`: launch to the last answer on screen | {r["attach_launch_to_screen_ms"]} | {r["attach_launch_to_screen_ms"] / r["python_c_pass_ms"]:.1f} |
| CPU time: `python -c pass` / `pygent attach` from launch to the transcript on screen | {r["python_c_pass_cpu_ms"]} / {r["attach_cpu_to_screen_ms"]} | {r["attach_cpu_to_screen_ms"] / r["python_c_pass_cpu_ms"]:.1f} (CPU) |

Target: the transcript on screen within {TARGET_MS} ms of attaching: {verdict}. The launch
row adds the interpreter and the command line's imports. How attaching stays quick: the
turns before the last {FULL_TURNS} are written as plain lines straight from the host's
JSON (not structured into events); only those last turns are rendered with rich (panels,
Markdown), without a live region per event, and the screen goes out in one write; the
updates are read without the protocol module's cattrs converter
(`pygent/repl/update_reader.py`); rich and the Markdown parser are imported on a thread
while the host prepares the transcript, and the line editor (prompt_toolkit) only after
the screen is written.
{r["machine"]}; 1-minute load average {r["load"]:.2f}. Raw figures: `bench/results/attach.json`.
"""
    perfdoc.replace_section(SECTION, section)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="50 turns, 3 rounds")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/performance.md")
    args = parser.parse_args()
    turns, rounds = (50, 3) if args.quick else (args.turns, args.rounds)
    results = run(turns, rounds)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_doc:
        write_doc(results)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
