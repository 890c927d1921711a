"""End-to-end REPL sessions: a real ``pygent`` in a pty, the real SDK, a scripted model server."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.openai_server import ScriptedOpenAIServer
from tests.repl.conftest import messages, pygent_command, sandbox_processes


def test_version_flag_and_subcommand(repl_env: dict[str, str]) -> None:
    from pygent import __version__

    for argv in (["--version"], ["version"]):
        out = subprocess.run(
            pygent_command() + argv, env=repl_env, capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0
        assert __version__ in out.stdout


def test_full_session_writes_a_file_and_runs_it(
    spawn, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    openai_server.add_tool_call(
        "write_file", {"path": "hello.py", "content": "print('hello from pygent')\n"}
    )
    openai_server.add_tool_call("bash", {"cmd": "python3 hello.py"})
    openai_server.add_text("All **done**: the script printed its greeting.")
    term = spawn("-w", str(workspace), "--no-confirm-bash")
    term.expect(r"Pygent · model test-model · local")
    term.wait_prompt()
    term.send_line("write hello.py and run it")
    term.expect(r"write_file hello\.py")
    term.expect(r"\$ python3 hello\.py")
    term.expect(r"hello from pygent")
    term.expect(r"All done: the script printed its greeting\.")
    term.wait_prompt()
    assert (workspace / "hello.py").read_text() == "print('hello from pygent')\n"
    # The model saw the command's output as the tool result.
    last = messages(openai_server.chat_requests[-1])
    assert any(m["role"] == "tool" and "hello from pygent" in m["content"] for m in last)
    term.send_line("/exit")
    assert term.wait_exit() == 0


def test_approval_denied_with_a_message_reaches_the_model(
    spawn, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    openai_server.add_tool_call("bash", {"cmd": "echo ran > proof.txt"})
    openai_server.add_text("Understood, I will not run it.")
    term = spawn("-w", str(workspace))  # local mode: every command asks
    term.wait_prompt()
    term.send_line("make a proof file")
    term.expect(r"approve bash\?")
    term.expect(r"\$ echo ran > proof\.txt")
    term.expect(r"allow\? \[y/n/a/d/m\]")
    term.send_line("n not on my machine, please")
    term.expect(r"bash · denied")
    term.expect(r"Understood, I will not run it\.")
    term.wait_prompt()
    assert not (workspace / "proof.txt").exists()
    tool_results = [m for m in messages(openai_server.chat_requests[1]) if m["role"] == "tool"]
    assert tool_results, "the denial must be sent to the model as the tool result"
    assert (
        "the user denied this tool call: not on my machine, please" in tool_results[-1]["content"]
    )


def test_approval_allowed_runs_the_command(
    spawn, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    openai_server.add_tool_call("bash", {"cmd": "echo approved-run > proof.txt && cat proof.txt"})
    openai_server.add_text("The file is there.")
    term = spawn("-w", str(workspace))
    term.wait_prompt()
    term.send_line("make a proof file")
    term.expect(r"allow\? \[y/n/a/d/m\]")
    term.send_line("y")
    term.expect(r"approved-run")
    term.expect(r"The file is there\.")
    term.wait_prompt()
    assert (workspace / "proof.txt").read_text() == "approved-run\n"


def test_always_allow_stops_asking_for_that_command(
    spawn, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo first"})
    openai_server.add_tool_call("bash", {"cmd": "echo second"})
    openai_server.add_text("Both ran.")
    term = spawn()
    term.wait_prompt()
    term.send_line("echo twice")
    term.expect(r"always allow commands starting with `echo`")
    term.expect(r"allow\? ")
    term.send_line("a")
    term.expect(r"second")
    term.expect(r"Both ran\.")
    term.wait_prompt()
    assert term.text.count("approve bash?") == 1


def test_save_then_load_resumes_the_conversation(
    spawn, openai_server: ScriptedOpenAIServer, tmp_path: Path, repl_env: dict[str, str]
) -> None:
    saved = tmp_path / "snap"
    openai_server.add_text("Noted: the code word is PINEAPPLE.")
    term = spawn()
    term.wait_prompt()
    term.send_line("remember the code word PINEAPPLE")
    term.expect(r"Noted: the code word is PINEAPPLE\.")
    term.wait_prompt()
    term.send_line("/cmd echo kept > notes.txt")
    term.wait_prompt()
    term.send_line(f"/save {saved}")
    term.expect(r"resume it with: pygent --load \S+")
    term.wait_prompt()
    term.send_line("/exit")
    assert term.wait_exit() == 0
    assert (saved / "workspace" / "notes.txt").read_text() == "kept\n"
    settings = json.loads((saved / "settings.json").read_text())
    assert "api_key" not in settings and settings["model"] == "test-model"

    openai_server.add_text("The code word was PINEAPPLE.")
    term = spawn("--load", str(saved))
    term.expect(r"resumed .*snap: 2 earlier messages")
    term.wait_prompt()
    term.send_line("what was the code word?")
    term.expect(r"The code word was PINEAPPLE\.")
    term.wait_prompt()
    history = [(m["role"], m.get("content")) for m in messages(openai_server.chat_requests[-1])]
    assert ("user", "remember the code word PINEAPPLE") in history
    assert ("assistant", "Noted: the code word is PINEAPPLE.") in history
    assert history[-1] == ("user", "what was the code word?")
    term.send_line("/cmd cat notes.txt")
    term.expect(r"kept")
    term.wait_prompt()
    term.send_line("/exit")
    assert term.wait_exit() == 0
    assert (saved / "workspace" / "notes.txt").exists(), "a resumed workspace is kept"

    # PYGENT_SNAPSHOT does the same as --load; the session went on in the directory.
    term = spawn(env=dict(repl_env, PYGENT_SNAPSHOT=str(saved)))
    term.expect(r"resumed .*snap: 4 earlier messages")
    term.wait_prompt()
    term.send_line(f"/save {saved}")  # onto itself: history and workspace are already there
    term.expect(r"saved the session to .*snap")
    term.wait_prompt()
    assert (saved / "workspace" / "notes.txt").read_text() == "kept\n"


def test_ctrl_c_cancels_a_running_command_and_keeps_the_session(
    spawn, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_tool_call("bash", {"cmd": "echo sleeping-now; sleep 37.25"})
    openai_server.add_text("Still here after the interruption.")
    term = spawn("--no-confirm-bash")
    term.wait_prompt()
    term.send_line("wait a while")
    term.expect(r"sleeping-now")
    deadline = time.monotonic() + 5  # the echo comes before the shell starts sleep
    while not sandbox_processes("sleep 37.25") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_processes("sleep 37.25"), "the command should be running"
    started = time.monotonic()
    term.send("\x03")
    term.expect(r"cancelled")
    term.wait_prompt(timeout=10)
    assert time.monotonic() - started < 5
    assert sandbox_processes("sleep 37.25") == []
    term.send_line("are you there?")
    term.expect(r"Still here after the interruption\.")
    term.wait_prompt()
    # The interrupted call has a result, so the next request is valid for the provider.
    sent = messages(openai_server.chat_requests[-1])
    assert any(m["role"] == "tool" and "cancelled" in m["content"] for m in sent)


def test_interactive_program_gets_end_of_input(spawn, openai_server: ScriptedOpenAIServer) -> None:
    openai_server.add_tool_call("bash", {"cmd": "python3; echo python-exited-$?"})
    openai_server.add_text("Python returned.")
    term = spawn("--no-confirm-bash")
    term.wait_prompt()
    term.send_line("start python")
    term.expect(r"python-exited-0", timeout=10)
    term.expect(r"Python returned\.")
    term.wait_prompt()


def test_ask_user_with_options_shows_a_menu(spawn, openai_server: ScriptedOpenAIServer) -> None:
    openai_server.add_tool_call(
        "ask_user",
        {"prompt": "Which colour should the button be?", "options": ["red", "green", "blue"]},
    )
    openai_server.add_text("Green it is.")
    term = spawn()
    term.wait_prompt()
    term.send_line("style the button")
    term.expect(r"Pygent asks")
    term.expect(r"Which colour should the button be\?")
    term.expect(r"(?s)1\. red\s.*2\. green\s.*3\. blue")
    term.expect(r"answer \(1-3 or your own words\):")
    term.send_line("2")
    term.expect(r"Green it is\.")
    term.wait_prompt()
    assert messages(openai_server.chat_requests[-1])[-1] == {"role": "user", "content": "green"}


def test_ask_user_without_options_takes_free_text(
    spawn, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_tool_call("ask_user", {"prompt": "What is the project called?"})
    openai_server.add_text("Thanks.")
    term = spawn()
    term.wait_prompt()
    term.send_line("set up the project")
    term.expect(r"What is the project called\?")
    term.expect(r"answer: ")
    term.send_line("skylark")
    term.expect(r"Thanks\.")
    assert messages(openai_server.chat_requests[-1])[-1] == {"role": "user", "content": "skylark"}


def test_multi_line_input_with_a_trailing_backslash(
    spawn, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_text("Two lines received.")
    term = spawn()
    term.wait_prompt()
    term.send("first line \\\r")
    term.send("second line\r")
    term.expect(r"Two lines received\.")
    assert messages(openai_server.chat_requests[-1])[-1]["content"] == "first line \nsecond line"


def test_model_retry_shows_a_countdown(spawn, openai_server: ScriptedOpenAIServer) -> None:
    openai_server.add_error(429, headers={"Retry-After": "1"})
    openai_server.add_text("Answer after the retry.")
    term = spawn()
    term.wait_prompt()
    term.send_line("hello")
    term.expect(r"model request failed \(.*\); attempt 2 in 1s")
    term.expect(r"Answer after the retry\.")
    term.wait_prompt()
    assert len(openai_server.chat_requests) == 2


def test_a_cut_stream_is_replaced_by_the_new_answer(
    spawn, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_truncated_stream("The answer is fort", tool_name=None)
    openai_server.add_text("The answer is 42.")
    term = spawn()
    term.wait_prompt()
    term.send_line("what is it?")
    term.expect(r"The answer is 42\.")
    term.wait_prompt()
    # The partial reply never left the live window: it is erased, with no marker.
    assert "reply discarded" not in term.text
    assert len(openai_server.chat_requests) == 2


def test_stop_and_control_tools_show_no_panel(spawn, openai_server: ScriptedOpenAIServer) -> None:
    openai_server.add_tool_call("stop", {"reason": "all tests pass"}, text="Finished the work.")
    term = spawn()
    term.wait_prompt()
    term.send_line("finish")
    term.expect(r"Finished the work\.")
    term.expect(r"■ all tests pass")
    term.wait_prompt()
    assert "╭─ stop" not in term.text


def test_ctrl_c_stops_a_stalled_model_stream(spawn, openai_server: ScriptedOpenAIServer) -> None:
    openai_server.add_stall(60, partial_text="Let me think about")
    openai_server.add_text("Fresh answer.")
    term = spawn()
    term.wait_prompt()
    term.send_line("a hard question")
    term.expect(r"Let me think about")
    started = time.monotonic()
    term.send("\x03")
    term.expect(r"cancelled")
    term.wait_prompt(timeout=10)
    assert time.monotonic() - started < 5
    term.send_line("again")
    term.expect(r"Fresh answer\.")
