"""History appends off the event loop (``append_soon``/``synced``), and the LSP writer's reply order."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pygent import Agent
from pygent.errors import SessionError
from pygent.history import file as history_module
from pygent.history.writer import AppendQueue
from pygent.lsp.transport import ThreadedWriter
from pygent.runtime import Runtime
from pygent.settings import load_settings
from pygent.store import HistoryFile


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


# --- append_soon: queued, written in order, acknowledged once on disk ------------------------


def test_append_soon_saves_in_order_and_synced_says_when(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryFile(path) as history:
        for i in range(50):
            history.append_soon(user(f"m{i}"))
        history.synced().result(timeout=10)
        assert HistoryFile.read(path).load() == [user(f"m{i}") for i in range(50)]
        history.append(user("direct"))  # a synchronous append waits for the queue first
        history.append_soon(user("late"))
    assert [m["content"] for m in HistoryFile.read(path).load()][-2:] == ["direct", "late"]


def test_queued_message_is_a_snapshot(tmp_path: Path) -> None:
    message = {"role": "tool", "tool_call_id": "c1", "content": "x" * 1000}
    with HistoryFile(tmp_path / "h.jsonl") as history:
        history.append_soon(message)
        message["content"] = "changed later"  # the agent shortens old outputs in place
        history.synced().result(timeout=10)
        assert history.load()[0]["content"] == "x" * 1000


def test_many_appends_share_a_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs: list[int] = []
    real = history_module.datasync

    def slow_sync(fd: int) -> None:
        time.sleep(0.05)  # a slow disk: what waits meanwhile goes with the next sync
        syncs.append(fd)
        real(fd)

    with HistoryFile(tmp_path / "h.jsonl") as history:
        monkeypatch.setattr(history_module, "datasync", slow_sync)
        for i in range(40):
            history.append_soon(user(f"m{i}"))
        history.synced().result(timeout=10)
        assert len(history.load()) == 40
    assert len(syncs) < 10


def test_a_failed_batch_fails_synced_and_goes_with_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "h.jsonl"
    real = history_module.write_all
    fail = [True]

    def full_disk(fd: int, data: bytes, offset: int) -> None:
        if fail[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data, offset)

    with HistoryFile(path) as history:
        monkeypatch.setattr(history_module, "write_all", full_disk)
        history.append_soon(user("one"))
        with pytest.raises(SessionError, match="disk full"):
            history.synced().result(timeout=10)
        assert history.pending == 1
        fail[0] = False
        history.append_soon(user("two"))
        history.synced().result(timeout=10)
        assert history.pending == 0
    assert HistoryFile.read(path).load() == [user("one"), user("two")]


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    history = HistoryFile(path)
    for i in range(20):
        history.append_soon(user(f"m{i}"))
    history.close()
    assert len(HistoryFile.read(path).load()) == 20
    with pytest.raises(SessionError):
        history.append_soon(user("after close"))


def test_idle_writer_thread_exits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pygent.history.writer.IDLE_EXIT", 0.05)
    queue = AppendQueue(lambda batch: None, name="pygent-history-test-idle")
    queue.put("a")
    queue.synced().result(timeout=5)
    deadline = time.monotonic() + 5
    while any(t.name == "pygent-history-test-idle" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the idle writer thread did not exit"
        time.sleep(0.02)
    queue.put("b")  # a new thread takes over
    queue.synced().result(timeout=5)
    queue.close()


def test_a_turn_returns_only_once_its_messages_are_on_disk(
    openai_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The acknowledgement of a turn (arun returning) still means saved."""
    env = {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "sk-test-key",
           "PYGENT_MODEL": "test-model", "PYGENT_USE_DOCKER": "0"}  # fmt: skip
    settings = load_settings(environ=env, cwd=tmp_path)
    path = tmp_path / "h.jsonl"
    real = HistoryFile._write_records

    def slow_write(self: HistoryFile, records: list[bytes]) -> None:
        time.sleep(0.3)
        real(self, records)

    monkeypatch.setattr(HistoryFile, "_write_records", slow_write)
    rt = Runtime(settings=settings, workspace=tmp_path / "ws")
    agent = Agent(runtime=rt, settings=settings, history_file=path, checkpoints=False)
    try:
        openai_server.add_text("saved before you see me")
        result = agent.turn("hello")
        assert result.text == "saved before you see me"
        saved = HistoryFile.read(path).load()  # read right away, while the agent lives on
        assert [m["content"] for m in saved] == ["hello", "saved before you see me"]
    finally:
        agent.close()
        rt.cleanup()


# --- the LSP writer: replies pass queued notifications, never their own request's ------------


def _frames(data: bytes) -> list[dict[str, Any]]:
    out = []
    while data:
        header, _, rest = data.partition(b"\r\n\r\n")
        length = int(header.split(b":")[1])
        out.append(json.loads(rest[:length]))
        data = rest[length:]
    return out


def _frame(msg: dict[str, Any]) -> bytes:
    body = json.dumps(msg).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_replies_pass_queued_notifications_but_not_their_own_requests() -> None:
    read_fd, write_fd = os.pipe()
    writer = ThreadedWriter(write_fd)
    try:
        # A message larger than the pipe: the writer thread blocks on it, the rest queues.
        writer.write(_frame({"jsonrpc": "2.0", "method": "big", "params": "x" * 200_000}))
        time.sleep(0.1)

        def note(name: str) -> None:
            msg = {"jsonrpc": "2.0", "method": "pygent/sessionUpdate", "params": name}
            writer.write_later(lambda: _frame(msg), 64)

        note("a")
        writer.mark(1)  # sent while handling request 1 (its turn's updates)
        note("b")
        writer.write_reply(_frame({"jsonrpc": "2.0", "id": 2, "result": "list"}), 2)
        writer.write_reply(_frame({"jsonrpc": "2.0", "id": 1, "result": "prompt"}), 1)
        note("c")
        writer.mark(None)  # a flush outside any request: no reply passes what came before
        writer.write_reply(_frame({"jsonrpc": "2.0", "id": 3, "result": "late"}), 3)
        note("d")
        writer.write_reply(_frame({"jsonrpc": "2.0", "id": 4, "result": "first"}), 4)
        got = b""
        os.set_blocking(read_fd, False)
        deadline = time.monotonic() + 10
        while got.count(b"Content-Length") < 9 or not got.endswith(b"}"):
            assert time.monotonic() < deadline, got[-200:]
            try:
                got += os.read(read_fd, 1 << 20)
            except BlockingIOError:
                time.sleep(0.01)
    finally:
        writer.close()
        os.close(read_fd)
        os.close(write_fd)
    order = [m.get("params") if "method" in m else m["result"] for m in _frames(got)]
    assert order[0] == "x" * 200_000
    assert order[1:] == ["list", "a", "prompt", "b", "c", "late", "first", "d"]


def test_a_failure_reported_before_anyone_asks_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = history_module.write_all
    monkeypatch.setattr(
        history_module, "write_all", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full"))
    )
    with HistoryFile(tmp_path / "h.jsonl") as history:
        history.append_soon(user("one"))
        history._wait_queued()  # the batch failed before synced() was called
        with pytest.raises(SessionError, match="disk full"):
            history.synced().result(timeout=10)
        monkeypatch.setattr(history_module, "write_all", real)
        history.append_soon(user("two"))
        history.synced().result(timeout=10)


def test_a_batch_too_large_for_the_disk_keeps_what_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with one write per message: the small message before a huge one is saved."""
    path = tmp_path / "h.jsonl"
    real = history_module.write_all

    def small_disk(fd: int, data: bytes, offset: int) -> None:
        if len(data) > 10_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data, offset)

    with HistoryFile(path) as history:
        monkeypatch.setattr(history_module, "write_all", small_disk)
        history._appends = AppendQueue(history._write_batch)
        history._appends._cond.acquire()  # hold the writer: both messages form one batch
        try:
            history._appends._queue += [user("small"), user("x" * 20_000)]
            history._appends._queued += 2
            history._appends._thread = threading.Thread(target=history._appends._main, daemon=True)
            history._appends._thread.start()
        finally:
            history._appends._cond.release()
        with pytest.raises(SessionError, match="disk full"):
            history.synced().result(timeout=10)
        assert HistoryFile.read(path).load() == [user("small")]
        assert history.pending == 1
        monkeypatch.setattr(history_module, "write_all", real)
        history.flush()
    assert [len(m["content"]) for m in HistoryFile.read(path).load()] == [5, 20_000]
