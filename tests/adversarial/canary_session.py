"""The D11 canary sweep: a scripted session with canaries in its host environment, then a search of every place they could leak to.

``run_sweep`` starts this file as a separate process (so the canaries are in its
*exec-time* environment, as when a user exports a key) with ``PYGENT_CANARY`` and
``OPENAI_API_KEY`` set to two canaries. That process runs Python-API agents on the local
and Docker runtimes and a real ``pygent lsp --stdio`` server with a local and a Docker
session, all against the scripted model server, exercising the tools. It records what
commands see (``env``, every ``/proc/*/environ``, a ``grep`` of the container's files)
and each container's ``docker inspect``. ``run_sweep`` then counts the canaries in those
records, the session files, the logs, the servers' stderr and every model request (the
``Authorization`` header is the only place the key may be).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: What each sandbox is asked to show: its environment, every process's, its files.
PROBE = (
    "env; for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f 2>/dev/null; done; "
    "p=$PPID; while [ \"$p\" -gt 1 ] 2>/dev/null; do tr '\\0' '\\n' < /proc/$p/environ "
    "2>/dev/null; p=$(cut -d' ' -f4 /proc/$p/stat 2>/dev/null || echo 1); done; echo probed"
)
#: Only inside a container: the whole file system (the host's is not ours to grep).
GREP = "grep -rsIl sk-canary / --exclude-dir=proc --exclude-dir=sys 2>/dev/null; echo grepped"


def responder(body: dict[str, Any]) -> Any:
    """The model: a fixed tour of the tools, then an answer (one per conversation)."""
    from tests.openai_server import text_reply, tool_call_reply

    done = sum(1 for m in body["messages"] if m.get("role") == "tool")
    steps = [
        ("bash", {"cmd": PROBE}),
        ("write_file", {"path": "notes.md", "content": "hello\n"}),
        ("edit_file", {"path": "notes.md", "old_text": "hello", "new_text": "bye"}),
        ("read_file", {"path": "notes.md"}),
        ("bash", {"cmd": "cat notes.md; echo $OPENAI_API_KEY $PYGENT_CANARY"}),
    ]
    if done < len(steps):
        return tool_call_reply(*steps[done])
    return text_reply("tour done")


# --- the session process -------------------------------------------------------------


def _api_sessions(out: Path, docker: bool) -> None:
    from pygent import Agent
    from pygent.runtime import Runtime
    from pygent.settings import load_settings

    for mode in ["local", "docker"] if docker else ["local"]:
        settings = load_settings({"use_docker": mode == "docker"})
        rt = Runtime(settings=settings, workspace=out / f"ws-api-{mode}")
        rt.wait_ready(120)
        agent = Agent(runtime=rt, settings=settings, history_file=out / f"data/api-{mode}.jsonl")
        agent.turn(f"tour the tools ({mode})")
        # What commands really see, not what the agent passed on to the model.
        raw = rt.run(PROBE + ("; " + GREP if mode == "docker" else ""), timeout=300).output
        (out / f"raw-api-{mode}.txt").write_text(raw)
        if mode == "docker":
            _inspect(rt.backend.container_id, out / "inspect-api.json")  # type: ignore[attr-defined]
        agent.close()
        rt.cleanup()


def _inspect(container_id: str | None, where: Path) -> None:
    import docker

    client = docker.from_env()
    try:
        where.write_text(json.dumps(client.api.inspect_container(container_id)))
    finally:
        client.close()


def _lsp_sessions(out: Path, docker: bool) -> None:
    from pygent.lsp import protocol as p
    from tests.adversarial.lsp_raw import Lsp

    env = dict(os.environ)
    c = Lsp(env, out, ["--log-file", str(out / "logs" / "lsp.log"), "--log-level", "DEBUG"])
    c.stderr_path.rename(out / "lsp-stderr.log")
    c.stderr_path = out / "lsp-stderr.log"
    c.send({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"processId": os.getpid(), "capabilities": {}}})  # fmt: skip
    c.reply(0, 60)
    c.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    for mode in ["local", "docker"] if docker else ["local"]:
        sid = c.new_session(runtime=mode, approvalMode="auto")
        prompt = c.start(p.SESSION_PROMPT, {"sessionId": sid, "prompt": f"tour ({mode})"})
        answered: set[Any] = set()

        def wanted(m: dict[str, Any], prompt: int = prompt, answered: set[Any] = answered) -> bool:
            if m.get("method") == p.REQUEST_PERMISSION:
                return m["id"] not in answered
            return m.get("id") == prompt and "method" not in m

        while True:  # local mode asks before each call: allow them all
            msg = c.wait_for(wanted, 120)
            if "method" not in msg:
                break
            answered.add(msg["id"])
            c.answer(msg["id"], {"optionId": "allow_once"})
        if mode == "docker":
            import docker as sdk

            client = sdk.from_env()
            mine = client.api.containers(filters={"label": f"pygent.owner_pid={c.proc.pid}"})
            client.close()
            for i, info in enumerate(mine):
                _inspect(info["Id"], out / f"inspect-lsp-{i}.json")
        c.call(p.SESSION_CLOSE, {"sessionId": sid}, timeout=60)
    c.call("shutdown", None)
    c.send({"jsonrpc": "2.0", "method": "exit"})
    c.wait(30)
    (out / "lsp-seen.json").write_text(json.dumps(c.seen))


def main(out: Path, docker: bool) -> None:
    (out / "logs").mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=out / "logs" / "api.log", level=logging.DEBUG)
    _api_sessions(out, docker)
    _lsp_sessions(out, docker)


# --- the sweep ---------------------------------------------------------------------------


def run_sweep(server: Any, tmp: Path, *, docker: bool) -> dict[str, int]:
    """Run the session process with fresh canaries; count them everywhere. Returns
    hits per place (``model_request_headers_authorization`` is the only allowed one)."""
    from tests.docker_gate import TEST_IMAGE

    canary, key = f"sk-canary-{uuid.uuid4().hex}", f"sk-canary-{uuid.uuid4().hex}"
    out = tmp / "sweep"
    for sub in ("home", "data", "config", "cache", "logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    server.set_responder(responder)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(out / "home"),
        "XDG_DATA_HOME": str(out / "data"),
        "XDG_CONFIG_HOME": str(out / "config"),
        "XDG_CACHE_HOME": str(out / "cache"),
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": key,
        "PYGENT_CANARY": canary,
        "PYGENT_MODEL": "test-model",
        "PYGENT_IMAGE": TEST_IMAGE,
        "PYGENT_REQUEST_TIMEOUT": "60",
    }
    done = subprocess.run(
        [sys.executable, __file__, str(out), "1" if docker else "0"],
        env=env,
        cwd=out,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (out / "session-stdout.txt").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stderr[-4000:]

    def count(text: str) -> int:
        return text.count(canary) + text.count(key)

    def files(pattern: str) -> int:
        return sum(count(p.read_text(errors="replace")) for p in out.rglob(pattern) if p.is_file())

    requests = server.requests
    raws = sorted(out.glob("raw-*.txt"))
    assert raws and all("probed" in p.read_text() for p in raws), "the probes did not run"
    if docker:
        assert "grepped" in (out / "raw-api-docker.txt").read_text()
        assert list(out.glob("inspect-lsp-*.json")), "the LSP Docker session had no container"
    assert len([r for r in requests if r.path.endswith("/chat/completions")]) >= 12
    return {
        "model_request_bodies": sum(count(r.raw.decode(errors="replace")) for r in requests),
        "model_request_headers_other": sum(
            count(v) for r in requests for k, v in r.headers.items() if k != "authorization"
        ),
        "model_request_headers_authorization": sum(
            count(r.headers.get("authorization", "")) for r in requests
        ),
        "commands_env_proc_and_files": sum(count(p.read_text()) for p in raws),
        "container_env_docker_inspect": files("inspect-*.json"),
        "session_and_history_files": files("*.jsonl") + files("data/**/*.json"),
        "log_files": files("*.log"),
        "lsp_messages_to_the_editor": files("lsp-seen.json"),
        "process_output": count((out / "session-stdout.txt").read_text()),
    }


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] == "1")
