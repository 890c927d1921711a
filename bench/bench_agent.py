"""Agent-loop overhead per step at history lengths 10 and 1000.

The scripted OpenAI-compatible server answers instantly, so what is measured is
Pygent's own cost per step (building the request, streaming, events, appending to
the history file) next to a baseline measured in the same run: the bare ``openai``
SDK making the same streamed request with the same messages.

    python bench/bench_agent.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402

from pygent import Agent  # noqa: E402
from pygent.runtime import Runtime  # noqa: E402
from pygent.settings import load_settings  # noqa: E402
from tests.openai_server import ScriptedOpenAIServer, text_reply  # noqa: E402


def _filler(n: int) -> list[dict]:
    out = []
    for i in range(n // 2):
        out.append({"role": "user", "content": f"question {i} " + "x" * 200})
        out.append({"role": "assistant", "content": f"answer {i} " + "y" * 200})
    return out


async def _raw_sdk(server: ScriptedOpenAIServer, messages: list[dict], n: int) -> list[float]:
    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=server.base_url, max_retries=0)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        stream = await client.chat.completions.create(model="m", messages=messages, stream=True)
        async for _chunk in stream:
            pass
        times.append(time.perf_counter() - t0)
    await client.close()
    return times


def _agent_steps(server: ScriptedOpenAIServer, history_len: int, n: int, tmp: Path) -> list[float]:
    env = {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-bench",
        "PYGENT_MODEL": "m",
        "PYGENT_USE_DOCKER": "0",
    }
    settings = load_settings(environ=env, cwd=tmp)
    rt = Runtime(settings=settings)
    agent = Agent(runtime=rt, settings=settings, history_file=tmp / f"h{history_len}.jsonl")
    agent.history.extend(_filler(history_len))
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        agent.turn(f"step {i}")
        times.append(time.perf_counter() - t0)
        # keep the history length constant so every step measures the same size
        del agent.history[-2:]
    agent.close()
    rt.cleanup()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 30 if args.quick else 150
    rows = []
    with ScriptedOpenAIServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.set_responder(lambda body: text_reply("ok"))
        for length in (10, 1000):
            messages = [
                {"role": "system", "content": "s"},
                *_filler(length),
                {"role": "user", "content": "q"},
            ]
            raw = asyncio.run(_raw_sdk(server, messages, n))
            agent = _agent_steps(server, length, n, Path(tmp))
            r, a = statistics.median(raw) * 1000, statistics.median(agent) * 1000
            rows.append(
                {
                    "history": length,
                    "raw_sdk_ms": round(r, 3),
                    "agent_step_ms": round(a, 3),
                    "overhead_ms": round(a - r, 3),
                    "ratio": round(a / r, 2),
                }
            )
    print(f"{'history':>8} {'raw SDK ms':>11} {'agent ms':>9} {'overhead':>9} {'ratio':>6}")
    for row in rows:
        print(
            f"{row['history']:>8} {row['raw_sdk_ms']:>11.2f} {row['agent_step_ms']:>9.2f} "
            f"{row['overhead_ms']:>9.2f} {row['ratio']:>6.2f}"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "agent.json").write_text(json.dumps({"iterations": n, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
