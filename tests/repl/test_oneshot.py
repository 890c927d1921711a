"""``pygent -p``: the real process, the scripted model server, every output format and exit status."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pygent.oneshot import (
    EXIT_ASK_USER,
    EXIT_CANCELLED,
    EXIT_DENIED,
    EXIT_ERROR,
    EXIT_MAX_STEPS,
    EXIT_MAX_TOKENS,
    EXIT_OK,
    EXIT_USAGE,
)
from tests.openai_server import ScriptedOpenAIServer
from tests.repl.conftest import messages, pygent_command


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "cwd"
    path.mkdir()
    return path


def once(
    env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*pygent_command(), "--no-docker", *args],
        env=env,
        cwd=cwd,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_text_answer_with_yes_runs_the_tools(
    repl_env: dict[str, str], openai_server: ScriptedOpenAIServer, workdir: Path
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo ran > proof.txt"})
    openai_server.add_text("The proof file is written.")
    out = once(repl_env, workdir, "--cwd", "--yes", "-p", "write the proof file")
    assert out.returncode == EXIT_OK, out.stderr
    assert out.stdout == "The proof file is written.\n"
    assert (workdir / "proof.txt").read_text() == "ran\n"
    assert "Traceback" not in out.stderr


def test_asks_become_denials_with_a_message(
    repl_env: dict[str, str], openai_server: ScriptedOpenAIServer, workdir: Path
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo ran > proof.txt"})
    openai_server.add_text("I could not run it.")
    out = once(repl_env, workdir, "--cwd", "-p", "write the proof file")
    assert out.returncode == EXIT_DENIED
    assert out.stdout == "I could not run it.\n"
    assert "bash denied" in out.stderr and "--yes" in out.stderr
    assert not (workdir / "proof.txt").exists()
    # The model was told why, and how the user can allow it.
    tool = [m for m in messages(openai_server.chat_requests[-1]) if m["role"] == "tool"]
    assert "--yes" in tool[-1]["content"]


def test_prompt_from_stdin_and_json_output(
    repl_env: dict[str, str], openai_server: ScriptedOpenAIServer, workdir: Path
) -> None:
    openai_server.add_text("Four.")
    out = once(repl_env, workdir, "--output-format", "json", "-p", stdin="what is 2+2?\n")
    assert out.returncode == EXIT_OK, out.stderr
    result = json.loads(out.stdout)
    assert result["type"] == "result" and result["answer"] == "Four."
    assert result["stop_reason"] == "end_turn" and result["exit_status"] == 0
    assert result["usage"]["prompt_tokens"] > 0 and result["session_id"]
    first = messages(openai_server.chat_requests[0])
    assert first[-1] == {"role": "user", "content": "what is 2+2?"}


def test_piped_input_is_appended_to_the_prompt(
    repl_env: dict[str, str], openai_server: ScriptedOpenAIServer, workdir: Path
) -> None:
    openai_server.add_text("Looks fine.")
    out = once(repl_env, workdir, "-p", "review this diff", stdin="+added line\n")
    assert out.returncode == EXIT_OK, out.stderr
    content = messages(openai_server.chat_requests[0])[-1]["content"]
    assert content.startswith("review this diff") and "+added line" in content


def test_stream_json_is_one_event_per_line(
    repl_env: dict[str, str], openai_server: ScriptedOpenAIServer, workdir: Path
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo streamed"})
    openai_server.add_text("Done streaming.")
    out = once(repl_env, workdir, "--yes", "--output-format", "stream-json", "-p", "go")
    assert out.returncode == EXIT_OK, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    kinds = [line["type"] for line in lines]
    assert kinds[0] == "turn_started" and kinds[-2:] == ["turn_ended", "result"]
    assert "tool_call_proposed" in kinds and "message_delta" in kinds
    output = "".join(line["text"] for line in lines if line["type"] == "tool_output")
    assert "streamed" in output
    assert lines[-1]["answer"] == "Done streaming."


@pytest.mark.parametrize(
    ("script", "args", "status"),
    [
        ("max_steps", ["--max-steps", "1", "--yes"], EXIT_MAX_STEPS),
        ("error", [], EXIT_ERROR),
        ("ask", [], EXIT_ASK_USER),
        ("max_tokens", [], EXIT_MAX_TOKENS),
    ],
)
def test_exit_status_reflects_the_stop_reason(
    repl_env: dict[str, str],
    openai_server: ScriptedOpenAIServer,
    workdir: Path,
    script: str,
    args: list[str],
    status: int,
) -> None:
    if script == "max_steps":
        openai_server.add_tool_call("bash", {"cmd": "echo one"})
    elif script == "error":
        openai_server.add_error(400, code="model_not_found")
    elif script == "max_tokens":  # finish_reason "length": the answer is cut short
        openai_server.add_length_cutoff("a cut-off ans", tool_name=None)
    else:
        openai_server.add_tool_call("ask_user", {"prompt": "Which file?"})
    out = once(repl_env, workdir, *args, "--output-format", "json", "-p", "do it")
    assert out.returncode == status, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    assert result["exit_status"] == status
    if script == "ask":
        assert result["question"] == "Which file?"
    if script == "error":
        assert result["error"]
    if script == "max_tokens":
        assert result["stop_reason"] == "max_tokens" and result["answer"] == "a cut-off ans"


def test_usage_errors_exit_2(repl_env: dict[str, str], workdir: Path) -> None:
    empty = once(repl_env, workdir, "-p", stdin="   \n")
    assert empty.returncode == EXIT_USAGE and "needs a prompt" in empty.stderr
    bad = once(repl_env, workdir, "--output-format", "yaml", "-p", "hi")
    assert bad.returncode == EXIT_USAGE
    unknown = once(repl_env, workdir, "--resume", "nope", "-p", "hi")
    assert unknown.returncode == EXIT_USAGE and "no saved session 'nope'" in unknown.stderr


def test_sigint_cancels_the_turn_and_exits_130(
    repl_env: dict[str, str], openai_server: ScriptedOpenAIServer, workdir: Path
) -> None:
    openai_server.add_slow_stream("word " * 400, delay_per_chunk=0.05)
    child = subprocess.Popen(
        [*pygent_command(), "--no-docker", "--output-format", "stream-json", "-p", "talk"],
        env=repl_env,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    for line in child.stdout:  # the answer is streaming: interrupt it
        if json.loads(line)["type"] == "message_delta":
            break
    started = time.monotonic()
    child.send_signal(signal.SIGINT)
    rest = child.stdout.read()
    assert child.wait(timeout=20) == EXIT_CANCELLED
    assert time.monotonic() - started < 10
    result = json.loads(rest.splitlines()[-1])
    assert result["stop_reason"] == "cancelled"


def test_a_one_shot_session_is_saved_and_continued(
    repl_env: dict[str, str], openai_server: ScriptedOpenAIServer, workdir: Path
) -> None:
    openai_server.add_text("Noted: the codeword is heron.")
    first = once(repl_env, workdir, "--output-format", "json", "-p", "remember heron")
    assert first.returncode == EXIT_OK, first.stderr
    session_id = json.loads(first.stdout)["session_id"]
    openai_server.add_text("It was heron.")
    again = once(repl_env, workdir, "--continue", "--output-format", "json", "-p", "which word?")
    assert again.returncode == EXIT_OK, again.stderr
    assert json.loads(again.stdout)["session_id"] == session_id
    seen = [m.get("content") for m in messages(openai_server.chat_requests[-1])]
    assert "remember heron" in seen and "which word?" in seen
    openai_server.add_text("Still heron.")
    by_id = once(repl_env, workdir, "--resume", session_id[:15], "-p", "and now?")
    assert by_id.returncode == EXIT_OK, by_id.stderr
    assert len(messages(openai_server.chat_requests[-1])) == 6  # system + 2 turns + 1


def test_one_shot_imports_neither_rich_nor_prompt_toolkit(
    repl_env: dict[str, str], openai_server: ScriptedOpenAIServer, workdir: Path
) -> None:
    import sys

    openai_server.add_text("ok")
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pygent", "--no-docker", "-p", "hi"],
        env=repl_env,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == EXIT_OK, out.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.split(".")[0] in ("rich", "prompt_toolkit")}


def test_every_stop_reason_has_its_exit_status() -> None:
    from pygent import events as ev
    from pygent.oneshot import EXIT_STATUSES, exit_status

    assert set(EXIT_STATUSES) == set(ev.StopReason)
    assert exit_status(ev.StopReason.END_TURN, denied=True) == EXIT_DENIED
    assert exit_status(ev.StopReason.MAX_STEPS, denied=True) == EXIT_MAX_STEPS
