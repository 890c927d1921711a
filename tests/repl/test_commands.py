"""Slash commands through the real terminal: /help, hints, /cmd, /cp, /tools, /banned, /usage."""

from __future__ import annotations

import json
from pathlib import Path

from tests.openai_server import RawReply, ScriptedOpenAIServer
from tests.repl.conftest import messages


def test_help_lists_commands_and_explains_one(spawn, openai_server: ScriptedOpenAIServer) -> None:
    term = spawn()
    term.wait_prompt()
    term.send_line("/help")
    start = term.pos
    term.expect(r"Alt\+Enter")
    shown = term.text[start : term.pos]
    for usage in (
        "/cmd COMMAND",
        "/cp SRC [DEST]",
        "/new",
        "/save DIR",
        "/tools [list",
        "/banned [list",
        "/confirm-bash [on|off]",
        "/usage",
        "/exit",
    ):
        assert usage in shown
    term.wait_prompt()
    term.send_line("/help save")
    term.expect(r"/save DIR")
    term.expect(r"pygent --load DIR")
    term.wait_prompt()
    assert openai_server.chat_requests == []


def test_unknown_command_gets_the_closest_match(spawn, openai_server: ScriptedOpenAIServer) -> None:
    term = spawn()
    term.wait_prompt()
    term.send_line("/hepl")
    term.expect(r"unknown command /hepl\. did you mean /help\?")
    term.wait_prompt()
    term.send_line("/sav x")
    term.expect(r"did you mean /save\?")
    term.wait_prompt()
    assert openai_server.chat_requests == []


def test_cmd_runs_in_the_sandbox_and_streams(spawn, openai_server: ScriptedOpenAIServer) -> None:
    term = spawn()
    term.wait_prompt()
    term.send_line("/cmd echo hi")
    term.expect(r"\$ echo hi")
    term.expect(r"\bhi\b")
    term.expect(r"✓")
    term.wait_prompt()
    term.send_line("/cmd sh -c 'exit 3'")
    term.expect(r"\[exit code 3\]")
    term.wait_prompt()
    assert openai_server.chat_requests == [], "/cmd must not involve the model"


def test_cp_copies_a_host_file_into_the_workspace(spawn, tmp_path: Path) -> None:
    source = tmp_path / "data.txt"
    source.write_text("copied content\n")
    workspace = tmp_path / "ws"
    term = spawn("-w", str(workspace))
    term.wait_prompt()
    term.send_line(f"/cp {source} inbox/data.txt")
    term.expect(r"copied .*data\.txt to the workspace as inbox/data\.txt")
    term.wait_prompt()
    assert (workspace / "inbox" / "data.txt").read_text() == "copied content\n"
    term.send_line("/cp /no/such/file")
    term.expect(r"/cp: .*does not exist")
    term.wait_prompt()


def test_tools_disable_hides_a_tool_from_the_model(
    spawn, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_text("ok")
    term = spawn("--omit-tool", "read_image")
    term.wait_prompt()
    term.send_line("/tools disable bash")
    term.expect(r"bash disabled")
    term.wait_prompt()
    term.send_line("/tools")
    term.expect(r"bash\s+disabled")
    term.wait_prompt()
    term.send_line("hello")
    term.expect(r"\bok\b")
    term.wait_prompt()
    offered = {t["function"]["name"] for t in openai_server.chat_requests[-1].body["tools"]}
    assert "bash" not in offered and "read_image" not in offered and "write_file" in offered


def test_banned_command_is_refused(spawn, openai_server: ScriptedOpenAIServer) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo a && curl http://example.invalid"})
    openai_server.add_text("Blocked, as expected.")
    term = spawn("--no-confirm-bash", "--ban-cmd", "wget")
    term.wait_prompt()
    term.send_line("/banned add curl")
    term.expect(r"banned curl")
    term.wait_prompt()
    term.send_line("/banned")
    term.expect(r"banned: wget, curl")
    term.wait_prompt()
    term.send_line("fetch it")
    term.expect(r"Blocked, as expected\.")
    term.wait_prompt()
    result = [m for m in messages(openai_server.chat_requests[-1]) if m["role"] == "tool"][-1]
    assert "banned command: curl" in result["content"]


def test_confirm_bash_toggles_the_approval_mode(spawn) -> None:
    term = spawn("--no-confirm-bash")
    term.wait_prompt()
    term.send_line("/confirm-bash")
    term.expect(r"confirm-bash off: approval mode never")
    term.wait_prompt()
    term.send_line("/confirm-bash on")
    term.expect(r"confirm-bash on: approval mode confirm")
    term.wait_prompt()


def test_usage_shows_token_counts(spawn, openai_server: ScriptedOpenAIServer) -> None:
    openai_server.add_text("counted")
    term = spawn()
    term.wait_prompt()
    term.send_line("/usage on")
    term.expect(r"token usage after each turn: on")
    term.wait_prompt()
    term.send_line("count my tokens")
    term.expect(r"tokens: [\d,]+ in · [\d,]+ out this turn")
    term.wait_prompt()


def test_usage_marks_estimated_counts(spawn, openai_server: ScriptedOpenAIServer) -> None:
    # A server that ignores stream_options.include_usage: no usage chunk at all.
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": "counted roughly"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    openai_server.add(RawReply(200, body.encode(), "text/event-stream"))
    term = spawn("--usage")
    term.wait_prompt()
    term.send_line("count my tokens")
    term.expect(r"counted roughly")
    term.expect(r"tokens: ~[\d,]+ in · ~[\d,]+ out this turn \(session: ~[\d,]+ in · ~[\d,]+ out\)")
    term.expect(r"estimated: the server reported no token usage")
    term.wait_prompt()


def test_new_starts_a_fresh_conversation(spawn, openai_server: ScriptedOpenAIServer) -> None:
    openai_server.add_text("first answer")
    openai_server.add_text("second answer")
    term = spawn()
    term.wait_prompt()
    term.send_line("first question")
    term.expect(r"first answer")
    term.wait_prompt()
    term.send_line("/new")
    term.expect(r"new conversation")
    term.wait_prompt()
    term.send_line("second question")
    term.expect(r"second answer")
    roles = [(m["role"], m.get("content")) for m in messages(openai_server.chat_requests[-1])]
    assert ("user", "first question") not in roles
    assert roles[-1] == ("user", "second question")


def test_custom_command_from_config_py(spawn, tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "config.py").write_text(
        "from pygent.commands import register_command\n"
        "def greet(agent, arg):\n"
        "    print(f'greetings, {arg} from {agent.persona.name}', flush=True)\n"
        "register_command('greet', greet, 'Say hello.')\n"
    )
    term = spawn(cwd=workdir)
    term.wait_prompt()
    term.send_line("/help")
    term.expect(r"/greet ARG\s+Say hello\.")
    term.wait_prompt()
    term.send_line("/greet world")
    term.expect(r"greetings, world from Pygent")
    term.wait_prompt()


def test_input_history_survives_a_restart(spawn, tmp_path: Path) -> None:
    term = spawn()
    term.wait_prompt()
    term.send_line("/usage")
    term.expect(r"tokens: 0 in")
    term.wait_prompt()
    term.send_line("/exit")
    assert term.wait_exit() == 0
    assert list((tmp_path / "home").rglob("repl-history"))
    term = spawn()
    term.wait_prompt()
    term.send("\x1b[A")  # Up: the previous run's last line
    term.expect(r"/exit")
    term.send("\x1b[A")
    term.expect(r"usage")  # prompt_toolkit redraws only what changed after the "/"
    term.send("\r")
    term.expect(r"tokens: 0 in")
