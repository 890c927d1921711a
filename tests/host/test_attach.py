"""``pygent attach``: the terminal on a session an editor drives, through the real host."""

from __future__ import annotations

import re
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


def test_an_approval_answered_elsewhere_stops_being_asked_here(
    start_host: Any, editors: list[Any], openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """The terminal and the editor are both asked; the editor answers first: the
    terminal says so, stops asking, and takes prompts again."""
    host = start_host()
    editor = host.editor("editor", openai_server)
    editors.append(editor)
    sid = editor.new_session(runtime="local")
    openai_server.add_text("ready")
    assert editor.call(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "hello"}, 60)["result"]
    term = _attach(host.env, tmp_path, sid)
    try:
        term.expect(r"attached> ")
        openai_server.add_tool_call("bash", {"cmd": "echo answered-in-the-editor"})
        openai_server.add_text("it ran")
        prompt = editor.start(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "run it"})
        term.expect(r"allow\?")
        asked = editor.permission(30)
        editor.answer(asked["id"], {"optionId": "allow_once"})
        term.expect(r"answered in another window: allowed")
        term.expect(r"answered-in-the-editor")
        assert editor.reply(prompt, 60)["result"]["stopReason"] == "end_turn"
        term.expect(r"it ran")
        term.expect(r"attached> ")
        # The question is gone: what is typed now is a prompt, not an answer to it.
        openai_server.add_text("a new turn")
        term.send("y\r")
        term.expect(r"a new turn")
        asked_model = [r.body["messages"][-1]["content"] for r in openai_server.chat_requests]
        assert asked_model[-1] == "y"
        term.expect(r"attached> ")
        term.send("\x04")
        assert term.wait_exit(30) == 0
    finally:
        if term.child.isalive():
            term.child.terminate(force=True)


def test_a_long_transcript_is_shown_whole_in_order_with_the_last_turns_rendered(
    start_host: Any, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """Attaching to a longer session: every turn is on screen, in order; the older ones
    as plain lines (the prompt, the command and how it ended, the answer as written), the
    last ``FULL_TURNS`` as the REPL shows them (command panels with their output, the
    answer's Markdown rendered)."""
    import asyncio

    from pygent.lsp.client import RpcClient
    from pygent.repl.attach import FULL_TURNS

    host = start_host(PYGENT_APPROVAL_MODE="never")
    turns = FULL_TURNS + 7

    async def fill() -> str:
        client = await RpcClient.connect_unix(host.socket)
        await client.initialize("test")
        sid = str((await client.request(p.SESSION_NEW, {"runtime": "local"}))["sessionId"])
        for i in range(turns):
            openai_server.add_tool_call("bash", {"cmd": f"echo out-{i}"})
            openai_server.add_text(f"answer **number {i}** done")
            done = await client.request(p.SESSION_PROMPT, {"sessionId": sid, "prompt": f"step {i}"})
            assert done["stopReason"] == "end_turn", done
        await client.aclose()
        return sid

    sid = asyncio.run(fill())
    term = _attach(host.env, tmp_path, sid)
    try:
        term.expect(r"attached> ")
        shown = term.text
        term.send("\x04")
        assert term.wait_exit(30) == 0
    finally:
        if term.child.isalive():
            term.child.terminate(force=True)
    positions = [shown.find(f"> step {i}\n") for i in range(turns)]
    assert -1 not in positions and positions == sorted(positions), positions
    older, last = range(turns - FULL_TURNS), range(turns - FULL_TURNS, turns)
    for i in older:  # plain lines, the answer's Markdown as written
        assert f"$ echo out-{i}  (ok)" in shown
        assert f"answer **number {i}** done" in shown
    for i in last:  # a panel with the command and its output; the Markdown rendered
        turn = shown[positions[i]:positions[i + 1] if i + 1 < turns else len(shown)]
        assert re.search(rf"╭─ bash ─+╮\n│ \$ echo out-{i} +│\n│ out-{i} +│", turn), turn
        assert f"answer number {i} done" in turn and "**" not in turn, turn


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

    # As the host sends them: the wire form of each event.
    events: list[ev.Event] = [
        ev.TurnStarted(prompt="fix \x1b]0;owned\x07it"),
        ev.ToolCallProposed(call_id="c1", tool="bash", preview="rm -rf build\x1b[2K"),
        ev.ToolCallFinished(call_id="c1", tool="bash", ok=False, status="failed"),
        ev.MessageDone(text="done \x1b[31mred\x1b[0m"),
        ev.TurnEnded(stop_reason=ev.StopReason.CANCELLED, error="stopped"),
        ev.TurnStarted(prompt="sub", task_id="t1"),  # a delegated task's steps: not shown
    ]
    text = plain_history([p.unstructure(e) for e in events], color=False)
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


def test_the_terminal_reads_every_update_as_the_protocol_writes_it() -> None:
    """``pygent attach`` reads updates without the protocol's converter (too slow to
    import for a terminal that must show a screen at once): it reads back every kind of
    event the converter writes, and refuses what the converter refuses."""
    import pytest

    from pygent import events as ev
    from pygent.lsp import protocol as p
    from pygent.repl.update_reader import UnreadableUpdate, read_update

    samples: list[ev.Event] = [
        ev.TurnStarted(prompt="p", task_id="t1"), ev.MessageDelta(text="d"),
        ev.MessageDiscarded(reason="r"), ev.MessageDone(text="m"),
        ev.ToolCallProposed(call_id="c", tool="bash", arguments={"cmd": "ls", "n": [1]},
                            preview="ls", locations=["a.py"]),
        ev.ToolCallStarted(call_id="c", tool="bash"), ev.ToolOutput(call_id="c", text="o", stream="stderr"),
        ev.ToolCallFinished(call_id="c", tool="bash", ok=False, output="x", status="denied"),
        ev.Usage(prompt_tokens=3, completion_tokens=4, estimated=True, cost=0.5, total_cost=None),
        ev.Compaction(ok=False, summary="s", replaced=2, error="e"),
        ev.Notice(level="warning", text="n"), ev.TaskStatus(status="failed", persona="x", steps=2),
        ev.TurnEnded(stop_reason=ev.StopReason.BUDGET, error="spent"),
        ev.Permission(call_id="c", state="resolved", outcome="allow_once"),
        ev.Changes(count=2, paths=["a", "b"]),
        ev.McpServer(name="git", state="ready", where="host", tools=["log"], restarts=1),
    ]
    assert {type(e) for e in samples} == set(ev.SESSION_EVENTS), "a new event kind: add a sample"
    for event in samples:
        wire = p.unstructure(event)
        assert read_update(wire) == event == p.structure(
            {"sessionId": "", "seq": 0, "update": wire}, p.SessionUpdateParams).update
    bad = [{"type": "nonsense"}, {"type": "message_done", "text": 3},
           {"type": "message_done", "text": "x", "sparkles": 1},
           {"type": "turn_ended", "stopReason": "exploded"}, {"type": "notice", "level": "loud"},
           {"type": "usage", "promptTokens": True}, "not an object"]
    for item in bad:
        with pytest.raises(UnreadableUpdate):
            read_update(item)
        with pytest.raises(p.ParamsError):
            p.structure({"sessionId": "", "seq": 0, "update": item}, p.SessionUpdateParams)
