"""The shortcut on a token's way through ``pygent acp`` gives what the general path gives.

A reply chunk is written without the SDK's model dump (:func:`pygent.acp.updates.notification`);
it is there for speed only (bench/bench_acp.py), so it must agree exactly with the path it
skips, and leave to it anything else. Also the reader of the host's LSP client
(:class:`pygent.lsp.client.RpcClient`, what ``pygent attach`` speaks).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from acp import schema as s

from pygent import events as ev
from pygent.acp.updates import SessionUpdates, notification, text_block
from pygent.lsp.client import RpcClient


def _sdk(session_id: str, update: Any) -> dict[str, Any]:
    return s.SessionNotification(session_id=session_id, update=update).model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude_unset=True
    )


@pytest.mark.parametrize("text", ["tok-1 ", "", "é \u2028 \"q\" \n", "x" * 10_000])
def test_reply_chunk_is_written_as_the_sdk_writes_it(text: str) -> None:
    update = SessionUpdates(folder=None).updates(ev.MessageDelta(text=text or "a"))[0]
    assert notification("s-1", update) == _sdk("s-1", update)


def test_other_updates_take_the_sdk_path() -> None:
    with_meta = s.AgentMessageChunk(
        session_update="agent_message_chunk",
        content=text_block("x"),
        field_meta={"pygent": {"k": 1}},
    )
    thought = s.AgentThoughtChunk(session_update="agent_thought_chunk", content=text_block("t"))
    image = s.AgentMessageChunk(
        session_update="agent_message_chunk",
        content=s.ImageContentBlock(type="image", mime_type="image/png", data="AAAA"),
    )
    for update in (with_meta, thought, image):
        assert notification("s", update) == _sdk("s", update)
    assert notification("s", with_meta)["update"]["_meta"] == {"pygent": {"k": 1}}


async def test_client_reads_frames_split_and_batched() -> None:
    """The host client's reader: frames cut anywhere, several in one read, a bad header."""
    got: list[Any] = []
    reader = asyncio.StreamReader()
    client = RpcClient(reader, writer=None)  # type: ignore[arg-type] (never writes here)
    client.on_notification("n", got.append)
    client.start()
    frames = b""
    for i in range(5):
        body = json.dumps({"jsonrpc": "2.0", "method": "n", "params": {"i": i, "t": "é"}}).encode()
        frames += b"Content-Length: %d\r\n\r\n" % len(body) + body
    for cut in (3, 17, 40, len(frames)):  # split inside a header and inside a body
        reader.feed_data(frames[:cut])
        frames = frames[cut:]
        await asyncio.sleep(0)
    reader.feed_data(frames)
    for _ in range(20):
        await asyncio.sleep(0)
    assert [g["i"] for g in got] == [0, 1, 2, 3, 4]
    reader.feed_data(b"Content-Length: nope\r\n\r\n{}")
    reason = await asyncio.wait_for(client.closed, 5)
    assert "cannot read" in reason


async def test_client_over_a_socket_takes_frames_as_they_arrive() -> None:
    """``connect_unix``'s reader dispatches in the transport's callback: split frames,
    batched frames, a request answered, then a bad frame ends the connection clearly."""
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="pyg-rpc-"))
    path = folder / "s.sock"
    got: list[Any] = []
    answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def frame(message: dict[str, Any]) -> bytes:
        body = json.dumps(message).encode()
        return b"Content-Length: %d\r\n\r\n" % len(body) + body

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b"".join(frame({"jsonrpc": "2.0", "method": "n", "params": i}) for i in range(4))
        for cut in (5, 30, 31, len(data)):
            writer.write(data[:cut])
            data = data[cut:]
            await writer.drain()
            await asyncio.sleep(0.01)
        header = await reader.readuntil(b"\r\n\r\n")
        length = int(header.split(b":")[1].strip())
        answered.set_result(await reader.readexactly(length))
        writer.write(frame({"jsonrpc": "2.0", "id": 1, "result": {"ok": True}}))
        writer.write(b"Content-Length: x\r\n\r\n{}")
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    server = await asyncio.start_unix_server(serve, path=str(path))
    try:
        client = await RpcClient.connect_unix(path)
        client.on_notification("n", got.append)
        assert await asyncio.wait_for(client.request("ping"), 5) == {"ok": True}
        assert got == [0, 1, 2, 3]
        assert json.loads(await answered)["method"] == "ping"
        reason = await asyncio.wait_for(client.closed, 5)
        assert "cannot read" in reason
        await client.aclose()
    finally:
        server.close()
        await server.wait_closed()
        path.unlink(missing_ok=True)
        folder.rmdir()
