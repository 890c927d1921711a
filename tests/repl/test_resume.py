"""The REPL resumes saved sessions (``--resume [ID]``, ``--continue``) and delegates tasks, in a pty."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.openai_server import ScriptedOpenAIServer, text_reply, tool_call_reply
from tests.repl.conftest import messages


def _sessions(home: Path) -> list[str]:
    root = home / ".local" / "share" / "pygent" / "sessions"
    return sorted(p.name for p in root.iterdir() if (p / "history.jsonl").is_file())


def _first_session(spawn: Any, openai_server: ScriptedOpenAIServer, *args: str) -> None:
    openai_server.add_text("Noted: the codeword is heron.")
    term = spawn(*args)
    term.wait_prompt()
    term.send_line("remember heron")
    term.expect(r"Noted: the codeword is heron\.")
    term.wait_prompt()
    term.send_line("/exit")
    assert term.wait_exit() == 0


def _asks_again(term: Any, openai_server: ScriptedOpenAIServer) -> None:
    openai_server.add_text("It was heron.")
    term.wait_prompt()
    term.send_line("which word?")
    term.expect(r"It was heron\.")
    seen = [m.get("content") for m in messages(openai_server.chat_requests[-1])]
    assert "remember heron" in seen and "which word?" in seen
    term.wait_prompt()
    term.send_line("/exit")
    assert term.wait_exit() == 0


def test_resume_by_id_reuses_the_history_and_the_workspace(
    spawn: Any, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    _first_session(spawn, openai_server, "-w", str(workspace))
    [session_id] = _sessions(tmp_path / "home")
    term = spawn("--resume", session_id)
    term.expect(rf"workspace {re.escape(str(workspace))}")
    term.expect(rf"resumed session {session_id}: 2 earlier messages")
    _asks_again(term, openai_server)
    assert _sessions(tmp_path / "home") == [session_id]  # appended to, not copied


def test_continue_takes_the_latest_session_of_this_folder(
    spawn: Any, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    _first_session(spawn, openai_server)
    [session_id] = _sessions(tmp_path / "home")
    term = spawn("--continue")
    term.expect(rf"resumed session {session_id}")
    _asks_again(term, openai_server)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = spawn("--continue", cwd=elsewhere)
    other.expect(r"no saved session was started in")
    assert other.wait_exit() == 2


def test_resume_without_an_id_shows_a_picker(
    spawn: Any, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    _first_session(spawn, openai_server)
    [session_id] = _sessions(tmp_path / "home")
    term = spawn("--resume")
    term.expect(rf"1\. {session_id} .* remember heron")
    term.expect(r"resume which session")
    term.send_line("1")
    term.expect(rf"resumed session {session_id}: 2 earlier messages")
    _asks_again(term, openai_server)


def test_the_repl_delegates_a_task(
    spawn: Any, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """The REPL's session comes from the service, so it has the delegation tools."""

    def responder(body: dict[str, Any]) -> Any:
        msgs = body.get("messages") or []
        first = next((str(m.get("content")) for m in msgs if m.get("role") == "user"), "")
        if "SUBJOB" in first:  # the sub-agent
            return text_reply("sub-agent: job done")
        tools = {t["function"]["name"] for t in body.get("tools") or []}
        assert "delegate_task" in tools
        results = [str(m.get("content")) for m in msgs if m.get("role") == "tool"]
        if not results:
            return tool_call_reply("delegate_task", {"prompt": "SUBJOB say done"})
        if len(results) == 1:
            task_id = re.search(r"started (\S+)", results[0])
            assert task_id, results
            return tool_call_reply("task_status", {"task_id": task_id.group(1), "wait": 15})
        return text_reply(f"The helper reported: {results[-1]}")

    openai_server.set_responder(responder)
    term = spawn("-w", str(tmp_path / "ws"))
    term.wait_prompt()
    term.send_line("hand this to a helper")
    term.expect(r"task \S+ .*finished")
    term.expect(r"The helper reported: task \S+ \(.*\): finished")
    term.wait_prompt()
    term.send_line("/exit")
    assert term.wait_exit() == 0


def test_a_resumed_session_keeps_the_approval_mode_it_was_left_in(
    spawn: Any, openai_server: ScriptedOpenAIServer, tmp_path: Path, repl_env: dict[str, str]
) -> None:
    """``/confirm-bash on`` is saved with the session: the REPL and ``pygent -p`` resume in
    it (and say so), while a mode chosen on the command line wins."""
    import subprocess

    from tests.repl.conftest import pygent_command

    workspace = tmp_path / "ws"
    openai_server.add_text("hello")
    term = spawn("-w", str(workspace))
    term.wait_prompt()
    term.send_line("hi")
    term.expect(r"hello")
    term.wait_prompt()
    term.send_line("/confirm-bash on")
    term.expect(r"confirm-bash on: approval mode confirm")
    term.wait_prompt()
    term.send_line("/exit")
    assert term.wait_exit() == 0
    [session_id] = _sessions(tmp_path / "home")

    term = spawn("--resume", session_id)
    term.expect(r"every command asks first \(the mode this session was left in")
    term.wait_prompt()
    term.send_line("/confirm-bash")
    term.expect(r"confirm-bash on: approval mode confirm")
    term.wait_prompt()
    term.send_line("/exit")
    assert term.wait_exit() == 0

    def once(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*pygent_command(), "--no-docker", "--continue", *args], env=repl_env,
            cwd=tmp_path / "cwd", stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=60,
        )

    # Resumed in "confirm" with no terminal to ask: even `true` is denied.
    openai_server.add_tool_call("bash", {"cmd": "true"})
    openai_server.add_text("not allowed")
    denied = once("-p", "run true")
    assert "bash denied" in denied.stderr, denied.stderr
    # A mode chosen now wins over the saved one.
    openai_server.add_tool_call("bash", {"cmd": "echo ran > proof.txt"})
    openai_server.add_text("done")
    ran = once("--approval-mode", "never", "-p", "write the proof")
    assert ran.returncode == 0, ran.stderr
    assert (workspace / "proof.txt").read_text() == "ran\n"
