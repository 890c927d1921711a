"""``pygent attach``: the terminal on a session an editor drives, through the real host."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pexpect

from pygent.lsp import protocol as p
from tests.openai_server import ScriptedOpenAIServer
from tests.repl.conftest import Term

ATTACH = [sys.executable, "-m", "pygent", "attach"]


def _attach(env: dict[str, str], cwd: Path, *args: str) -> Term:
    child = pexpect.spawn(
        ATTACH[0], [*ATTACH[1:], *args],
        env={**env, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"},
        cwd=str(cwd), encoding="utf-8", codec_errors="replace", dimensions=(50, 120), timeout=30,
    )
    return Term(child)


def _updates(lsp: Any, session_id: str) -> list[dict[str, Any]]:
    return [m["params"]["update"] for m in lsp.seen
            if m.get("method") == p.SESSION_UPDATE and m["params"]["sessionId"] == session_id]


def test_the_terminal_joins_an_editors_session(
    start_host: Any, editors: list[Any], openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    host = start_host()
    editor = host.editor("editor", openai_server)
    editors.append(editor)
    sid = editor.new_session(runtime="local")
    openai_server.add_text("the first answer, from before the terminal came")
    assert editor.call(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "hello"}, 60)["result"]

    term = _attach(host.env, tmp_path, sid[:15])
    try:
        # The transcript so far, replayed: the editor's prompt and the answer.
        term.expect(r"> hello")
        term.expect(r"the first answer, from before the terminal came")
        term.expect(r"attached> ")

        # The editor starts a turn; its approval is asked in the terminal, answered there.
        openai_server.add_tool_call("bash", {"cmd": "echo from-the-attached-terminal"})
        openai_server.add_text("ran it")
        prompt = editor.start(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "run the command"})
        term.expect(r"> run the command")
        term.expect(r"approve bash")
        term.expect(r"allow\?")
        term.send("y\r")
        reply = editor.reply(prompt, 60)
        assert reply["result"]["stopReason"] == "end_turn", reply
        term.expect(r"from-the-attached-terminal")
        assert any(u["type"] == "tool_output" and "from-the-attached-terminal" in u["text"]
                   for u in _updates(editor, sid))

        # A prompt typed in the terminal runs in the same session; the editor sees it live.
        term.expect(r"attached> ")
        openai_server.add_text("answered the terminal")
        term.send("typed in the terminal\r")
        term.expect(r"answered the terminal")
        editor.wait_for(lambda m: m.get("method") == p.SESSION_UPDATE
                        and m["params"]["update"].get("prompt") == "typed in the terminal", 30)
        asked = [r.body["messages"][-1]["content"] for r in openai_server.chat_requests]
        assert "typed in the terminal" in asked

        # Ctrl-D detaches: the session lives on in the host.
        term.expect(r"attached> ")
        term.send("\x04")
        assert term.wait_exit(30) == 0
        assert "detached" in term.text
    finally:
        if term.child.isalive():
            term.child.terminate(force=True)
    live = [s["sessionId"] for s in host.status()["sessions"]]
    assert sid in live


def test_attach_says_what_is_missing(start_host: Any, tmp_path: Path, host_dir: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYGENT_HOST_DIR": str(host_dir),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    gone = subprocess.run([*ATTACH], env=env, capture_output=True, text=True, timeout=60)
    assert gone.returncode == 2 and "no session host" in gone.stderr, gone.stderr
    host = start_host()
    unknown = subprocess.run([*ATTACH, "nosuchsession"], env=host.env, capture_output=True,
                             text=True, timeout=60)
    assert unknown.returncode == 2 and "no live session" in unknown.stderr, unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_older_turns_are_replayed_as_safe_plain_lines() -> None:
    from pygent import events as ev
    from pygent.repl.attach import plain_history

    events: list[ev.Event] = [
        ev.TurnStarted(prompt="fix \x1b]0;owned\x07it"),
        ev.ToolCallProposed(call_id="c1", tool="bash", preview="rm -rf build\x1b[2K"),
        ev.ToolCallFinished(call_id="c1", tool="bash", ok=False, status="failed"),
        ev.MessageDone(text="done \x1b[31mred\x1b[0m"),
        ev.TurnEnded(stop_reason=ev.StopReason.CANCELLED, error="stopped"),
        ev.TurnStarted(prompt="sub", task_id="t1"),  # a delegated task's steps: not shown
    ]
    text = plain_history(events, color=False)
    assert "\x1b" not in text and "\x07" not in text
    assert text.splitlines() == [
        "> fix \\x1b]0;owned\\x07it",
        "  $ rm -rf build\\x1b[2K  (failed)",
        "done red",
        "  [cancelled] stopped",
    ]


def test_a_transcript_from_a_newer_host_is_shown_without_what_cannot_be_read(capsys) -> None:
    """Version skew: the host was upgraded while it ran (or the terminal is older). An
    update with a field this version does not know is left out, counted in one line; the
    rest of the transcript is shown."""
    import asyncio

    from pygent import events as ev
    from pygent.lsp import protocol as p
    from pygent.repl.attach import Attached

    known = [p.unstructure(ev.TurnStarted(prompt="first prompt")),
             p.unstructure(ev.MessageDone(text="an answer that is shown")),
             p.unstructure(ev.TurnEnded(stop_reason=ev.StopReason.END_TURN))]
    newer = {**known[1], "text": "from the future", "sparkles": 3}

    async def replay() -> int:
        session = Attached(None, "s1")  # type: ignore[arg-type]  (no calls are made)
        return session.replay({"seq": 7, "events": [known[0], newer, known[1], known[2]]})

    assert asyncio.run(replay()) == 3
    out = capsys.readouterr().out
    assert "first prompt" in out and "an answer that is shown" in out
    assert "from the future" not in out
    assert "1 update(s) of the transcript could not be read" in out
