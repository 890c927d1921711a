"""#15/#18 in the session host: its update log follows the conversation.

A page that reloads (or an editor that attaches) after a conversation rewind reads the
rewound conversation, and after a redo the whole one again; a saved session resumed
into the host replays its earlier turns, with the compaction marker where it was made.
Real ``pygent serve`` and ``pygent lsp --stdio`` processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pygent.lsp import protocol as p
from tests.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.timeout(180)


def _turns(transcript: dict[str, Any]) -> list[str]:
    return [
        e["prompt"] if e["type"] == "turn_started" else f"[{e['summary']}]"
        for e in transcript["events"]
        if e["type"] in ("turn_started", "compaction") and e.get("taskId") is None
    ]


def _ok(reply: dict[str, Any]) -> Any:
    assert "result" in reply, reply
    return reply["result"]


def test_a_reload_after_a_rewind_shows_the_rewound_conversation(
    start_host, editors, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    host = start_host()
    a = host.editor("a", openai_server)
    editors.append(a)
    folder = tmp_path / "project"
    folder.mkdir()
    sid = a.new_session(approvalMode="never", workspaceFolder=str(folder), syncMode="mount")
    for prompt in ("first", "second", "third"):
        openai_server.add_text(f"answer to {prompt}")
        done = _ok(a.call(p.SESSION_PROMPT, {"sessionId": sid, "prompt": prompt}, 60))
        assert done["stopReason"] == "end_turn"
    rewound = _ok(a.call(p.SESSION_REWIND, {"sessionId": sid, "turnId": f"{sid}:2",
                                            "files": False, "conversation": True}))
    assert rewound["messagesRemoved"] == 4 and rewound["canRedo"]

    # A page reload: a new connection reads the transcript from the host's log.
    b = host.editor("b", openai_server)
    editors.append(b)
    after = _ok(b.call(p.SESSION_TRANSCRIPT, {"sessionId": sid}))
    assert _turns(after) == ["first"]
    assert "answer to second" not in str(after) and "answer to first" in str(after)

    _ok(a.call(p.SESSION_REDO, {"sessionId": sid}))
    redone = _ok(b.call(p.SESSION_TRANSCRIPT, {"sessionId": sid}))
    assert _turns(redone) == ["first", "second", "third"]

    # A fork at turn 3 starts its log with the two turns it keeps.
    fork = _ok(a.call(p.SESSION_FORK, {"sessionId": sid, "turnId": f"{sid}:3"}))
    assert _turns(_ok(b.call(p.SESSION_TRANSCRIPT, {"sessionId": fork["sessionId"]}))) == [
        "first", "second"]

    # The conversation goes on from there and the log with it.
    openai_server.add_text("answer to fourth")
    _ok(a.call(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "fourth"}, 60))
    _ok(a.call(p.SESSION_REWIND, {"sessionId": sid, "turnId": f"{sid}:1",
                                  "files": False, "conversation": True}))
    assert _turns(_ok(b.call(p.SESSION_TRANSCRIPT, {"sessionId": sid}))) == []


def test_a_session_resumed_into_the_host_replays_its_turns_and_compaction(
    start_host, editors, openai_server: ScriptedOpenAIServer
) -> None:
    host = start_host()
    a = host.editor("a", openai_server)
    editors.append(a)
    sid = a.new_session(approvalMode="never")
    for i in range(3):
        openai_server.add_tool_call("bash", {"cmd": f"echo step{i}"})
    openai_server.add_text("done")
    _ok(a.call(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "work"}, 60))
    openai_server.add_text("## Task\nwork\n## State of the work\nthree steps done")
    assert _ok(a.call(p.SESSION_COMPACT, {"sessionId": sid}, 60))["ok"]
    openai_server.add_text("more done")
    _ok(a.call(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "more"}, 60))
    _ok(a.call(p.SESSION_CLOSE, {"sessionId": sid}))

    b = host.editor("b", openai_server)
    editors.append(b)
    _ok(b.call(p.SESSION_RESUME, {"sessionId": sid, "runtime": "local"}))
    marker = "[## Task\nwork\n## State of the work\nthree steps done]"
    c = host.editor("c", openai_server)  # a page opened after the resume
    editors.append(c)
    assert _turns(_ok(c.call(p.SESSION_TRANSCRIPT, {"sessionId": sid}))) == ["work", marker, "more"]


def test_the_log_is_cut_put_back_or_rebuilt_as_the_conversation_changes() -> None:
    from pygent.lsp.transcript import SessionLogs

    def turn(prompt: str) -> list[dict[str, Any]]:
        return [{"type": "turn_started", "taskId": None, "prompt": prompt},
                {"type": "notice", "taskId": None, "level": "info", "text": f"live {prompt}"},
                {"type": "turn_ended", "taskId": None, "stopReason": "end_turn", "text": "",
                 "error": ""}]

    def history(*prompts: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"role": "system", "content": "s"}]
        for prompt in prompts:
            out += [{"role": "user", "content": prompt},
                    {"role": "assistant", "content": f"re {prompt}"}]
        return out

    logs = SessionLogs()
    for update in turn("a") + turn("b") + turn("c"):
        logs.log("s1").append(update)
    logs.follow("s1", history("a"))  # a rewind of turn 2: live updates of turn 1 kept
    assert [e.get("text") for e in logs.snapshot("s1") if e["type"] == "notice"] == ["live a"]
    logs.follow("s1", history("a", "b", "c"))  # its redo: the cut updates come back
    assert logs.snapshot("s1") == turn("a") + turn("b") + turn("c")
    # A conversation the log does not hold (another prompt): rebuilt from the history.
    logs.follow("s1", history("a", "x"))
    assert [e.get("prompt") for e in logs.snapshot("s1") if e["type"] == "turn_started"] == [
        "a", "x"]
    assert not any(e["type"] == "notice" for e in logs.snapshot("s1"))
