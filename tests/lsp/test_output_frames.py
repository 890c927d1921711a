"""Command output on the wire: merged into frames, in order, byte-exact, and bounded when
the client stops reading.

The first tests push events into a session's real update channel (from another thread,
as the runtime does) and look at what a recording stand-in for the server's protocol
object was sent; the last runs ``pygent lsp`` and a command that prints a line at a time.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from pygent import events as ev
from pygent.lsp import protocol as p
from pygent.lsp import updates
from pygent.lsp.updates import UpdateChannel
from tests.lsp.conftest import request
from tests.openai_server import ScriptedOpenAIServer


class Writer:
    """The writer's view the channel consults: how much the client has not read."""

    def __init__(self) -> None:
        self.pending_bytes = 0


class Recorder:
    """Stands in for ``server.protocol``: keeps every notification."""

    def __init__(self) -> None:
        self.writer = Writer()
        self.sent: list[dict[str, Any]] = []

    def notify(self, method: str, params: Any) -> None:
        assert method == p.SESSION_UPDATE
        self.sent.append(params)

    def updates(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [s["update"] for s in self.sent if kind is None or s["update"]["type"] == kind]

    def text(self, call_id: str = "c1", stream: str = "stdout") -> str:
        return "".join(
            u["text"]
            for u in self.updates("tool_output")
            if u["callId"] == call_id and u["stream"] == stream
        )


def channel_for(recorder: Recorder) -> UpdateChannel:
    server: Any = SimpleNamespace(protocol=recorder)
    return UpdateChannel(server, "s1", asyncio.get_running_loop())


def out(text: str, call_id: str = "c1", stream: str = "stdout") -> ev.ToolOutput:
    return ev.ToolOutput(call_id=call_id, text=text, stream=stream)


async def from_thread(channel: UpdateChannel, events: list[ev.Event]) -> None:
    """Push ``events`` from another thread, the way the runtime's loop thread does."""
    thread = threading.Thread(target=lambda: [channel.push_event(e) for e in events])
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.005)  # the server's loop keeps running meanwhile
    thread.join()


LINES = [f"{i}\n" for i in range(1, 100_001)]


async def test_output_a_line_at_a_time_arrives_whole_in_order_in_few_notifications() -> None:
    recorder = Recorder()
    channel = channel_for(recorder)
    events: list[ev.Event] = [ev.ToolCallStarted(call_id="c1", tool="bash")]
    events += [out(line) for line in LINES[:50_000]]
    events.append(ev.Notice(text="halfway"))
    events += [out(line) for line in LINES[50_000:]]
    events.append(ev.ToolCallFinished(call_id="c1", tool="bash"))
    await from_thread(channel, events)
    channel.flush()

    sent = recorder.sent
    assert [s["seq"] for s in sent] == list(range(1, len(sent) + 1)), "no gaps, no repeats"
    assert recorder.text() == "".join(LINES), "byte-exact"
    outputs = recorder.updates("tool_output")
    assert len(outputs) < len(LINES) / 50, f"{len(outputs)} notifications for {len(LINES)} lines"
    assert all(len(u["text"]) <= updates.FRAME_CHARS for u in outputs)
    # Each update keeps its wire shape.
    for update in recorder.updates():
        assert p.unstructure(p.structure(update, p.UPDATE_TYPES[update["type"]])) == update
    # Output never crosses another update of the session.
    kinds = [u["type"] for u in recorder.updates()]
    assert kinds[0] == "tool_call_started" and kinds[-1] == "tool_call_finished"
    notice = kinds.index("notice")
    before = "".join(u["text"] for u in recorder.updates()[:notice] if u["type"] == "tool_output")
    assert before == "".join(LINES[:50_000])


async def test_streams_and_calls_keep_their_own_text_and_updates_stay_in_order() -> None:
    recorder = Recorder()
    channel = channel_for(recorder)
    # Pushed on the loop in one go: no frame can fall due in between.
    for event in [
        out("a1\n"),
        out("e1\n", stream="stderr"),
        out("a2\n"),
        out("t1\n", call_id="c2"),
        ev.Permission(call_id="c3", state="pending"),
        out("a3\n"),
        ev.MessageDelta(text="done"),
    ]:
        channel.push_event(event)
    channel.flush()
    shown = [
        (u["type"], u.get("callId"), u.get("stream"), u.get("text")) for u in recorder.updates()
    ]
    # Within a frame each call and stream is one notification, in the order they spoke.
    assert shown == [
        ("tool_output", "c1", "stdout", "a1\na2\n"),
        ("tool_output", "c1", "stderr", "e1\n"),
        ("tool_output", "c2", "stdout", "t1\n"),
        ("permission", "c3", None, None),
        ("tool_output", "c1", "stdout", "a3\n"),
        ("message_delta", None, None, "done"),
    ]


async def test_a_client_that_does_not_read_holds_output_bounded_and_never_loses_other_updates() -> (
    None
):
    recorder = Recorder()
    recorder.writer.pending_bytes = updates.WRITER_HIGH_WATER + 1  # the client stopped reading
    channel = channel_for(recorder)
    lines = [f"line {i:07d}\n" for i in range(400_000)]  # 5.2 MB
    await from_thread(channel, [out(line) for line in lines])
    await asyncio.sleep(3 * updates.BACKLOG_RETRY)  # retries come and find the client behind
    assert recorder.updates("tool_output") == [], "held back while the client does not read"
    assert channel._frame.size <= updates.MAX_HELD_CHARS

    # Other updates are never held back or dropped; output goes out before them.
    await from_thread(channel, [ev.Notice(text=f"n{i}") for i in range(500)])
    channel.flush()
    kinds = [u["type"] for u in recorder.updates()]
    assert kinds.count("notice") == 500
    assert kinds.index("notice") > 0 and set(kinds[: kinds.index("notice")]) == {"tool_output"}
    text = recorder.text()
    assert len(text) <= updates.MAX_HELD_CHARS + 200
    assert text.startswith("\n[output truncated: ")
    assert text.endswith("".join(lines[-1000:])), "the newest output is kept, from a line start"
    shown = text.split("]\n", 1)[1]
    assert shown == "".join(lines[len(lines) - shown.count("\n") :])

    # The client reads again: output flows as before.
    recorder.writer.pending_bytes = 0
    await from_thread(channel, [out("after\n")])
    channel.flush()
    assert recorder.text().endswith("after\n")
    assert [s["seq"] for s in recorder.sent] == list(range(1, len(recorder.sent) + 1))


async def test_output_from_another_thread_goes_out_by_itself() -> None:
    recorder = Recorder()
    channel = channel_for(recorder)
    await from_thread(channel, [out("1\n"), out("2\n", stream="stderr"), out("3\n")])
    for _ in range(1000):  # no flush: the frame falls due on its own
        if recorder.text() == "1\n3\n" and recorder.text(stream="stderr") == "2\n":
            break
        await asyncio.sleep(0.01)
    assert recorder.text() == "1\n3\n" and recorder.text(stream="stderr") == "2\n"


async def test_flush_and_close_send_what_waits() -> None:
    recorder = Recorder()
    channel = channel_for(recorder)
    channel.push_event(out("x"))
    channel.flush()
    assert recorder.text() == "x"
    channel.push_event(out("y"))
    channel.close()
    assert recorder.text() == "xy"
    channel.push_event(out("z"))
    await asyncio.sleep(0.05)
    assert recorder.text() == "xy", "nothing after close"


@pytest.mark.timeout(120)
async def test_the_server_sends_a_line_at_a_time_command_in_frames(
    start_client, openai_server: ScriptedOpenAIServer
) -> None:
    count = 30_000
    cmd = f"for i in $(seq {count}); do echo $i; done; echo oops >&2"
    openai_server.add_tool_call("bash", {"cmd": cmd})
    openai_server.add_text("printed")
    client, received = await start_client()
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local", "approvalMode": "never"}))[
        "sessionId"
    ]
    result = await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "count"})
    assert result["stopReason"] == "end_turn"

    mine = [u for u in received.items if u["sessionId"] == sid]
    assert [u["seq"] for u in mine] == list(range(1, len(mine) + 1))
    shown = [u["update"] for u in mine]
    outputs = [u for u in shown if u["type"] == "tool_output"]
    stdout = "".join(u["text"] for u in outputs if u["stream"] == "stdout")
    assert stdout == "".join(f"{i}\n" for i in range(1, count + 1))
    assert "".join(u["text"] for u in outputs if u["stream"] == "stderr") == "oops\n"
    assert len(outputs) < count / 50, f"{len(outputs)} notifications for {count} lines"
    kinds = [u["type"] for u in shown]
    first, last = kinds.index("tool_output"), len(kinds) - 1 - kinds[::-1].index("tool_output")
    assert kinds[first - 1] == "tool_call_started"
    assert kinds[last + 1] == "tool_call_finished"
