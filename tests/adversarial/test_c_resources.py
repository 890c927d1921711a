"""ADVERSARIAL C: resource exhaustion, through the real agent on the local and Docker runtimes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pygent import Agent
from pygent.runtime import Runtime
from pygent.runtime.facade import _free_space
from pygent.tools import ToolRegistry, builtin_tools
from tests.adversarial.conftest import (
    Harness,
    make_harness,
    make_runtime,
    peak_rss_kb,
    processes_with,
    reset_peak_rss,
    settings_for,
    unique,
)
from tests.openai_server import ScriptedOpenAIServer, error_reply, text_reply, tool_call_reply
from tests.test_tasks import route

pytestmark = pytest.mark.timeout(120)


def gone(needle: str, within: float = 5.0) -> bool:
    """True once no process command line contains ``needle`` (kills are asynchronous)."""
    deadline = time.monotonic() + within
    while processes_with(needle):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def appears(prefix: str, within: float = 10.0) -> bool:
    """True once a process command line starts with ``prefix`` (background jobs start late)."""
    deadline = time.monotonic() + within
    while not processes_with(prefix):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_C1_fork_bomb(h: Harness, mode: str, openai_server, runtimes, tmp_path: Path) -> None:
    if mode == "local":
        # No pids limit on the host: in local mode every command asks first (documented).
        h2 = make_harness(openai_server, runtimes["local"], tmp_path, approval_mode="auto")
        out = h2.sh(":(){ :|:& };:", timeout=5)
        assert len(h2.approver.requests) == 1 and out.startswith("the user denied")
        return
    started = time.monotonic()
    # Returns at once: the bomb runs in the background. (A generous timeout: under load
    # the shell's answer can queue behind the bomb for seconds, and a timeout's kill
    # would end the bomb before the commands below meet it.)
    first = h.sh(":(){ :|:& };:", timeout=30)
    assert "timed out" not in first, first[-500:]
    time.sleep(1)  # let it fill the container's process table (pids_limit)
    # Commands may still squeeze in while the table fills; the first one that cannot
    # start a process is stopped with a clear note and every process is killed.
    outs = []
    for _ in range(6):
        outs.append(h.sh("ls / && echo listed", timeout=30))
        if "\nlisted\n" not in outs[-1]:  # (the echoed command line says "listed" too)
            break
        time.sleep(0.5)
    print(f"\nC1: {[o[-200:] for o in outs]}")
    lost = [o for o in outs if "\nlisted\n" not in o]
    assert len(lost) == 1 and "ran out of processes" in lost[0], outs
    assert "\nlisted\n" in h.sh("ls / && echo listed", timeout=30)  # and the bomb is gone
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    "cmd", ["yes | head -c 1073741824", "cat /dev/urandom | base64"], ids=["yes", "urandom"]
)
def test_C2_gigabyte_of_output(
    mode: str, runtimes, openai_server, tmp_path: Path, cmd: str
) -> None:
    history = tmp_path / "h.jsonl"
    h = make_harness(openai_server, runtimes[mode], tmp_path, history_file=history)
    reset_peak_rss()
    before = peak_rss_kb()
    started = time.monotonic()
    out = h.sh(cmd, timeout=60)
    growth = (peak_rss_kb() - before) // 1024
    print(
        f"\nC2 {mode} {cmd!r}: {time.monotonic() - started:.1f}s, RSS +{growth} MiB, "
        f"model saw {len(out)} chars"
    )
    assert len(out) < 70_000 and "bytes omitted" in out and "[output truncated" in out
    assert growth < 50
    assert gone("yes") and gone("cat /dev/urandom") and gone("base64")
    h.agent.close()
    assert history.stat().st_size < 200_000  # the session file keeps the capped output


def test_C3_long_line_bad_utf8_and_terminal_escapes(h: Harness) -> None:
    line, binary, escapes = h.calls(
        [
            ("bash", {"cmd": "head -c 100000000 /dev/zero | tr '\\0' a", "timeout": 60}),
            ("bash", {"cmd": "printf 'ok \\377\\376 done\\n'"}),
            (
                "bash",
                {
                    "cmd": "printf '\\033[31mred\\033[0m \\033]0;title\\007\\033]8;;http://x"
                    "\\033\\\\link\\033]8;;\\033\\\\\\nloading  10%%\\rloading 100%%\\a\\n'"
                },
            ),
        ]
    )
    assert len(line) < 70_000 and "[output truncated" in line
    assert "ok \ufffd\ufffd done" in binary
    shown = escapes.split("\n", 1)[1]  # after the command line
    assert "red link\nloading 100%\n" in shown and "\x1b" not in shown and "\x07" not in shown
    assert "title" not in shown and "loading  10%" not in shown


def test_C4_endless_loop_times_out(h: Harness) -> None:
    started = time.monotonic()
    out = h.sh("while true; do :; done", timeout=2)
    assert "timed out after 2s" in out and time.monotonic() - started < 15
    assert "next-ok" in h.sh("echo next-ok")


ORPHANS = (
    "sleep 301.1 & sleep 301.2 & "  # plain background jobs
    "nohup sleep 301.3 >/dev/null 2>&1 & "
    "setsid sleep 301.4 & "  # a new session: not in the shell's process group
    "(sleep 301.5 &) ; "  # double fork: re-parented to init
    "sh -c \"trap '' TERM; sleep 301.6\" & "  # ignores SIGTERM
    "wait"
)


def test_C5_no_orphans_after_timeout(h: Harness) -> None:
    out = h.sh(ORPHANS, timeout=1)
    assert "timed out" in out
    assert gone("sleep 301."), processes_with("sleep 301.")


def test_C5_no_orphans_after_cancel(h: Harness) -> None:
    h.server.add_tool_call("bash", {"cmd": "setsid sleep 302.1 & (sleep 302.2 &); sleep 302.3"})
    h.server.add_text("never")

    async def go() -> None:
        task = asyncio.ensure_future(h.agent.arun("go"))
        deadline = time.monotonic() + 15
        while len(processes_with("sleep 302.")) < 3:
            assert time.monotonic() < deadline, "the command never started"
            await asyncio.sleep(0.05)
        h.agent.cancel()
        result = await task
        assert result.stop_reason == "cancelled"

    asyncio.run(go())
    assert gone("sleep 302."), processes_with("sleep 302.")
    last = [m for m in h.agent.history if m.get("role") == "tool"][-1]
    assert "cancelled" in last["content"]


def test_C6_memory_hog(h: Harness, mode: str, openai_server, runtimes, tmp_path: Path) -> None:
    if mode == "local":
        # No memory limit on the host: in local mode every command asks first (documented).
        h2 = make_harness(openai_server, runtimes["local"], tmp_path, approval_mode="auto")
        out = h2.sh('python3 -c "bytearray(10**10)"')
        assert len(h2.approver.requests) == 1 and out.startswith("the user denied")
        return
    out = h.sh('python3 -c "bytearray(10**10)"', timeout=60)
    assert "exit code 137" in out and "out of memory" in out
    assert "alive" in h.sh("echo alive")


@pytest.fixture
def tiny_workspace(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB file system with 3,000 inodes, to run out of both for real."""
    where = tmp_path / "tiny"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m,nr_inodes=3000", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here (needs root): {done.stderr}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _tiny_harness(mode: str, server, ws: Path, tmp_path: Path) -> tuple[Harness, Runtime]:
    rt = make_runtime(mode, ws)
    return make_harness(server, rt, tmp_path, history_file=tmp_path / "h.jsonl"), rt


def test_C7_disk_fill_is_stopped_before_the_disk_is_full(
    mode: str, openai_server, tiny_workspace: Path, tmp_path: Path
) -> None:
    h, rt = _tiny_harness(mode, openai_server, tiny_workspace, tmp_path)
    try:
        free_before, _ = _free_space(tiny_workspace)
        out = h.sh(
            "for i in $(seq 200); do dd if=/dev/zero of=fill$i bs=1M count=1 2>/dev/null; "
            "sleep 0.05; done; echo finished",
            timeout=60,
        )
        free_after, _ = _free_space(tiny_workspace)
        print(f"\nC7 {mode}: free {free_before >> 20} -> {free_after >> 20} MiB: {out[-160:]!r}")
        output = out.split("\n", 1)[1]  # after the command line
        assert "disk holding the workspace is nearly full" in output and "finished" not in output
        # The reserve (half the free space here) held, give or take one 0.2 s poll.
        assert free_after >= free_before // 2 - (8 << 20)
        assert "saved-ok" in h.sh("rm -f fill*; echo saved-ok")
        if mode == "docker":  # /tmp is a sized tmpfs: ENOSPC, not a full host disk
            tmp = h.sh("dd if=/dev/zero of=/tmp/fill bs=1M count=400; rm -f /tmp/fill", timeout=60)
            assert "No space left on device" in tmp
        h.agent.close()
        lines = (tmp_path / "h.jsonl").read_text().splitlines()
        assert len(lines) > 4  # the history kept saving: it lives on another disk
    finally:
        h.agent.close()
        rt.cleanup()


def test_C8_inode_exhaustion(
    mode: str, openai_server, tiny_workspace: Path, tmp_path: Path
) -> None:
    h, rt = _tiny_harness(mode, openai_server, tiny_workspace, tmp_path)
    try:
        out = h.sh(
            "mkdir many && cd many && i=0; while [ $i -lt 10000 ]; do : > f$i || break; "
            "i=$((i+1)); done; echo made $i",
            timeout=60,
        )
        assert "nearly full" in out or "No space left on device" in out, out[-300:]
        assert "still-ok" in h.sh("rm -rf many; echo still-ok", timeout=60)
    finally:
        h.agent.close()
        rt.cleanup()


def test_C9_fd_exhaustion(h: Harness, mode: str) -> None:
    out = h.sh(
        "python3 -c \"import os\nfs=[]\ntry:\n  [fs.append(os.open('/dev/null', os.O_RDONLY)) "
        "for _ in range(100000)]\nexcept OSError as e: print('EMFILE', e.errno)\nprint(len(fs))\"",
        timeout=60,
    )
    if mode == "docker":
        assert "EMFILE 24" in out  # nofile ulimit 4096 in the container
    assert "fd-ok" in h.sh("echo fd-ok")


def _loop_latency(stop: threading.Event, samples: list[float]) -> None:
    async def probe() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            samples.append(time.perf_counter() - t - 0.01)

    asyncio.run(probe())


def test_C10_cpu_burners_leave_the_host_responsive(h: Harness, mode: str) -> None:
    stop, samples = threading.Event(), []
    probe = threading.Thread(target=_loop_latency, args=(stop, samples), daemon=True)
    probe.start()
    try:
        out = h.sh(
            "for i in 1 2 3 4 5 6 7 8; do yes > /dev/null & done; sleep 3; echo burned", timeout=2
        )
    finally:
        stop.set()
        probe.join()
    samples.sort()
    p99 = samples[int(len(samples) * 0.99) - 1]
    print(f"\nC10 {mode}: host event-loop p99 lag {p99 * 1000:.1f} ms with 8 burners")
    assert "timed out" in out and gone("yes")
    assert p99 < 1.0
    if mode == "docker":
        import docker

        client = docker.from_env()
        cid = h.rt.backend.container_id  # type: ignore[attr-defined]
        assert client.api.inspect_container(cid)["HostConfig"]["NanoCpus"] == 2_000_000_000
        client.close()


def test_C11_left_behind_server_is_killed_at_session_end(
    mode: str, openai_server, tmp_path: Path
) -> None:
    rt = make_runtime(mode, tmp_path / "ws")
    h = make_harness(openai_server, rt, tmp_path)
    marker = f"303.{os.getpid() % 1000}"
    try:
        out = h.sh(f"python3 -m http.server 0 >/dev/null 2>&1 & setsid sleep {marker} & echo ok")
        assert "ok" in out
        assert appears(f"sleep {marker}") and appears("python3 -m http.server 0")
    finally:
        h.agent.close()
        rt.cleanup()
    assert gone(f"sleep {marker}") and gone("python3 -m http.server 0")


def test_C12_interactive_programs_get_no_stdin(h: Harness, mode: str) -> None:
    started = time.monotonic()
    outs = h.calls(
        [
            ("bash", {"cmd": "python3 -c 'input()'; echo rc=$?", "timeout": 20}),
            ("bash", {"cmd": "read x; echo read-rc=$?", "timeout": 20}),
            ("bash", {"cmd": "cat; echo cat-done", "timeout": 20}),
            ("bash", {"cmd": "echo $PAGER $GIT_EDITOR $GIT_TERMINAL_PROMPT", "timeout": 20}),
            (
                "bash",
                {
                    "cmd": "d=$(mktemp -d) && cd $d && git init -q . 2>/dev/null && git commit "
                    "--allow-empty 2>&1; echo git-rc=$?",
                    "timeout": 20,
                },
            ),
            ("bash", {"cmd": "sudo -v 2>&1; echo sudo-rc=$?", "timeout": 20}),
            ("bash", {"cmd": "less /etc/hostname; echo less-rc=$?", "timeout": 20}),
            (
                "bash",
                {
                    "cmd": "ssh -o ConnectTimeout=3 nobody@127.0.0.1 true 2>&1; echo ssh-rc=$?",
                    "timeout": 20,
                },
            ),
        ]
    )
    assert time.monotonic() - started < 30
    assert not any("timed out" in o for o in outs), outs
    assert "EOFError" in outs[0] and "read-rc=1" in outs[1] and "cat-done" in outs[2]
    assert "cat true 0" in outs[3]
    for marker, out in zip(["git-rc=", "sudo-rc=", "less-rc=", "ssh-rc="], outs[4:], strict=True):
        assert marker in out


def test_C13_huge_arguments_and_call_floods(openai_server, runtimes, tmp_path: Path) -> None:
    """Agent-level (the same for both runtimes): runs on the local one."""
    h = make_harness(openai_server, runtimes["local"], tmp_path)
    name = unique("huge")
    big = {"path": name, "content": "x" * (50 * 1024 * 1024)}
    h.server.add_tool_call("write_file", big)
    h.server.add_tool_calls([("bash", {"cmd": f"echo call-{i}"}) for i in range(10_000)])
    h.server.add_text("done")
    result = h.agent.turn("go", max_steps=5)
    assert result.stop_reason == "end_turn"
    tools = [m for m in h.agent.history if m.get("role") == "tool"]
    assert "over the limit" in tools[0]["content"] and not (h.ws / name).exists()
    assert len(tools) == 1 + 64 and "only the first 64 were run" in tools[-1]["content"]
    assistants = [
        m for m in h.agent.history if m.get("role") == "assistant" and m.get("tool_calls")
    ]
    assert len(json.dumps(assistants[0])) < 2000  # the 50 MB were not kept
    assert len(assistants[1]["tool_calls"]) == 64
    last = h.server.chat_requests[-1].body["messages"]
    ids = [c["id"] for m in last if m.get("tool_calls") for c in m["tool_calls"]]
    answered = [m["tool_call_id"] for m in last if m.get("role") == "tool"]
    assert sorted(ids) == sorted(answered)  # every kept call has its result


def test_C14_many_large_results_stay_within_the_context(
    openai_server: ScriptedOpenAIServer, runtimes, tmp_path: Path
) -> None:
    """Steps producing 100 KB outputs each against a model whose context is 2 MB
    (PYGENT_C14_STEPS, default 100): compaction keeps every request under it, and the
    session file stores each output capped."""
    steps = int(os.environ.get("PYGENT_C14_STEPS", "100"))
    limit = 2_000_000
    sizes: list[int] = []

    def responder(body: dict[str, Any]) -> Any:
        size = len(json.dumps(body))
        if size > limit:
            return error_reply(400, code="context_length_exceeded")
        sizes.append(size)
        done = sum(1 for m in body["messages"] if m.get("role") == "tool")
        if done >= steps:
            return text_reply("all done")
        return tool_call_reply("bash", {"cmd": "head -c 100000 /dev/zero | tr '\\0' x"})

    openai_server.set_responder(responder)
    history = tmp_path / "h.jsonl"
    h = make_harness(openai_server, runtimes["local"], tmp_path, history_file=history)
    result = h.agent.turn("go", max_steps=steps + 5)
    h.agent.close()
    assert result.stop_reason == "end_turn" and result.text == "all done"
    assert max(sizes) <= limit
    per_step = history.stat().st_size / steps
    print(
        f"\nC14: {steps} steps, largest request {max(sizes)} bytes, {per_step:.0f} bytes per step saved"
    )
    assert per_step < 70_000


def test_C15_recursive_delegation_is_refused(
    openai_server: ScriptedOpenAIServer, runtimes, tmp_path: Path
) -> None:
    from pygent.tasks import TaskManager

    settings = settings_for(openai_server, tmp_path, use_docker=False)
    tm = TaskManager(settings=settings, max_tasks=2)
    route(
        openai_server,
        {
            "MAIN": [
                tool_call_reply("delegate_task", {"prompt": "SUB: delegate again"}),
                tool_call_reply("delegate_task", {"prompt": "BLOCK one"}),
                tool_call_reply("delegate_task", {"prompt": "BLOCK two"}),
            ],
            "SUB": [tool_call_reply("delegate_task", {"prompt": "SUBSUB"})],
            "BLOCK": [tool_call_reply("bash", {"cmd": "sleep 30"})],
        },
    )
    parent = Runtime(workspace=tmp_path / "ws", settings=settings)
    agent = Agent(
        runtime=parent,
        settings=settings,
        tools=ToolRegistry(builtin_tools()),
        task_manager=tm,
        checkpoints=False,
    )
    try:
        agent.turn("MAIN: go")
        results = [m["content"] for m in agent.history if m.get("role") == "tool"]
        assert results[0].startswith("started ")
        first = next(i.id for i in tm.list() if i.prompt.startswith("SUB"))
        tm.wait(first, timeout=30)
        sub = tm.get_agent(first)
        sub_results = [m["content"] for m in sub.history if m.get("role") == "tool"] if sub else []
        assert (
            sub_results and "delegate_task" in sub_results[0] and sub_results[0].startswith("error")
        )
        assert results[2].startswith("error:") and "already running" in results[2]
    finally:
        tm.shutdown()
        agent.close()
        parent.cleanup()
