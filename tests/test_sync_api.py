"""The synchronous API (``Runtime.run`` / ``bash``) on the local and Docker sandboxes.

Short commands take the fast path (the calling thread does the shell's I/O); longer,
failing or interrupted ones are handed to the runtime's loop thread mid-command. These
tests check that a user sees the same behaviour either way, in both sandboxes.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pygent.runtime import Runtime
from pygent.settings import load_settings
from tests.docker_gate import TEST_IMAGE
from tests.processes import later, processes_matching

#: Sleep durations unique to this run, so a check never sees another test's process.
U = random.randint(10_000, 99_999)


def _make(kind: str, tmp_path: Path, **overrides: object) -> Runtime:
    settings = load_settings({"image": TEST_IMAGE, **overrides}, environ={}, cwd=tmp_path)
    runtime = Runtime(use_docker=kind == "docker", workspace=tmp_path / "ws", settings=settings)
    runtime.wait_ready(120)
    return runtime


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    runtime = _make(request.param, tmp_path)
    yield runtime
    runtime.cleanup()


def _cwd(rt: Runtime, sub: str) -> str:
    return f"/workspace/{sub}" if rt.use_docker else str(rt.workspace.resolve() / sub)


def test_shell_state_carries_across_the_sync_and_async_paths(rt: Runtime) -> None:
    assert rt.run("mkdir -p d && cd d && export GREETING=hi").exit_code == 0
    via_loop = asyncio.run(rt.arun("echo $GREETING; pwd"))
    assert via_loop.stdout == f"hi\n{_cwd(rt, 'd')}\n"
    assert rt.run("echo $GREETING-again; pwd").stdout == f"hi-again\n{_cwd(rt, 'd')}\n"
    assert rt.bash("echo out; echo err >&2; three() { return 3; }; three") == (
        "$ echo out; echo err >&2; three() { return 3; }; three\nout\nerr\n[exit code 3]"
    )


def test_streaming_reaches_the_caller_for_quick_and_slow_commands(rt: Runtime) -> None:
    quick: list[tuple[str, str, int]] = []
    rt.run("echo hi", on_output=lambda s, t: quick.append((s, t, threading.get_ident())))
    assert quick == [("stdout", "hi\n", threading.get_ident())]  # on this thread
    slow: list[tuple[str, str]] = []
    result = rt.run("echo one; sleep 0.6; echo two >&2", on_output=lambda s, t: slow.append((s, t)))
    assert (result.stdout, result.stderr, result.exit_code) == ("one\n", "two\n", 0)
    assert slow == [("stdout", "one\n"), ("stderr", "two\n")]


def test_timeout_kills_the_tree_and_the_shell_survives(rt: Runtime) -> None:
    result = rt.run(f"sleep {U} & sleep {U + 1}", timeout=1)
    assert result.timed_out and "timed out" in result.format()
    time.sleep(0.3)
    assert not processes_matching(f"sleep {U}") and not processes_matching(f"sleep {U + 1}")
    assert rt.run("echo alive").stdout == "alive\n"


def test_ctrl_c_during_a_command_kills_it_and_keeps_the_sandbox(rt: Runtime) -> None:
    main = threading.get_ident()
    later(0.5, lambda: signal.pthread_kill(main, signal.SIGINT))
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        rt.run(f"sleep {U + 2}", timeout=60)
    assert time.monotonic() - started < 10
    time.sleep(0.3)
    assert not processes_matching(f"sleep {U + 2}")
    assert rt.run("echo still here").stdout == "still here\n"


def test_threads_sharing_a_runtime_each_get_their_own_output(rt: Runtime) -> None:
    errors: list[str] = []

    def worker(name: str) -> None:
        for i in range(40):
            got = rt.run(f"echo {name}-{i}").stdout
            if got != f"{name}-{i}\n":
                errors.append(f"{name}-{i}: {got!r}")

    threads = [threading.Thread(target=worker, args=(f"t{k}",)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


def test_background_output_shows_at_the_start_of_the_next_command(rt: Runtime) -> None:
    rt.run("(sleep 0.3; echo late) &")
    time.sleep(0.8)
    assert rt.run("echo now").stdout == "late\nnow\n"


def test_huge_output_is_capped(rt: Runtime) -> None:
    result = rt.run("seq 1 3000000", timeout=60)
    assert result.truncated and result.stdout.startswith("1\n2\n")
    assert "bytes omitted" in result.stdout and len(result.stdout) < 200_000
    assert rt.run("echo next").stdout == "next\n"


def test_commands_cannot_read_the_shells_command_pipe(rt: Runtime) -> None:
    # The shell reads its commands from a pipe; a command must not inherit it, or it
    # could swallow the next command (or forge an end marker).
    result = rt.run("sh -c 'readlink /proc/$$/fd/0; readlink /proc/$$/fd/3 || echo no-fd-3'")
    assert result.stdout == "/dev/null\nno-fd-3\n", result
    assert rt.run("cat; echo next").stdout == "next\n"


# -- Docker only ----------------------------------------------------------------------


@pytest.mark.docker
def test_container_killed_under_a_command_is_replaced(tmp_path: Path) -> None:
    import docker

    runtime = _make("docker", tmp_path)
    client = docker.from_env()
    try:
        first = runtime.backend.container_id  # type: ignore[attr-defined]
        later(0.5, lambda: client.containers.get(first).kill())
        started = time.monotonic()
        result = runtime.run(f"sleep {U + 3}", timeout=60)
        assert time.monotonic() - started < 20
        assert result.exit_code is None and "container" in result.note, result
        assert runtime.run("echo back").stdout == "back\n"
        assert runtime.backend.container_id != first  # type: ignore[attr-defined]
    finally:
        client.close()
        runtime.cleanup()


@pytest.mark.docker
def test_out_of_memory_is_named(tmp_path: Path) -> None:
    runtime = _make("docker", tmp_path, docker_memory="128m")
    try:
        result = runtime.run("python3 -c 'b = bytearray(400 * 1024 * 1024)'", timeout=60)
        assert result.exit_code == 137 and "out of memory" in result.note, result
        assert runtime.run("echo alive").stdout == "alive\n"
    finally:
        runtime.cleanup()
