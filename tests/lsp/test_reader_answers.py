"""``session/list`` answered on the stdin thread (pygent.lsp.reader_answers): real pipes, a
real server object, a real event loop, and the loop's own frame reader after it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pygent.lsp import protocol as p
from pygent.lsp.reader_answers import AnsweringSource, frame_bounds, session_list_answer
from pygent.lsp.server import create_server
from pygent.lsp.transport import FrameReader, FramingError, ThreadedSource, ThreadedWriter
from pygent.service import SessionOptions
from pygent.settings import load_settings

pytestmark = pytest.mark.timeout(60)


def frame(msg: dict[str, Any] | bytes) -> bytes:
    body = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def list_request(msg_id: int | str, params: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": p.SESSION_LIST, "params": params or {}}


class Reader:
    """Reads framed messages from a pipe on a thread (the client's side)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.messages: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return
            buf += chunk
            while (bounds := frame_bounds(buf)) is not None and not isinstance(bounds, int):
                start, end = bounds
                with self.arrived:
                    self.messages.append(json.loads(buf[start:end]))
                    self.arrived.notify_all()
                buf = buf[end:]

    def join(self) -> None:
        """After the write end closed: the thread ends; the read end is closed."""
        self._thread.join(10)
        os.close(self.fd)

    def wait_for(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)


async def loop_bodies(source: Any) -> tuple[list[bytes], str | None]:
    """What the loop's frame reader makes of a source: its bodies, then its error."""
    reader = FrameReader(source)
    bodies = []
    while True:
        try:
            body = await reader.next_body()
        except FramingError as exc:
            return bodies, str(exc)
        if body is None:
            return bodies, None
        bodies.append(body)


def test_frame_bounds_needs_the_whole_frame() -> None:
    data = b"\r\n" + frame(list_request(1)) + b"rest"
    end = data.index(b"rest")
    for cut in range(end):
        assert frame_bounds(data[:cut]) is None, cut
    start, stop = frame_bounds(data)  # type: ignore[misc]
    assert (data[start:stop], stop) == (json.dumps(list_request(1)).encode(), end)
    for bad in (b"Content-Length: abc\r\n\r\n{}", b"Content-Type: x\r\n\r\n{}",
                b"Content-Length: 3000000000\r\n\r\n", b'"jsonrpc": "2.0"}'):  # fmt: skip
        assert frame_bounds(bad) == -1, bad


def _serve_bytes(data: bytes, answer: Any, *, threaded: bool = False, pieces: int = 1) -> Any:
    """Write ``data`` into a pipe (in ``pieces``), close it, and return what the loop read
    from an AnsweringSource (or a plain ThreadedSource) over it, with its error."""

    async def main() -> Any:
        read_fd, write_fd = os.pipe()
        loop = asyncio.get_running_loop()
        source: Any = (
            ThreadedSource(read_fd, loop) if threaded else AnsweringSource(read_fd, loop, answer)
        )

        def feed() -> None:
            step = max(1, len(data) // pieces)
            for at in range(0, len(data), step):
                os.write(write_fd, data[at : at + step])
                time.sleep(0.001)
            os.close(write_fd)

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            return await loop_bodies(source)
        finally:
            await asyncio.to_thread(feeder.join)
            os.close(read_fd)

    return asyncio.run(main())


def test_only_answered_messages_are_held_back_the_rest_reach_the_loop_in_order() -> None:
    others = [
        {"jsonrpc": "2.0", "id": 1, "method": p.SESSION_NEW, "params": {"runtime": "local"}},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "result": None},
        {"jsonrpc": "2.0", "id": 3, "method": p.SESSION_PROMPT, "params": {"sessionId": "s"}},
    ]
    stream = b"\r\n".join(  # a stray blank line between messages is legal
        frame(m)
        for pair in zip(others, [list_request(10 + i) for i in range(4)], strict=True)
        for m in pair
    )
    answered: list[int] = []

    def answer(body: bytes) -> bool:
        msg = json.loads(body)
        if msg.get("method") == p.SESSION_LIST:
            answered.append(msg["id"])
            return True
        return False

    for pieces in (1, 7, len(stream)):  # one write, a few, one byte at a time
        answered.clear()
        bodies, error = _serve_bytes(stream, answer, pieces=pieces)
        assert error is None
        assert [json.loads(b) for b in bodies] == others, pieces
        assert answered == [10, 11, 12, 13]


@pytest.mark.parametrize(
    "data",
    [
        b"Content-Length: abc\r\n\r\n{}",
        b"Content-Length: -5\r\n\r\n{}",
        b"Content-Type: application/json\r\n\r\n{}",
        b"Content-Length: 3000000000\r\n\r\n",
        b'Content-Length: 2\r\n\r\n{"jsonrpc": "2.0", "id": 5, "method": "pygent/session/list"}',
        frame(list_request(1))[:30],  # the input ends inside a message
    ],
)
def test_what_is_not_a_frame_reaches_the_loop_as_read(data: bytes) -> None:
    """The loop's reader reports the same framing error as with the plain source, and a
    request after the bad bytes is never answered on the thread."""
    stream = frame(list_request(1)) + data + frame(list_request(2))
    answered: list[int] = []

    def answer(body: bytes) -> bool:
        answered.append(json.loads(body)["id"])
        return True

    got = _serve_bytes(stream, answer)
    plain = _serve_bytes(stream, None, threaded=True)
    assert got[1] is not None and got[1] == plain[1]
    assert answered == [1]
    assert got[0] == plain[0][1:]  # the plain reader also read request 1


def test_session_list_is_answered_while_the_event_loop_is_blocked(tmp_path: Path) -> None:
    settings = dataclasses.replace(
        load_settings({"use_docker": False}), sessions_dir=tmp_path / "sessions"
    )
    server = create_server(settings)
    session = server.service.open_blocking(SessionOptions(runtime="local", title="kept busy"))
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    writer = ThreadedWriter(out_write)
    client = Reader(out_read)
    blocked_reply: list[dict[str, Any]] = []

    async def main() -> list[bytes]:
        server.protocol.set_writer(writer)
        source = AnsweringSource(in_read, asyncio.get_running_loop(), session_list_answer(server))
        os.write(in_write, frame(list_request(1)))
        # The loop does nothing but wait for the reply: only the reader thread can answer.
        blocked_reply.extend(client.wait_for(1))
        # Everything else still reaches the loop: saved sessions, and bad params for -32602.
        os.write(in_write, frame(list_request(2, {"includeSaved": True})))
        os.write(in_write, frame(list_request(3, {"bogus": 1})))
        os.close(in_write)
        bodies, error = await loop_bodies(source)
        assert error is None and source.answered == 1
        return bodies

    try:
        bodies = asyncio.run(main())
        assert len(blocked_reply) == 1, "no reply while the loop was blocked"
        (reply,) = blocked_reply
        assert reply["id"] == 1 and reply["jsonrpc"] == "2.0"
        (info,) = reply["result"]["sessions"]
        assert (info["sessionId"], info["title"], info["live"]) == (session.id, "kept busy", True)
        assert [json.loads(b)["id"] for b in bodies] == [2, 3]
    finally:
        server.service.close_blocking(session.id)
        writer.close()
        os.close(out_write)
        os.close(in_read)
        client.join()


def test_a_reply_answered_first_passes_queued_replies_but_not_a_flush_outside_requests() -> None:
    read_fd, write_fd = os.pipe()
    writer = ThreadedWriter(write_fd)
    client = Reader(read_fd)
    try:
        # Larger than the pipe: the writer thread blocks on it while the rest queues.
        writer.write(frame({"jsonrpc": "2.0", "method": "big", "params": "x" * 200_000}))
        time.sleep(0.1)

        def note(name: str) -> None:
            writer.write(frame({"jsonrpc": "2.0", "method": "note", "params": name}))

        note("a")
        writer.mark(1)  # request 1's turn sent "a": its reply comes after it
        writer.write_reply(frame({"jsonrpc": "2.0", "id": 1, "result": "prompt"}), 1)
        note("b")
        writer.write_reply(frame({"jsonrpc": "2.0", "id": 2, "result": "list"}), 2, first=True)
        writer.write_reply(frame({"jsonrpc": "2.0", "id": 3, "result": "after"}), 3)
        note("c")
        writer.mark(None)  # a flush outside any request: no reply passes what came before
        writer.write_reply(frame({"jsonrpc": "2.0", "id": 4, "result": "held"}), 4, first=True)
        got = client.wait_for(9)
    finally:
        writer.close()
        os.close(write_fd)
        client.join()
    order = [m.get("params") if "method" in m else m["result"] for m in got]
    assert order[0] == "x" * 200_000
    assert order[1:] == ["list", "a", "prompt", "after", "b", "c", "held"]


def test_the_message_count_follows_appends_replacements_and_rewinds(tmp_path: Path) -> None:
    """The count is kept between lists (only new messages are read): it must still be
    right when the history is replaced (compaction, rewind) rather than appended to."""
    settings = dataclasses.replace(
        load_settings({"use_docker": False}), sessions_dir=tmp_path / "sessions"
    )
    server = create_server(settings)
    session = server.service.open_blocking(SessionOptions(runtime="local"))

    def count() -> int:
        (info,) = server.service.list_sessions()
        return info.message_count

    try:
        agent = session.agent
        assert count() == 0
        agent.history.append({"role": "user", "content": "one"})
        agent.history.append({"role": "assistant", "content": "1"})
        agent.history.append({"role": "tool", "content": "out", "tool_call_id": "c"})
        assert count() == 2
        agent.history.append({"role": "user", "content": "two"})
        assert count() == 3
        # Rewound and taken again: as long as before, its last message no longer a user's.
        agent.history = [*agent.history[:4], {"role": "tool", "content": "x", "tool_call_id": "d"}]
        assert count() == 2
        agent.history = [agent.history[0], {"role": "user", "content": "summary"}]
        assert count() == 1
    finally:
        server.service.close_blocking(session.id)


def test_the_stdio_pipe_holds_little_unread_output(tmp_path: Path, openai_server: Any) -> None:
    """What the client has not read yet is what a ``session/list`` reply queued first
    waits behind: the real ``pygent lsp --stdio`` shrinks its stdout pipe to
    ``PIPE_BYTES`` (Linux), and big output still arrives whole through it."""
    import fcntl

    from pygent.lsp.transport import PIPE_BYTES
    from tests.adversarial.lsp_raw import start_lsp

    get_size = getattr(fcntl, "F_GETPIPE_SZ", None)
    if get_size is None:
        pytest.skip("pipe sizes are Linux only")
    lsp = start_lsp(tmp_path / "client", openai_server)
    try:
        assert lsp.proc.stdout is not None
        assert fcntl.fcntl(lsp.proc.stdout.fileno(), get_size) == PIPE_BYTES
        sid = lsp.new_session(runtime="local", approvalMode="never")
        openai_server.add_tool_call("bash", {"cmd": "seq 1 30000"})
        openai_server.add_text("done")
        msg = lsp.call(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "count"}, timeout=60)
        assert msg["result"]["stopReason"] == "end_turn", msg
        text = "".join(
            m["params"]["update"]["text"] for m in lsp.seen
            if m.get("method") == p.SESSION_UPDATE and m["params"]["update"]["type"] == "tool_output"
        )
        assert text == "".join(f"{i}\n" for i in range(1, 30001))
    finally:
        lsp.proc.kill()
        lsp.proc.wait()


class _Replies:
    """A writer that keeps the replies the reader thread writes."""

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:  # pragma: no cover - nothing else is written
        raise AssertionError("only replies are expected")

    def write_reply(self, data: bytes, request_id: Any, *, first: bool = False) -> None:
        self.replies.append(json.loads(data.split(b"\r\n\r\n", 1)[1]))


def test_the_threads_answer_is_the_loops_and_follows_every_change(tmp_path: Path) -> None:
    """The reader thread keeps each session's JSON while its summary is the same: its
    answer is the loop's, field for field, before and after sessions change."""
    settings = dataclasses.replace(
        load_settings({"use_docker": False}), sessions_dir=tmp_path / "sessions"
    )
    server = create_server(settings)
    writer = _Replies()
    server.protocol.set_writer(writer)
    answer = session_list_answer(server)
    first = server.service.open_blocking(SessionOptions(runtime="local", title="first"))
    second = server.service.open_blocking(SessionOptions(runtime="local"))

    def loop_answer() -> Any:
        result = asyncio.run(server.handlers.session_list(p.ListSessionsParams(), None))
        return p.unstructure(result)

    def thread_answer(msg_id: Any) -> Any:
        assert answer(json.dumps(list_request(msg_id)).encode())
        reply = writer.replies[-1]
        assert reply["id"] == msg_id and reply["jsonrpc"] == "2.0"
        return reply["result"]

    try:
        assert thread_answer(1) == loop_answer()
        assert thread_answer(2) == loop_answer()  # kept JSON: the same answer
        first.title = "renamed"
        second.notices.append("a notice")
        second.agent.history.append({"role": "user", "content": "hello there"})
        changed = thread_answer("\u0000")  # an id that looks like the list's slot
        assert changed == loop_answer()
        titles = [s["title"] for s in changed["sessions"]]
        assert titles == ["renamed", "hello there"]
        assert changed["sessions"][1]["notices"][-1] == "a notice"
        server.service.close_blocking(first.id)
        assert [s["sessionId"] for s in thread_answer(3)["sessions"]] == [second.id]
    finally:
        server.service.close_blocking(first.id)
        server.service.close_blocking(second.id)
