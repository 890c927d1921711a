"""Long sessions in the real terminal: a budget stops a turn, /compact FOCUS, /usage figures."""

from __future__ import annotations

from tests.openai_server import ScriptedOpenAIServer, ToolCallsReply, _call

USAGE = {"prompt_tokens": 1000, "completion_tokens": 100,
         "prompt_tokens_details": {"cached_tokens": 600}}


def test_a_call_budget_stops_the_turn_and_usage_shows_it(
    spawn, repl_env, openai_server: ScriptedOpenAIServer
) -> None:
    for i in range(5):
        openai_server.add(ToolCallsReply((_call("bash", {"cmd": "echo hi"}, f"c{i}"),), usage=USAGE))
    term = spawn(env={**repl_env, "PYGENT_BUDGET_CALLS": "2", "PYGENT_CONTEXT_WINDOW": "10000",
                      "PYGENT_APPROVAL_MODE": "never",
                      "PYGENT_PRICES": '{"test-model": {"input": 1, "output": 4, "cached_input": 0.25}}'})
    term.wait_prompt()
    term.send_line("keep going")
    term.expect(r"budget: the session's limit of 2 model calls is reached \(2 made\)")
    term.expect(r"stopped by the budget")
    term.wait_prompt()
    assert len(openai_server.chat_requests) == 2
    term.send_line("/usage")
    term.expect(r"session: 2,000 in · 200 out\)")
    term.expect(r"2 model calls · cached 1,200 · cost \$0\.0019 · context 10% of 10,000")
    term.wait_prompt()
    term.send_line("/exit")
    term.wait_exit()


def test_compact_with_a_focus_shows_the_marker_and_summary(
    spawn, repl_env, openai_server: ScriptedOpenAIServer
) -> None:
    for i in range(4):
        openai_server.add_tool_call("bash", {"cmd": f"echo step{i}"})
    openai_server.add_text("all done")
    term = spawn(env={**repl_env, "PYGENT_CONTEXT_WINDOW": "50000",
                      "PYGENT_APPROVAL_MODE": "never"})
    term.wait_prompt()
    term.send_line("do four steps")
    term.expect("all done")
    term.wait_prompt()
    openai_server.add_text("## Task\nfour steps\n## State of the work\nSTEPS-SUMMARISED")
    term.send_line("/compact the step outputs")
    term.expect(r"compacted on request: \d+ older message\(s\) summarised")
    term.expect("STEPS-SUMMARISED")
    term.wait_prompt()
    asked = openai_server.chat_requests[-1].body["messages"][1]["content"]
    assert "Focus especially on: the step outputs" in asked
    openai_server.add_error(400)
    term.send_line("/compact")
    term.expect(r"compaction failed:[\s\S]*?the conversation is unchanged")
    term.wait_prompt()
    term.send_line("/exit")
    term.wait_exit()


def test_one_shot_exits_with_the_budget_status_and_reports_usage(
    repl_env, openai_server: ScriptedOpenAIServer, tmp_path
) -> None:
    import json
    import subprocess

    from pygent.oneshot import EXIT_BUDGET
    from tests.repl.conftest import pygent_command

    for i in range(3):
        openai_server.add(ToolCallsReply((_call("bash", {"cmd": "echo hi"}, f"c{i}"),), usage=USAGE))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    out = subprocess.run(
        [*pygent_command(), "--no-docker", "--yes", "--output-format", "json", "-p", "go"],
        env={**repl_env, "PYGENT_BUDGET_CALLS": "1"}, cwd=workdir,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert out.returncode == EXIT_BUDGET, out.stderr
    result = json.loads(out.stdout)
    assert result["stop_reason"] == "budget" and "limit of 1 model call is reached" in result["error"]
    assert (result["usage"]["prompt_tokens"], result["usage"]["cached_tokens"]) == (1000, 600)
    assert result["usage"]["calls"] == 1 and "Traceback" not in out.stderr


def test_resume_shows_the_compaction_marker_with_its_summary(
    spawn, repl_env, openai_server: ScriptedOpenAIServer, tmp_path
) -> None:
    """#18: a resumed compacted session shows the marker and the summary the model reads."""
    env = {**repl_env, "PYGENT_CONTEXT_WINDOW": "50000", "PYGENT_APPROVAL_MODE": "never"}
    for i in range(4):
        openai_server.add_tool_call("bash", {"cmd": f"echo step{i}"})
    openai_server.add_text("all done")
    term = spawn(env=env)
    term.wait_prompt()
    term.send_line("do four steps")
    term.expect("all done")
    term.wait_prompt()
    openai_server.add_text("## Task\nfour steps\n## State of the work\nRESUMED-SUMMARY")
    term.send_line("/compact")
    term.expect("RESUMED-SUMMARY")
    term.wait_prompt()
    term.send_line("/exit")
    assert term.wait_exit() == 0
    root = tmp_path / "home" / ".local" / "share" / "pygent" / "sessions"
    [session_id] = [p.name for p in root.iterdir() if (p / "history.jsonl").is_file()]

    term = spawn("--resume", session_id, env=env)
    term.expect(rf"resumed session {session_id}: \d+ earlier messages")
    term.expect(r"compacted on request: \d+ older message\(s\) summarised")
    term.expect("RESUMED-SUMMARY")
    term.wait_prompt()
    term.send_line("/exit")
    assert term.wait_exit() == 0
