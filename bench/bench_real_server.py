"""Pygent's cost per agent step against a real model server, next to the bare ``openai`` SDK.

Starts llama.cpp's ``llama-server`` (built by ``.ci/model-servers-setup.sh``, cached in
/var/cache/pygent) serving SmolLM2-135M-Instruct, then alternates, round after round:

- baseline: the ``openai`` SDK making the very request Pygent makes (same system
  prompt, tool schemas, user prompt, ``tool_choice``, temperature 0, streamed with
  usage), reading the stream to its end;
- Pygent: ``Agent.step(prompt)`` on a fresh agent (built outside the clock) whose
  answer is that same request's answer: model call, events, history.

At temperature 0 the server gives the same answer to both, and its prefix cache makes
every request after the first one cost the same, so the ratio of the medians is
Pygent's overhead per step. Target (issue 14): <= 1.1x.

    python bench/bench_real_server.py [--quick] [--rounds N]

Writes ``bench/results/real_server.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENV_FILE = Path(os.environ.get("PYGENT_CACHE_DIR", "/var/cache/pygent")) / "model-servers.env"
PROMPT = "Say hello to the team in one short sentence."
TARGET = 1.1


def _servers() -> dict[str, str]:
    if not ENV_FILE.is_file():
        raise SystemExit(f"{ENV_FILE} is missing: run .ci/model-servers-setup.sh first")
    pairs = (line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_llama_server(paths: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    argv = [paths["PYGENT_LLAMA_SERVER"], "-m", paths["PYGENT_TEST_GGUF"], "--host",
            "127.0.0.1", "--port", str(port), "--jinja", "-c", "4096"]
    if paths.get("PYGENT_TOOL_TEMPLATE"):  # SmolLM2's own template knows no tools
        argv += ["--chat-template-file", paths["PYGENT_TOOL_TEMPLATE"]]
    proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    import httpx2

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited: {log.read_text()[-2000:]}")
        try:
            if httpx2.get(f"{url}/models", timeout=1).status_code == 200:
                return proc, url
        except httpx2.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("llama-server did not answer within 120 s")


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (8 if args.quick else 25)

    scratch = Path(tempfile.mkdtemp(prefix="pygent-bench-real-"))
    os.environ.update(HOME=str(scratch), XDG_DATA_HOME=str(scratch / "data"),
                      PYGENT_USE_DOCKER="0", OPENAI_API_KEY="unused", PYGENT_TEMPERATURE="0")
    proc, url = _start_llama_server(_servers(), scratch / "llama-server.log")
    try:
        return _run(url, rounds, scratch)
    finally:
        _stop(proc)


def _run(url: str, rounds: int, scratch: Path) -> int:
    import openai

    from pygent import Agent
    from pygent.runtime import Runtime
    from pygent.server_profile import build_body, profile_for
    from pygent.settings import load_settings

    os.environ.update(OPENAI_BASE_URL=url, PYGENT_MODEL="smollm2")
    settings = load_settings(cwd=scratch)
    runtime = Runtime(settings=settings, workspace=scratch / "ws")

    def fresh_agent() -> Agent:
        return Agent(runtime=runtime, settings=settings)

    probe = fresh_agent()
    schemas = [t.schema() for t in probe._active_tools()]
    messages = [*probe.history, {"role": "user", "content": PROMPT}]
    body = build_body(messages, "smollm2", schemas, stream=True,
                      options=settings.request_options, profile=profile_for(url, "smollm2"))
    probe.close()
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)

    def sdk_call() -> tuple[float, str]:
        start = time.perf_counter()
        text = []
        for chunk in client.chat.completions.create(**body):
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
        return time.perf_counter() - start, "".join(text)

    def pygent_step() -> tuple[float, str]:
        agent = fresh_agent()
        try:
            start = time.perf_counter()
            msg = agent.step(PROMPT)
            took = time.perf_counter() - start
            return took, str(msg.content or "")
        finally:
            agent.close()

    sdk_call()  # the server's first request fills its prompt cache
    pygent_step()
    sdk_ms: list[float] = []
    pygent_ms: list[float] = []
    answers: set[str] = set()
    for i in range(rounds):
        pair = (sdk_call, pygent_step) if i % 2 == 0 else (pygent_step, sdk_call)
        for fn in pair:
            took, text = fn()
            (sdk_ms if fn is sdk_call else pygent_ms).append(took * 1000)
            answers.add(text)
    runtime.cleanup()
    sdk = statistics.median(sdk_ms)
    ours = statistics.median(pygent_ms)
    ratio = ours / sdk
    result = {
        "server": "llama-server (llama.cpp, from llama-cpp-python 0.3.36's sources), --jinja",
        "model": "SmolLM2-135M-Instruct Q4_1",
        "rounds": rounds,
        "sdk_ms_median": round(sdk, 1),
        "pygent_step_ms_median": round(ours, 1),
        "ratio": round(ratio, 3),
        "target": TARGET,
        "same_answer": len(answers) == 1,
        "answer": sorted(answers)[0][:200],
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
                   f"Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}",
    }
    out = ROOT / "bench" / "results" / "real_server.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"bare openai SDK request : {sdk:8.1f} ms (median of {rounds})")
    print(f"Pygent Agent.step       : {ours:8.1f} ms")
    print(f"ratio                   : {ratio:8.3f}x (target <= {TARGET}x)")
    print(f"same answer both ways   : {len(answers) == 1}: {sorted(answers)[0][:80]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
