"""/undo, /rewind, /redo and /fork through the real terminal (a pty), over a real folder."""

from __future__ import annotations

from pathlib import Path

from tests.openai_server import ScriptedOpenAIServer
from tests.repl.conftest import messages


def test_rewind_redo_undo_and_fork(spawn, openai_server: ScriptedOpenAIServer,
                                   tmp_path: Path) -> None:
    workspace = tmp_path / "project"
    workspace.mkdir()
    (workspace / "notes.md").write_text("mine\n")
    openai_server.add_tool_call("bash", {"cmd": f"cd {workspace} && echo one > a.txt"})
    openai_server.add_text("made a.txt")
    openai_server.add_tool_call("bash", {"cmd": f"cd {workspace} && rm -rf * && echo two > b.txt"})
    openai_server.add_text("cleaned up")
    term = spawn("-w", str(workspace), "--no-confirm-bash")
    term.wait_prompt()
    term.send_line("make a")
    term.expect("made a.txt")
    term.wait_prompt()
    term.send_line("clean everything")
    term.expect("cleaned up")
    term.wait_prompt()
    assert not (workspace / "notes.md").exists()

    term.send_line("/rewind")
    term.expect(r"make a\s+\+a\.txt")
    term.expect(r"clean everything\s+.*-notes\.md")
    term.wait_prompt()

    # Over the user's own folder the rewind first says what it would write.
    term.send_line("/undo")
    term.expect(r"this rewinds files in .*project: ")
    term.expect(r"type `/undo both yes` to go ahead")
    term.wait_prompt()
    assert not (workspace / "notes.md").exists()
    term.send_line("/undo both yes")
    term.expect(r"rewound to before turn 2: \d+ file\(s\) restored, 1 removed; \d+ message\(s\)")
    term.wait_prompt()
    assert (workspace / "notes.md").read_text() == "mine\n"
    assert (workspace / "a.txt").read_text() == "one\n" and not (workspace / "b.txt").exists()

    term.send_line("/redo")
    term.expect("redone")
    term.wait_prompt()
    assert not (workspace / "notes.md").exists() and (workspace / "b.txt").exists()

    term.send_line("/rewind 1 files yes")
    term.expect("rewound to before turn 1")
    term.wait_prompt()
    assert sorted(p.name for p in workspace.iterdir()) == ["notes.md"]

    term.send_line("/rewind 7")
    term.expect("no turn 7")
    term.wait_prompt()
    term.send_line("/rewind other:1")
    term.expect("belongs to session other")
    term.wait_prompt()

    # The conversation still has both turns (files only were rewound): the model sees them.
    openai_server.add_text("still here")
    term.send_line("are you there")
    term.expect("still here")
    term.wait_prompt()
    sent = messages(openai_server.chat_requests[-1])
    assert [m["content"] for m in sent if m["role"] == "user"] == [
        "make a", "clean everything", "are you there"]

    term.send_line("/fork 2")
    term.expect("forked before turn 2 into a new session")
    term.wait_prompt()
    openai_server.add_text("forked reply")
    term.send_line("in the fork")
    term.expect("forked reply")
    term.wait_prompt()
    sent = messages(openai_server.chat_requests[-1])
    assert [m["content"] for m in sent if m["role"] == "user"] == ["make a", "in the fork"]
    term.send_line("/exit")
    term.wait_exit()
