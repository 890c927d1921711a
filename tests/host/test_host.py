"""The session host end to end: real ``pygent serve`` and ``pygent lsp --stdio`` processes.

Two editors join one host: one starts a turn that waits for an approval, the other
attaches (the transcript replays the first one's updates in order) and answers it; an
editor that leaves mid-turn does not stop the turn; a session nobody is attached to is
closed after the idle timeout and an empty host exits.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pygent.lsp import protocol as p
from tests.adversarial.lsp_raw import Lsp
from tests.host.conftest import SERVE, close_editor, wait_until
from tests.lsp.conftest import SERVER_COMMAND, server_env
from tests.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.timeout(180)


def _updates(lsp: Lsp, session_id: str) -> list[dict[str, Any]]:
    return [
        m["params"] for m in lsp.seen
        if m.get("method") == p.SESSION_UPDATE and m["params"]["sessionId"] == session_id
    ]


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_two_editors_share_a_session(start_host, editors, openai_server: ScriptedOpenAIServer,
                                     tmp_path: Path) -> None:
    host = start_host()
    a = host.editor("a", openai_server)
    editors.append(a)
    b = host.editor("b", openai_server)
    editors.append(b)
    folder = tmp_path / "project"
    folder.mkdir()
    sid = a.new_session(runtime="local", workspaceFolder=str(folder))
    # The host lists it for every client.
    listed = b.call(p.SESSION_LIST, {})["result"]["sessions"]
    assert [s["sessionId"] for s in listed] == [sid]

    openai_server.add_tool_call("bash", {"cmd": "echo from-the-sandbox"})
    openai_server.add_text("all done")
    prompt = a.start(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "run it"})
    asked_a = a.permission(30)
    assert asked_a["params"]["sessionId"] == sid

    # B attaches: the transcript replays A's updates so far, in order.
    transcript = b.call(p.SESSION_TRANSCRIPT, {"sessionId": sid})["result"]
    kinds = _kinds(transcript["events"])
    assert kinds[0] == "turn_started" and transcript["events"][0]["prompt"] == "run it"
    assert kinds.index("tool_call_proposed") < kinds.index("permission")
    assert transcript["events"][-1] == {**transcript["events"][-1], "state": "pending"}
    assert transcript["seq"] == 0  # B was sent nothing of this session before
    assert host.status()["sessions"][0]["clients"] == 2

    # B is asked too (it is attached now); it answers first and wins.
    asked_b = b.permission(30)
    assert asked_b["params"]["toolCall"]["callId"] == asked_a["params"]["toolCall"]["callId"]
    b.answer(asked_b["id"], {"optionId": "allow_once"})
    done = a.reply(prompt, 60)
    assert done["result"]["stopReason"] == "end_turn", done
    # A's request was withdrawn, and A sees how it was decided.
    a.wait_for(lambda m: m.get("method") == "$/cancelRequest"
               and m["params"]["id"] == asked_a["id"])
    a.wait_for(lambda m: m.get("method") == p.SESSION_UPDATE
               and m["params"]["update"]["type"] == "permission"
               and m["params"]["update"]["outcome"] == "allow_once")
    # B follows the live updates from seq 1 on: the command's result and the turn's end.
    b.wait_for(lambda m: m.get("method") == p.SESSION_UPDATE
               and m["params"]["update"]["type"] == "turn_ended")
    live = _updates(b, sid)
    assert [u["seq"] for u in live] == list(range(1, len(live) + 1))
    finished = [u["update"] for u in live if u["update"]["type"] == "tool_call_finished"]
    assert finished and finished[0]["ok"]
    a_kinds = [u["update"]["type"] for u in _updates(a, sid)]
    assert "tool_call_finished" in a_kinds and a_kinds[-1] in ("turn_ended", "permission",
                                                               "changes")


def _sessions_changed(lsp: Lsp) -> list[tuple[int, list[str]]]:
    """Where in what ``lsp`` read each ``pygent/sessionsChanged`` is, and its ids."""
    return [(i, m["params"]["sessionIds"]) for i, m in enumerate(lsp.seen)
            if m.get("method") == p.SESSIONS_CHANGED]


def test_every_editor_is_told_when_sessions_open_and_close(
        start_host, editors, openai_server: ScriptedOpenAIServer) -> None:
    """``pygent/sessionsChanged`` is pushed as the service opens or closes a session, not
    found by a poll: the editor that opens one reads it before its own ``session/new``
    reply (the host sends both on one ordered stream; a poll would come after), and the
    other editor is told too, of the close as well."""
    host = start_host()
    a = host.editor("a", openai_server)
    editors.append(a)
    b = host.editor("b", openai_server)
    editors.append(b)

    opening = a.start(p.SESSION_NEW, {"runtime": "local"})
    sid = a.reply(opening, 60)["result"]["sessionId"]
    reply_at = next(i for i, m in enumerate(a.seen) if m.get("id") == opening)
    told = [i for i, ids in _sessions_changed(a) if ids == [sid]]
    assert told and told[0] < reply_at, a.seen[-5:]
    b.wait_for(lambda m: m.get("method") == p.SESSIONS_CHANGED
               and m["params"]["sessionIds"] == [sid], 30)

    closing = b.start(p.SESSION_CLOSE, {"sessionId": sid})
    assert "error" not in b.reply(closing, 60)
    reply_at = next(i for i, m in enumerate(b.seen) if m.get("id") == closing)
    told = [i for i, ids in _sessions_changed(b) if ids == []]
    assert told and told[0] < reply_at, b.seen[-5:]
    a.wait_for(lambda m: m.get("method") == p.SESSIONS_CHANGED
               and m["params"]["sessionIds"] == [], 30)
    # Told once per change: one list with the session, one without.
    assert [ids for _, ids in _sessions_changed(a)] == [[sid], []]


def test_a_turn_outlives_the_editor_that_started_it(start_host, editors, tmp_path: Path,
                                                    openai_server: ScriptedOpenAIServer) -> None:
    host = start_host()
    a = host.editor("a", openai_server)
    editors.append(a)
    sid = a.new_session(runtime="local")
    openai_server.add_tool_call("bash", {"cmd": "sleep 2; echo slept-well"})
    openai_server.add_text("finished without you")
    a.start(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "take your time"})
    a.answer(a.permission(30)["id"], {"optionId": "allow_once"})
    a.wait_for(lambda m: m.get("method") == p.SESSION_UPDATE
               and m["params"]["update"]["type"] == "tool_call_started")
    assert close_editor(a) == 0  # the window closes mid-turn: the pipe ends, A detaches

    assert wait_until(lambda: host.status()["clients"] == 1)  # only the status client
    status = host.status()["sessions"]
    assert status[0]["sessionId"] == sid and status[0]["clients"] == 0
    assert wait_until(lambda: not host.status()["sessions"][0]["busy"], 60)

    # A new window replays the whole turn, its end included.
    c = host.editor("c", openai_server)
    editors.append(c)
    events = c.call(p.SESSION_TRANSCRIPT, {"sessionId": sid})["result"]["events"]
    kinds = _kinds(events)
    assert kinds[0] == "turn_started" and kinds[-1] == "turn_ended", kinds
    outputs = "".join(e.get("text", "") for e in events if e["type"] == "tool_output")
    finished = [e for e in events if e["type"] == "tool_call_finished"]
    assert "slept-well" in outputs + "".join(e["output"] for e in finished)
    assert any(e["type"] == "message_done" and "finished without you" in e["text"]
               for e in events)
    # ... and can go on with it.
    openai_server.add_text("still here")
    result = c.call(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "again"}, timeout=60)
    assert result["result"]["stopReason"] == "end_turn"


def test_idle_sessions_close_and_an_empty_host_exits(start_host, editors,
                                                     openai_server: ScriptedOpenAIServer) -> None:
    host = start_host("--idle-timeout", "1", "--exit-grace", "1")
    a = host.editor("a", openai_server)
    editors.append(a)
    sid = a.new_session(runtime="local")
    sandbox = Path(a.call(p.SESSION_LIST, {})["result"]["sessions"][0]["sandboxPath"])
    assert sandbox.is_dir() and sid
    openai_server.add_tool_call("bash", {"cmd": "sleep 3"})
    openai_server.add_text("slept")
    a.start(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "sleep"})
    a.answer(a.permission(30)["id"], {"optionId": "allow_once"})
    assert close_editor(a) == 0
    # A running turn keeps its session, however long nobody is attached.
    assert wait_until(lambda: host.status()["sessions"][0]["clients"] == 0)
    assert not wait_until(lambda: not host.status()["sessions"][0]["busy"], 1.5)
    assert [s["sessionId"] for s in host.status()["sessions"]] == [sid]
    # No client, no turn: closed after the idle timeout; then the host is empty and exits.
    assert host.proc.wait(60) == 0, host.tail()
    assert "no client for 1s" in host.tail()
    assert not host.socket.exists()
    assert not sandbox.exists()


def test_socket_is_private_and_a_second_host_is_not_started(start_host, host_dir: Path,
                                                            tmp_path: Path) -> None:
    host = start_host()
    assert stat.S_IMODE(os.stat(host_dir).st_mode) == 0o700
    info = os.lstat(host.socket)
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    second = subprocess.run([*SERVE], env=host.env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0
    assert "already runs" in second.stdout and str(host.proc.pid) in second.stdout
    status = subprocess.run([*SERVE, "--status"], env=host.env, capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0 and str(host.socket) in status.stdout
    stop = subprocess.run([*SERVE, "--stop"], env=host.env, capture_output=True, text=True,
                          timeout=120)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert host.proc.wait(10) == 0 and not host.socket.exists()


def test_a_stale_socket_is_replaced(start_host, openai_server: ScriptedOpenAIServer,
                                    editors) -> None:
    first = start_host()
    first.stop(signal.SIGKILL)
    assert first.socket.exists()  # nobody removed it
    second = start_host()
    assert second.proc.pid != first.proc.pid
    lsp = second.editor("a", openai_server)
    editors.append(lsp)
    assert lsp.call(p.SESSION_LIST, {})["result"] == {"sessions": []}


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder someone else's needs root")
def test_a_folder_of_someone_else_is_refused(host_dir: Path, tmp_path: Path,
                                             openai_server: ScriptedOpenAIServer) -> None:
    env = server_env(tmp_path, openai_server, PYGENT_HOST_DIR=str(host_dir))
    host_dir.mkdir(mode=0o700)
    os.chown(host_dir, 65534, 65534)
    refused = subprocess.run([*SERVE], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "belongs to user id 65534" in refused.stderr and "refusing" in refused.stderr


def test_an_open_folder_is_refused(host_dir: Path, tmp_path: Path,
                                   openai_server: ScriptedOpenAIServer) -> None:
    env = server_env(tmp_path, openai_server, PYGENT_HOST_DIR=str(host_dir))
    host_dir.mkdir()
    host_dir.chmod(0o755)
    refused = subprocess.run([*SERVE], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "mode 0755" in refused.stderr, refused.stderr


def test_lsp_without_a_host(host_dir: Path, tmp_path: Path,
                            openai_server: ScriptedOpenAIServer) -> None:
    env = server_env(tmp_path, openai_server, PYGENT_HOST_DIR=str(host_dir),
                     PYGENT_LSP_HOST="require")
    required = subprocess.run(SERVER_COMMAND, env=env, input=b"", capture_output=True,
                              timeout=60)
    assert required.returncode == 2 and b"no session host answers" in required.stderr
    assert required.stdout == b""


def test_the_pipe_to_the_host_loads_no_server(start_host, tmp_path: Path,
                                             openai_server: ScriptedOpenAIServer) -> None:
    host = start_host()
    env = server_env(tmp_path / "e", openai_server, PYGENT_HOST_DIR=str(host.dir),
                     PYGENT_LSP_HOST="require")
    body = b'{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"capabilities": {}}}'
    shutdown = b'{"jsonrpc": "2.0", "id": 1, "method": "shutdown"}'
    stdin = b"".join(b"Content-Length: %d\r\n\r\n" % len(m) + m for m in (body, shutdown))
    done = subprocess.run([sys.executable, "-X", "importtime", *SERVER_COMMAND[1:]], env=env,
                          input=stdin, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert b"pygls" not in done.stderr and b"lsprotocol" not in done.stderr
    # stdout is the host's answers and nothing else.
    assert done.stdout.startswith(b"Content-Length: ") and b'"id": 1' in done.stdout.replace(
        b'"id":1', b'"id": 1')


def test_an_editor_of_its_own_answers_the_transcript(tmp_path: Path,
                                                     openai_server: ScriptedOpenAIServer) -> None:
    """Without a host the transcript is the conversation so far; saved sessions read too."""
    from tests.adversarial.lsp_raw import start_lsp

    lsp = start_lsp(tmp_path, openai_server, PYGENT_LSP_HOST="never")
    try:
        sid = lsp.new_session(runtime="local")
        openai_server.add_text("hello there")
        assert lsp.call(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "hi"}, 60)["result"]
        result = lsp.call(p.SESSION_TRANSCRIPT, {"sessionId": sid})["result"]
        assert _kinds(result["events"]) == ["turn_started", "message_done", "turn_ended"]
        assert result["seq"] == len(_updates(lsp, sid)) > 0
        missing = lsp.call(p.SESSION_TRANSCRIPT, {"sessionId": "20200101-000000-abcdef"})
        assert missing["error"]["code"] == p.SESSION_NOT_FOUND
        assert lsp.call(p.SESSION_CLOSE, {"sessionId": sid})["result"]
        saved = lsp.call(p.SESSION_TRANSCRIPT, {"sessionId": sid})["result"]
        assert saved["seq"] == 0 and _kinds(saved["events"])[-1] == "turn_ended"
    finally:
        lsp.proc.kill()
        lsp.proc.wait()


def test_in_process_wins_over_a_running_host(start_host, tmp_path: Path,
                                             openai_server: ScriptedOpenAIServer) -> None:
    host = start_host()
    lsp = Lsp(server_env(tmp_path / "e", openai_server, PYGENT_HOST_DIR=str(host.dir)),
              tmp_path, ["--in-process"])
    (tmp_path / "e").mkdir(exist_ok=True)
    try:
        lsp.send({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                  "params": {"capabilities": {}}})
        assert "result" in lsp.reply(0, 30)
        lsp.new_session(runtime="local")
        assert host.status()["sessions"] == []  # served in the editor's own process
    finally:
        lsp.proc.kill()
        lsp.proc.wait()


def test_pygent_sessions_lists_the_hosts_sessions(start_host, editors, host_dir: Path,
                                                  tmp_path: Path,
                                                  openai_server: ScriptedOpenAIServer) -> None:
    sessions = [sys.executable, "-m", "pygent", "sessions"]
    env = server_env(tmp_path / "cli", openai_server, PYGENT_HOST_DIR=str(host_dir))
    alone = subprocess.run(sessions, env=env, capture_output=True, text=True, timeout=60)
    assert alone.returncode == 0 and "no session host runs" in alone.stdout
    host = start_host()
    a = host.editor("a", openai_server)
    editors.append(a)
    sid = a.new_session(runtime="local", title="the shared one")
    listed = subprocess.run(sessions, env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if sid in x)
    assert "idle" in line and "1 client " in line + " " and "the shared one" in line


def test_serve_background_detaches_and_stop_stops_it(host_dir: Path, tmp_path: Path,
                                                     openai_server: ScriptedOpenAIServer) -> None:
    from pygent.lsp import host_socket as hs

    env = server_env(tmp_path, openai_server, PYGENT_HOST_DIR=str(host_dir))
    try:
        started = subprocess.run([*SERVE, "--background"], env=env, capture_output=True,
                                 text=True, timeout=90)
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == str(hs.socket_path(host_dir))
        pid = hs.running_pid(host_dir)
        assert pid and pid > 0 and os.getsid(pid) == pid  # its own session: no terminal
        assert (tmp_path / "data" / "pygent" / "host.log").exists()
    finally:
        stop = subprocess.run([*SERVE, "--stop"], env=env, capture_output=True, text=True,
                              timeout=120)
    assert stop.returncode == 0 and "stopped" in stop.stdout, stop
    assert hs.running_pid(host_dir) is None and not hs.socket_path(host_dir).exists()
