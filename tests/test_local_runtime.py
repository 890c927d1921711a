"""The local backend through the Runtime facade: persistent shell, kills, caps, env."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import pytest

from pygent.errors import RuntimeUnavailable
from pygent.runtime import Runtime
from pygent.settings import load_settings


@pytest.fixture()
def rt(tmp_path: Path):
    settings = load_settings({"output_limit": 4 * 1024 * 1024}, environ={}, cwd=tmp_path)
    runtime = Runtime(use_docker=False, workspace=tmp_path / "ws", settings=settings)
    yield runtime
    runtime.cleanup()


def _processes() -> str:
    return os.popen("ps -eo args").read()


#: Sleep durations unique to this run, so a check never sees another test's process.
U = random.randint(100_000, 999_999)


def test_bash_returns_the_command_and_its_output(rt: Runtime) -> None:
    out = rt.bash("echo 'Hello World'")
    assert out.startswith("$ echo 'Hello World'\n") and "Hello World" in out


def test_cd_export_and_functions_persist(rt: Runtime) -> None:
    rt.bash("mkdir -p sub && cd sub && export GREETING=hi && f() { echo fn-$1; }")
    result = rt.run("pwd; echo $GREETING; f x")
    assert result.stdout.splitlines() == [str(rt.workspace.resolve() / "sub"), "hi", "fn-x"]


def test_exit_status_and_streams_are_kept(rt: Runtime) -> None:
    result = rt.run("echo out; echo err >&2; three() { return 3; }; three")
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 3)
    assert "[exit code 3]" in result.format()


def test_streaming_callback_receives_output_as_it_comes(rt: Runtime) -> None:
    chunks: list[tuple[str, str]] = []
    rt.run("echo one; sleep 0.2; echo two >&2", on_output=lambda s, t: chunks.append((s, t)))
    assert "".join(t for s, t in chunks if s == "stdout") == "one\n"
    assert "".join(t for s, t in chunks if s == "stderr") == "two\n"


def test_timeout_kills_the_whole_process_tree_and_the_shell_survives(rt: Runtime) -> None:
    result = rt.run(f"sleep {U + 1} & sleep {U + 2}", timeout=1)
    assert result.timed_out and "timed out" in result.format()
    time.sleep(0.2)
    assert f"sleep {U + 1}" not in _processes() and f"sleep {U + 2}" not in _processes()
    assert rt.run("echo alive").stdout == "alive\n"


def test_stdin_is_eof_so_interactive_programs_return(rt: Runtime) -> None:
    result = rt.run("cat; python3 -c 'import sys; print(repr(sys.stdin.read()))'", timeout=10)
    assert result.exit_code == 0 and "''" in result.stdout


def test_huge_output_is_capped_keeping_head_and_tail(rt: Runtime) -> None:
    result = rt.run("seq 1 2000000", timeout=60)
    assert result.truncated and result.stdout.startswith("1\n2\n")
    assert "bytes omitted" in result.stdout and len(result.stdout) < 200_000


def test_endless_output_is_killed_at_the_cap(rt: Runtime) -> None:
    result = rt.run("yes", timeout=60)
    assert result.truncated and not result.timed_out
    assert rt.run("echo next").stdout == "next\n"


def test_exit_restarts_the_shell_in_the_same_directory(rt: Runtime) -> None:
    rt.run("mkdir -p d && cd d")
    result = rt.run("exit 4")
    assert "shell" in result.note
    assert rt.run("pwd").stdout.strip() == str(rt.workspace.resolve() / "d")


def test_host_secrets_are_not_in_the_command_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYGENT_CANARY", "sk-canary-local")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-key")
    settings = load_settings(environ={}, cwd=tmp_path)
    with Runtime(use_docker=False, settings=settings) as rt:
        env = rt.run("env").stdout
        assert "sk-canary-local" not in env and "sk-host-key" not in env
        assert rt.run("echo $PAGER $GIT_TERMINAL_PROMPT").stdout == "cat 0\n"


def test_cancel_kills_the_running_command(rt: Runtime) -> None:
    async def go() -> None:
        task = asyncio.ensure_future(rt.arun(f"sleep {U + 3}", timeout=60))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert rt.run("echo ok").stdout == "ok\n"
    assert f"sleep {U + 3}" not in _processes()


def test_file_helpers_and_upload_export(rt: Runtime, tmp_path: Path) -> None:
    src = tmp_path / "host.txt"
    src.write_text("from host")
    rt.upload_file(src)
    assert rt.read_file("host.txt") == "from host"
    rt.write_file("out/result.txt", "done")
    dest = rt.export_file("out/result.txt", tmp_path / "exported.txt")
    assert dest.read_text() == "done"
    assert rt.bash("cat out/result.txt").endswith("done")


def test_temporary_workspace_is_removed_and_kept_workspace_is_not(tmp_path: Path) -> None:
    settings = load_settings(environ={}, cwd=tmp_path)
    temp = Runtime(use_docker=False, settings=settings)
    path = temp.workspace
    temp.cleanup()
    assert not path.exists()
    kept = Runtime(use_docker=False, workspace=tmp_path / "keep", settings=settings)
    kept.write_file("f", "x")
    kept.cleanup()
    assert (tmp_path / "keep" / "f").read_text() == "x"
    with pytest.raises(RuntimeUnavailable, match="cleaned up"):
        kept.bash("true")


def test_init_files_are_copied_in(tmp_path: Path) -> None:
    seed = tmp_path / "bootstrap.py"
    seed.write_text("x = 1\n")
    settings = load_settings({"init_files": [str(seed)]}, environ={}, cwd=tmp_path)
    with Runtime(use_docker=False, settings=settings) as rt:
        assert rt.read_file("bootstrap.py") == "x = 1\n"


def test_banned_commands_are_refused_by_the_runtime_too(tmp_path: Path) -> None:
    settings = load_settings({"banned_commands": ["rm"]}, environ={}, cwd=tmp_path)
    with Runtime(use_docker=False, settings=settings) as rt:
        rt.write_file("keep.txt", "x")
        out = rt.bash("sh -c 'rm keep.txt'")
        assert "refused: banned command: rm" in out
        assert rt.read_file("keep.txt") == "x"
        assert "fine" in rt.bash("echo fine")


def test_a_timed_out_command_list_does_not_go_on(rt: Runtime) -> None:
    """`sleep 100; rm -rf x` must not run `rm` once `sleep` is killed."""
    rt.write_file("x/keep.txt", "x")
    result = rt.run("echo before; sleep 100; rm -rf x; echo after", timeout=1)
    assert result.timed_out and "before" in result.stdout and "after" not in result.stdout
    time.sleep(0.5)
    assert rt.read_file("x/keep.txt") == "x"
    assert "restarted" in result.note and rt.run("pwd").exit_code == 0


def test_short_output_streams_before_the_command_ends(rt: Runtime) -> None:
    seen: list[tuple[float, str]] = []
    start = time.monotonic()
    rt.run("echo one; sleep 1; echo two", on_output=lambda s, t: seen.append((time.monotonic() - start, t)))
    first = next(t for t, text in seen if "one" in text)
    assert first < 0.9, seen

