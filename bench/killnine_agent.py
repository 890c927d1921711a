"""kill -9 harness, end to end: SIGKILLs a real Agent session process at random moments and audits what it left.

Usage: python bench/killnine_agent.py [TRIALS] [--mode local|docker] [--seed N] [--max-delay S]

Each trial starts a child process that resumes one session (``Agent`` with a history
file, on the local or Docker runtime) and runs turns against a scripted model server:
each turn runs a command (a short sleep), writes a file and answers. The child prints
the number of every turn that returned. The parent SIGKILLs it at a random moment,
then counts: corrupt session files, completed (acknowledged) turns missing from the
history, tool calls left without a result after loading, and processes the child's
commands left running (one second after the kill: the local backend's watcher kills
them). In Docker mode it also counts the containers the dead children left, before
and after the next start's reaper (``reap_orphans``) runs, and checks that an
unlabelled container is never touched (H8).

SIGKILL leaves the page cache intact: this covers process crashes, not power loss.
Results: a table on stdout and bench/results/killnine_agent.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "killnine_agent.json"
_TURN = re.compile(r"\[turn=(\d+)\]")
_DONE = re.compile(r"\[done=(\d+)\]")
SLEEP_BASE = 9  # commands run `sleep 9.<trial><turn>`: findable if they outlive the child


# --- the model ------------------------------------------------------------------------------


def responder(body: dict[str, Any]) -> Any:
    """Per turn: a command, a file write, then the answer (stateless: any child can resume)."""
    from tests.openai_server import text_reply, tool_call_reply

    messages = body["messages"]
    last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    turn = _TURN.search(str(messages[last_user]["content"]))
    n = int(turn.group(1)) if turn else 0
    tools = sum(1 for m in messages[last_user:] if m.get("role") == "tool")
    if tools == 0:
        return tool_call_reply(
            "bash", {"cmd": f"sleep {SLEEP_BASE}.{n % 1000:03d}1 & sleep 0.05; echo ran-{n}"}
        )
    if tools == 1:
        return tool_call_reply(
            "write_file", {"path": f"turn-{n % 50}.txt", "content": f"turn {n}\n" * 50}
        )
    return text_reply(f"[done={n}] finished turn {n}")


# --- the child: a session ------------------------------------------------------------------


def child(mode: str, history: Path, workspace: Path, first: int) -> None:
    from pygent import Agent
    from pygent.runtime import Runtime
    from pygent.settings import load_settings

    settings = load_settings({"use_docker": mode == "docker"})
    runtime = Runtime(settings=settings, workspace=workspace)
    runtime.wait_ready(120)
    agent = Agent(runtime=runtime, settings=settings, history_file=history, checkpoints=False)
    os.write(1, b"ready\n")
    n = first
    while True:
        result = agent.turn(f"[turn={n}] do the work")
        if _DONE.search(result.text):
            os.write(1, f"{n}\n".encode())  # this turn is complete: it must survive
        n += 1


# --- the parent: kill and audit --------------------------------------------------------------


def _leftover_sleeps() -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if (
            os.path.basename(argv[0]) == b"sleep"
            and argv[1:2]
            and argv[1].startswith(b"%d." % SLEEP_BASE)
        ):
            found.append(int(entry.name))
    return found


def _audit(history: Path, acked: set[int]) -> dict[str, Any]:
    from pygent.errors import SessionError
    from pygent.store import HistoryFile

    try:
        view = HistoryFile.read(history)
        messages = view.load()
    except SessionError as exc:
        return {"corrupt": True, "lost": len(acked), "dangling": 0, "error": str(exc)}
    done = {
        int(m.group(1)) for msg in messages if (m := _DONE.search(str(msg.get("content") or "")))
    }
    dangling = 0
    for i, message in enumerate(messages):
        ids = [c.get("id") for c in message.get("tool_calls") or []]
        answered, j = set(), i + 1
        while j < len(messages) and messages[j].get("role") == "tool":
            answered.add(messages[j].get("tool_call_id"))
            j += 1
        dangling += sum(1 for call_id in ids if call_id not in answered)
    return {"corrupt": view.report.damaged, "lost": len(acked - done), "dangling": dangling}


def _docker_client() -> Any:
    import docker

    return docker.from_env()


def run(
    trials: int, mode: str, seed: int, workdir: Path, max_delay: float, server: Any
) -> dict[str, Any]:
    """Run ``trials`` kills against ``server`` (a started ScriptedOpenAIServer)."""
    server.set_responder(responder)
    rng = random.Random(seed)
    history = workdir / "session.jsonl"
    workspace = workdir / "ws"
    data = workdir / "data"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(workdir),
        "XDG_DATA_HOME": str(data),
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-killnine-key",
        "PYGENT_MODEL": "test-model",
        "PYGENT_IMAGE": os.environ.get("PYGENT_TEST_IMAGE", "pygent-test:bookworm"),
        "PYGENT_REQUEST_TIMEOUT": "30",
    }
    stats: dict[str, Any] = {
        "mode": mode, "trials": trials, "corrupt_files": 0, "lost_completed_turns": 0,
        "dangling_after_load": 0, "orphan_processes": 0, "acked_turns": 0,
        "child_errors": 0, "examples": [],
    }  # fmt: skip
    children: list[int] = []
    acked: set[int] = set()
    unlabelled = None
    if mode == "docker":
        client = _docker_client()
        unlabelled = client.containers.create(
            env["PYGENT_IMAGE"], ["sleep", "600"], name=f"not-pygent-{seed}"
        )
    started = time.monotonic()
    next_turn = 1
    for trial in range(trials):
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", mode, str(history), str(workspace), str(next_turn)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=workdir,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        children.append(proc.pid)
        ready = proc.stdout.readline()
        if ready.strip() != b"ready":
            stats["child_errors"] += 1
            stats["examples"].append(
                f"trial {trial}: {proc.stderr.read()[-400:].decode(errors='replace')}"
            )
            proc.kill()
            proc.wait()
            continue
        time.sleep(rng.uniform(0, max_delay))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for line in proc.stdout.read().splitlines():
            if line.strip().isdigit():
                acked.add(int(line))
                next_turn = max(next_turn, int(line) + 1)
        next_turn += 1  # the in-flight turn's number is never reused
        proc.stdout.close()
        proc.stderr.close()
        if mode == "local":
            time.sleep(0.5)  # the watcher's grace: then anything left is an orphan
            stats["orphan_processes"] += len(_leftover_sleeps())
            for pid in _leftover_sleeps():
                os.kill(pid, signal.SIGKILL)
        # Docker: the dead child's container (and the processes in it) stays until the
        # next start's reaper, counted below.
        audit = _audit(history, acked)
        stats["corrupt_files"] += int(bool(audit["corrupt"]))
        stats["dangling_after_load"] += audit["dangling"]
        if audit["corrupt"] and len(stats["examples"]) < 5:
            stats["examples"].append(f"trial {trial}: {audit.get('error', 'damaged lines')}")
    final = _audit(history, acked)
    stats["lost_completed_turns"] = final["lost"]
    stats["acked_turns"] = len(acked)
    stats["seconds"] = round(time.monotonic() - started, 1)
    if mode == "docker":
        from pygent.runtime.docker_engine import reap_orphans

        client = _docker_client()

        def ours() -> list[Any]:
            found = client.api.containers(all=True, filters={"label": "pygent.managed=1"})
            return [c for c in found if int(c["Labels"].get("pygent.owner_pid", -1)) in children]

        # Every child's start reaped its predecessors' containers; the last one's is left.
        stats["containers_left_by_crashes"] = len(ours())
        reap_orphans(client)  # what the next Pygent start does first
        stats["orphan_containers_after_reaper"] = len(ours())
        time.sleep(0.5)
        stats["orphan_processes"] = len(_leftover_sleeps())
        assert unlabelled is not None
        unlabelled.reload()
        stats["unlabelled_container_kept"] = unlabelled.status in ("created", "running", "exited")
        unlabelled.remove(force=True)
        client.close()
    return stats


def _table(stats: dict[str, Any]) -> str:
    keys = ["trials", "corrupt_files", "lost_completed_turns", "dangling_after_load",
            "orphan_processes", "acked_turns", "child_errors", "seconds"]  # fmt: skip
    if stats["mode"] == "docker":
        keys += [
            "containers_left_by_crashes",
            "orphan_containers_after_reaper",
            "unlabelled_container_kept",
        ]
    return "\n".join(f"{k:32} {stats[k]}" for k in keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trials", nargs="?", type=int, default=30)
    parser.add_argument("--mode", choices=["local", "docker"], default="local")
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--max-delay", type=float, default=1.5, help="latest kill after ready, s")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=4, metavar=("MODE", "HISTORY", "WORKSPACE", "FIRST"))
    args = parser.parse_args(argv)
    if args.child:
        mode, history, workspace, first = args.child
        child(mode, Path(history), Path(workspace), int(first))
        return 0
    from tests.openai_server import ScriptedOpenAIServer

    with (
        tempfile.TemporaryDirectory(prefix="pygent-killnine-agent-") as tmp,
        ScriptedOpenAIServer() as server,
    ):
        stats = run(args.trials, args.mode, args.seed, Path(tmp), args.max_delay, server)
    print(_table(stats))
    for example in stats["examples"][:3]:
        print("  ", example)
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    results[args.mode] = {**stats, "python": platform.python_version(), "seed": args.seed,
                          "note": "SIGKILL keeps the page cache: process crashes, not power loss"}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    bad = stats["corrupt_files"] or stats["lost_completed_turns"] or stats["dangling_after_load"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
