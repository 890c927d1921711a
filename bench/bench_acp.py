"""ACP latency: token from the model server to ``agent_message_chunk``, against ``pygent lsp``.

Runs the real ``pygent acp`` and ``pygent lsp --stdio`` subprocesses against one streaming
OpenAI-compatible server in this process (:class:`bench_lsp.TokenServer`, which stamps
every token it sends), each with a raw JSON-RPC client, so a token's send time and its
update's arrival share one clock. The two front ends take turns (rounds of one prompt
each) so both see the same machine load; the LSP figure is the baseline.

Writes ``bench/results/acp.json`` and the "## Agent Client Protocol" section of
``docs/performance.md``. Usage: ``python bench/bench_acp.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_lsp import Client as LspClient  # noqa: E402 (a sibling script, not a package)
from bench_lsp import TokenServer, pct  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "acp.json"
PERF_DOC = ROOT / "docs" / "performance.md"
SECTION = "## Agent Client Protocol"
#: The most the ACP path may add over the LSP path (issue 16): p50 and p99 ratios.
TARGET_RATIO = 1.2


class AcpClient:
    """A raw ACP client: newline-delimited JSON-RPC over the agent's stdio."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.next_id = 0
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.received: dict[str, float] = {}
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return
            now = time.perf_counter()
            msg = json.loads(line)
            if "id" in msg and "method" not in msg:
                fut = self.pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif msg.get("method") == "session/update":
                update = msg["params"]["update"]
                if update.get("sessionUpdate") == "agent_message_chunk":
                    for token in update["content"]["text"].split():
                        self.received.setdefault(token, now)

    def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")

    async def request(self, method: str, params: Any) -> Any:
        self.next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        msg = await fut
        if "error" in msg:
            raise RuntimeError(msg["error"])
        return msg["result"]


async def _spawn(args: list[str], env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pygent",
        *args,
        "--log-level",
        "WARNING",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        limit=64 * 1024 * 1024,
    )


def _latencies(model: TokenServer, received: dict[str, float], tag: str) -> list[float]:
    return [
        (received[t] - s) * 1000
        for t, s in model.sent.items()
        if t.startswith(tag + "-") and t in received
    ]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 3),
        "p99_ms": round(pct(values, 99), 3),
        "max_ms": round(max(values), 3),
    }


async def run(quick: bool) -> dict[str, Any]:
    model = TokenServer()
    threading.Thread(target=model.serve_forever, daemon=True).start()
    base = Path(tempfile.mkdtemp(prefix="pygent-bench-acp-"))
    folder = base / "project"
    folder.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "HOME": str(base),
        "XDG_DATA_HOME": str(base / "data"),
        "OPENAI_BASE_URL": f"http://127.0.0.1:{model.server_address[1]}/v1",
        "OPENAI_API_KEY": "sk-bench",
        "PYGENT_MODEL": "bench",
        "PYGENT_USE_DOCKER": "0",
        "PYGENT_LSP_HOST": "never",  # the in-process server, not a host left running
    }
    acp_proc = await _spawn(["acp"], env, base)
    lsp_proc = await _spawn(["lsp", "--stdio"], env, base)
    acp, lsp = AcpClient(acp_proc), LspClient(lsp_proc)
    await acp.request("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
    acp_sid = (await acp.request("session/new", {"cwd": str(folder), "mcpServers": []}))[
        "sessionId"
    ]
    await lsp.request("initialize", {"capabilities": {}})
    lsp.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    lsp_sid = (await lsp.request("pygent/session/new", {"runtime": "local"}))["sessionId"]

    rounds, tokens = (3, 100) if quick else (8, 150)
    for r in range(rounds):  # alternate, so both see the same load over the run
        await acp.request(
            "session/prompt",
            {
                "sessionId": acp_sid,
                "prompt": [{"type": "text", "text": f"stream acp{r} {tokens} 0.01"}],
            },
        )
        await lsp.request(
            "pygent/session/prompt",
            {"sessionId": lsp_sid, "prompt": f"stream lsp{r} {tokens} 0.01"},
        )
    acp_ms = [v for r in range(rounds) for v in _latencies(model, acp.received, f"acp{r}")]
    lsp_ms = [v for r in range(rounds) for v in _latencies(model, lsp.received, f"lsp{r}")]
    lost = rounds * tokens * 2 - len(acp_ms) - len(lsp_ms)

    assert acp_proc.stdin is not None
    acp_proc.stdin.close()
    await lsp.request("shutdown", None)
    lsp.send({"jsonrpc": "2.0", "method": "exit", "params": None})
    await asyncio.wait_for(asyncio.gather(acp_proc.wait(), lsp_proc.wait()), 60)
    acp.reader.cancel()
    lsp.reader.cancel()
    model.shutdown()
    a, b = summary(acp_ms), summary(lsp_ms)
    return {
        "acp_token_to_agent_message_chunk": a,
        "lsp_token_to_session_update": b,
        "ratio_p50": round(a["p50_ms"] / b["p50_ms"], 3),
        "ratio_p99": round(a["p99_ms"] / b["p99_ms"], 3),
        "target_ratio": TARGET_RATIO,
        "tokens_lost": lost,
        "rounds": rounds,
        "tokens_per_round": tokens,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
    }


def write_doc(results: dict[str, Any]) -> None:
    a, b = results["acp_token_to_agent_message_chunk"], results["lsp_token_to_session_update"]
    m = results["machine"]
    verdict = (
        "within"
        if max(results["ratio_p50"], results["ratio_p99"]) <= TARGET_RATIO
        else "NOT within"
    )
    section = f"""{SECTION}

`python bench/bench_acp.py`: the real `pygent acp` and `pygent lsp --stdio` processes, each with a
raw JSON-RPC client, against one streaming model server in the bench process that stamps every
token it sends (one clock for both ends). The two take turns ({results["rounds"]} prompts each,
{results["tokens_per_round"]} tokens 10 ms apart), so both run under the same load; the LSP path
is the baseline.

| path | n | p50 (ms) | p99 (ms) | max (ms) |
|---|---:|---:|---:|---:|
| token -> `agent_message_chunk` at the client (`pygent acp`) | {a["n"]} | {a["p50_ms"]} | {a["p99_ms"]} | {a["max_ms"]} |
| token -> `pygent/sessionUpdate` at the client (`pygent lsp`, baseline) | {b["n"]} | {b["p50_ms"]} | {b["p99_ms"]} | {b["max_ms"]} |

ACP / LSP: p50 x{results["ratio_p50"]}, p99 x{results["ratio_p99"]} ({verdict} the x{TARGET_RATIO}
target). Tokens lost: {results["tokens_lost"]}. Machine: {m["platform"]}, {m["cpus"]} CPUs, Python
{m["python"]}; 1-minute load average {m["load_avg_1m"]} at the end of the run (other work on the
machine makes these figures noisier). On a loaded machine a process sometimes stalls for tens of
milliseconds (a stretch of tokens all late, each by 10 ms less than the one before); such stalls
hit either process at random and decide the p99 of a run, so compare p99 over several runs.
Raw figures: `bench/results/acp.json`.
"""
    text = PERF_DOC.read_text() if PERF_DOC.exists() else "# Performance\n"
    if SECTION in text:
        start = text.index(SECTION)
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[nxt + 1 :] if nxt != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    PERF_DOC.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tokens (a smoke run)")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/performance.md")
    args = parser.parse_args()
    results = asyncio.run(run(args.quick))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_doc:
        write_doc(results)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
