"""Language-server latency: session list while sessions stream, and token-to-notification time.

Runs the real ``pygent lsp --stdio`` subprocess against a minimal streaming
OpenAI-compatible server in this process (so a token's send time and its
notification's arrival share one clock), with a raw JSON-RPC client:

1. ``pygent/session/list`` round trips while 4 sessions stream replies (p50/p99);
2. the time from a token leaving the model server to its ``pygent/sessionUpdate``
   (``message_delta``) reaching the client, with 1 session and with 4 streaming.

Writes ``bench/results/lsp.json`` and the "## Language server" section of
``docs/performance.md``. Usage: ``python bench/bench_lsp.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import perfdoc  # bench/ is on sys.path: these run as scripts

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "lsp.json"
SECTION = "## Language server"


# --- a streaming model server that timestamps every token -------------------------------


class TokenServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.sent: dict[str, float] = {}
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TokenServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        pass

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        users = [m["content"] for m in body["messages"] if m.get("role") == "user"]
        match = re.fullmatch(r"stream (\w+) (\d+) ([\d.]+)", users[-1] if users else "")
        tag, count, delay = (
            (match.group(1), int(match.group(2)), float(match.group(3))) if match else ("x", 1, 0.0)
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
            payload = {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body.get("model", "bench"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            data = f"data: {json.dumps(payload)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        chunk({"role": "assistant", "content": ""})
        for i in range(count):
            token = f"{tag}-{i} "
            with self.server.lock:
                self.server.sent[token.strip()] = time.perf_counter()
            chunk({"content": token})
            if delay:
                time.sleep(delay)
        chunk({}, "stop")
        done = b"data: [DONE]\n\n"
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
        self.wfile.flush()


# --- a raw JSON-RPC client over the server's stdio --------------------------------------


class Client:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.next_id = 0
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.received: dict[str, float] = {}
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        while True:
            header = await stdout.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", header).group(1))  # type: ignore[union-attr]
            msg = json.loads(await stdout.readexactly(length))
            now = time.perf_counter()
            if "id" in msg and "method" not in msg:
                fut = self.pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif msg.get("method") == "pygent/sessionUpdate":
                update = msg["params"]["update"]
                if update["type"] == "message_delta":
                    for token in update["text"].split():
                        self.received.setdefault(token, now)
            elif "id" in msg:  # a server request (progress create...): accept it
                self.send({"jsonrpc": "2.0", "id": msg["id"], "result": None})

    def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        data = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)

    async def request(self, method: str, params: Any) -> Any:
        self.next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        msg = await fut
        if "error" in msg:
            raise RuntimeError(msg["error"])
        return msg["result"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def run(quick: bool) -> dict[str, Any]:
    model = TokenServer()
    threading.Thread(target=model.serve_forever, daemon=True).start()
    base = Path(tempfile.mkdtemp(prefix="pygent-bench-lsp-"))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "HOME": str(base),
        "XDG_DATA_HOME": str(base / "data"),
        "OPENAI_BASE_URL": f"http://127.0.0.1:{model.server_address[1]}/v1",
        "OPENAI_API_KEY": "sk-bench",
        "PYGENT_MODEL": "bench",
        "PYGENT_USE_DOCKER": "0",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pygent",
        "lsp",
        "--stdio",
        "--log-level",
        "WARNING",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=base,
        limit=64 * 1024 * 1024,
    )
    client = Client(proc)
    await client.request("initialize", {"capabilities": {}})
    client.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    sessions = [
        (await client.request("pygent/session/new", {"runtime": "local"}))["sessionId"]
        for _ in range(4)
    ]

    # 1. Token latency with one session streaming (10 ms between tokens).
    n_tokens = 100 if quick else 300
    await client.request(
        "pygent/session/prompt",
        {"sessionId": sessions[0], "prompt": f"stream solo {n_tokens} 0.01"},
    )
    solo = [
        (client.received[t] - s) * 1000
        for t, s in model.sent.items()
        if t.startswith("solo-") and t in client.received
    ]

    # 2. Four sessions stream while the client lists sessions.
    per = 600 if quick else 1500
    prompts = [
        asyncio.ensure_future(
            client.request(
                "pygent/session/prompt", {"sessionId": sid, "prompt": f"stream load{i} {per} 0.003"}
            )
        )
        for i, sid in enumerate(sessions)
    ]
    await asyncio.sleep(0.5)
    list_ms: list[float] = []
    while not all(p.done() for p in prompts):
        started = time.perf_counter()
        result = await client.request("pygent/session/list", {})
        list_ms.append((time.perf_counter() - started) * 1000)
        assert len(result["sessions"]) == 4
        await asyncio.sleep(0.01)
    await asyncio.gather(*prompts)
    loaded = [
        (client.received[t] - s) * 1000
        for t, s in model.sent.items()
        if t.startswith("load") and t in client.received
    ]
    missing = sum(1 for t in model.sent if t not in client.received)

    await client.request("shutdown", None)
    client.send({"jsonrpc": "2.0", "method": "exit", "params": None})
    await asyncio.wait_for(proc.wait(), 60)
    client.reader.cancel()
    model.shutdown()

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "n": len(values),
            "p50_ms": round(statistics.median(values), 3),
            "p99_ms": round(pct(values, 99), 3),
            "max_ms": round(max(values), 3),
        }

    return {
        "session_list_while_4_stream": summary(list_ms),
        "token_to_notification_1_session": summary(solo),
        "token_to_notification_4_sessions": summary(loaded),
        "tokens_lost": missing,
        "tokens_per_session_under_load": per,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
    }


def write_doc(results: dict[str, Any]) -> None:
    s = results["session_list_while_4_stream"]
    one = results["token_to_notification_1_session"]
    four = results["token_to_notification_4_sessions"]
    m = results["machine"]
    section = f"""{SECTION}

`python bench/bench_lsp.py`: the real `pygent lsp --stdio` process, a raw JSON-RPC client, and a
streaming model server in the bench process that timestamps every token it sends (one clock for
both ends). Sessions run on the local runtime.

| measurement | n | p50 (ms) | p99 (ms) | max (ms) |
|---|---:|---:|---:|---:|
| `pygent/session/list` round trip while 4 sessions stream | {s["n"]} | {s["p50_ms"]} | {s["p99_ms"]} | {s["max_ms"]} |
| token sent by the model server -> its `sessionUpdate` at the client, 1 session | {one["n"]} | {one["p50_ms"]} | {one["p99_ms"]} | {one["max_ms"]} |
| the same with 4 sessions streaming ({results["tokens_per_session_under_load"]} tokens each, 3 ms apart) | {four["n"]} | {four["p50_ms"]} | {four["p99_ms"]} | {four["max_ms"]} |

Tokens lost: {results["tokens_lost"]}. Each token is one `pygent/sessionUpdate` notification (no
batching), sent from the server's event loop as soon as the agent sees it; requests are handled
on the same loop between notifications, so a list request waits at most for the updates already
queued. Machine: {m["platform"]}, {m["cpus"]} CPUs, Python {m["python"]}; 1-minute load average
{m["load_avg_1m"]} at the end of the run (other work on the machine makes these figures noisier).
Raw figures: `bench/results/lsp.json`.
"""
    perfdoc.replace_section(SECTION, section)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
