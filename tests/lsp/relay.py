"""Reach the real server over another transport, as a stdio program a test client can start.

``python -m tests.lsp.relay TRANSPORT`` starts the real Pygent process for that
transport with this process's environment, then relays its own stdin/stdout (the LSP
frames of a pytest-lsp client) to it:

- ``tcp``: ``pygent lsp --tcp --port 0`` (the port is read from its log), bytes as they are;
- ``websocket``: ``pygent ui`` (the address is read from its stdout), one text frame per
  message each way, with the page's token and ``Origin``;
- ``host``: ``pygent serve`` in a private host folder, then ``pygent lsp --stdio`` with
  ``PYGENT_LSP_HOST=require`` on this process's stdin/stdout (the editor's own pipe).

The server's stderr is passed through. When the client goes (stdin ends), the
connection is closed and the server stopped (SIGTERM, then waited for), so the test
suite sees the same lifecycle as over stdio. Only the transport differs: every request,
reply and notification is the server's own.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

PYGENT = [sys.executable, "-m", "pygent"]
LISTENING = re.compile(r"pygent lsp listening on ([\d.]+):(\d+)")
PAGE = re.compile(r"Pygent UI: (http://\S+)")


def _forward_lines(stream: IO[str], sink: IO[str], found: list[str],
                   pattern: re.Pattern[str], ready: threading.Event) -> None:
    """Copy a child's output to ``sink``; the first match of ``pattern`` sets ``ready``."""
    for line in stream:
        sink.write(line)
        sink.flush()
        match = pattern.search(line)
        if match and not ready.is_set():
            found.extend(match.groups())
            ready.set()
    ready.set()


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start(argv: list[str], pattern: re.Pattern[str], *, on: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    found: list[str] = []
    ready = threading.Event()
    assert proc.stdout is not None and proc.stderr is not None
    watched, other = (proc.stderr, proc.stdout) if on == "stderr" else (proc.stdout, proc.stderr)
    threading.Thread(target=_forward_lines, args=(watched, sys.stderr, found, pattern, ready),
                     daemon=True).start()
    threading.Thread(target=_forward_lines,
                     args=(other, sys.stderr, [], re.compile(r"(?!)"), threading.Event()),
                     daemon=True).start()
    if not ready.wait(60) or not found:
        _stop(proc)
        raise SystemExit(f"relay: the server did not start ({' '.join(argv)})")
    return proc, found


def _pipe(read_fd: int, write: socket.socket | int) -> None:
    while chunk := os.read(read_fd, 65536):
        if isinstance(write, socket.socket):
            write.sendall(chunk)
        else:
            os.write(write, chunk)


def relay_tcp() -> int:
    proc, (host, port) = _start([*PYGENT, "lsp", "--tcp", "--host", "127.0.0.1", "--port", "0"],
                                LISTENING, on="stderr")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.settimeout(None)

    def to_server() -> None:
        try:
            _pipe(0, sock)
        except OSError:
            pass
        finally:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    threading.Thread(target=to_server, daemon=True).start()
    try:
        while chunk := sock.recv(65536):
            os.write(1, chunk)
    except OSError:
        pass
    finally:
        sock.close()
        _stop(proc)
    return 0


async def _websocket(url: str) -> None:
    from urllib.parse import urlsplit

    import aiohttp

    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    reader = asyncio.StreamReader(limit=256 * 1024 * 1024)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with aiohttp.ClientSession() as http, http.ws_connect(
        f"{origin}/ws?{parts.query}", headers={"Origin": origin}, max_msg_size=0
    ) as ws:

        async def to_server() -> None:
            while True:
                headers = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", headers).group(1))  # type: ignore[union-attr]
                body = await reader.readexactly(length)
                await ws.send_str(body.decode("utf-8"))

        async def to_client() -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                body = msg.data.encode("utf-8")
                os.write(1, b"Content-Length: %d\r\n\r\n" % len(body) + body)

        sender = asyncio.ensure_future(to_server())
        receiver = asyncio.ensure_future(to_client())
        await asyncio.wait([sender, receiver], return_when=asyncio.FIRST_COMPLETED)
        sender.cancel()
        receiver.cancel()


def relay_websocket() -> int:
    proc, (url,) = _start([*PYGENT, "ui", "--no-open", "--port", "0"], PAGE, on="stdout")
    try:
        asyncio.run(_websocket(url))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        _stop(proc)
    return 0


def relay_host() -> int:
    host_dir = Path(tempfile.mkdtemp(prefix="pgr-", dir="/tmp")) / "h"
    env = {**os.environ, "PYGENT_HOST_DIR": str(host_dir)}
    host = subprocess.Popen([*PYGENT, "serve"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    while not (host_dir / "host.sock").exists():
        if host.poll() is not None or time.monotonic() > deadline:
            _stop(host)  # type: ignore[arg-type]
            raise SystemExit("relay: pygent serve did not start")
        time.sleep(0.05)
    try:
        editor = subprocess.run([*PYGENT, "lsp", "--stdio"],
                                env={**env, "PYGENT_LSP_HOST": "require"})
        return editor.returncode
    finally:
        _stop(host)  # type: ignore[arg-type]
        shutil.rmtree(host_dir.parent, ignore_errors=True)


def main() -> int:
    transport = sys.argv[1]
    relays = {"tcp": relay_tcp, "websocket": relay_websocket, "host": relay_host}
    return relays[transport]()


if __name__ == "__main__":
    raise SystemExit(main())
