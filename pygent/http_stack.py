"""The HTTP client of the model layer: httpcore2, the transport under httpx2 and so under
the ``openai`` SDK, used directly.

The model layer needs little of an HTTP client: one connection pool per server, a POST
whose answer streams, a GET, timeouts, TLS, the environment's proxies, and the
server-sent events of a streamed answer. httpcore2 does the HTTP (with h11) and the
pooling, TLS and proxies; this module adds what httpx2 would have added on top (default
headers, the timeouts in httpcore2's form, proxies from the environment, a
case-insensitive view of the answer's headers) and reads the event stream. httpx2's own
import costs a launch of Pygent 30-60 ms (cookies, ``urllib.request``, ``email``,
multipart forms, its URL model), more than everything else here together.

Two imports that httpcore2 makes at load time cost a launch more than they serve:

- trio, whenever it is installed, only to run under trio's event loop: 0.1-0.2 s of
  every start of Pygent, which runs on asyncio alone. It is hidden for the length of the
  import (a ``None`` in ``sys.modules`` makes ``import trio`` fail there), and only when
  nothing has imported it yet.
- ``importlib.metadata``, for one call, ``version()`` of itself: 10-25 ms, most of it the
  module itself (the email parser, zip archive and CSV readers it loads). For that
  import it gets a stand-in whose ``version()`` reads the installed version from the
  name of the distribution's ``.dist-info`` folder, as installers write it
  (``httpcore2-2.17.0.dist-info``); a name not found there, and anything else asked of
  the stand-in, loads the real module.

Both are undone when the import ends: code that imports either module afterwards gets
the real one.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import ssl
import sys
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

_DIST_INFO = ".dist-info"


def _installed_version(name: str) -> str | None:
    """The version in ``<name>-<version>.dist-info`` on ``sys.path``, first found first."""
    prefix = name.replace("-", "_").lower() + "-"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # a zip file, a missing folder
            continue
        for folder in names:
            if folder.endswith(_DIST_INFO) and folder.lower().startswith(prefix):
                return folder[len(prefix) : -len(_DIST_INFO)]
    return None


class _MetadataStandIn(types.ModuleType):
    """``importlib.metadata`` for the length of one import: ``version()`` without the module."""

    def version(self, distribution_name: str) -> str:
        found = _installed_version(distribution_name)
        if found is None:
            return self._real().version(distribution_name)
        return found

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system's questions (__path__, __spec__)
            raise AttributeError(name)
        return getattr(self._real(), name)

    def _real(self) -> types.ModuleType:
        if sys.modules.get("importlib.metadata") is self:
            del sys.modules["importlib.metadata"]
        import importlib.metadata

        return importlib.metadata


_hide_trio = "trio" not in sys.modules
_stand_in = None if "importlib.metadata" in sys.modules else _MetadataStandIn("importlib.metadata")
if _hide_trio:
    sys.modules["trio"] = None  # type: ignore[assignment]
if _stand_in is not None:
    sys.modules["importlib.metadata"] = _stand_in
try:
    import httpcore2  # noqa: E402  (trio must be hidden first)
finally:
    if _hide_trio and sys.modules.get("trio", False) is None:
        del sys.modules["trio"]
    if _stand_in is not None and sys.modules.get("importlib.metadata") is _stand_in:
        del sys.modules["importlib.metadata"]

from httpcore2 import (  # noqa: E402
    ConnectTimeout,
    PoolTimeout,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    TimeoutException,
)

#: Everything a request can fail with short of an HTTP answer: no connection, a timeout,
#: a connection or a stream broken off, a proxy that refused (httpx2's ``TransportError``;
#: httpcore2's exceptions share no base class, hence a tuple).
TRANSPORT_ERRORS = (
    httpcore2.TimeoutException,
    httpcore2.NetworkError,
    httpcore2.ProtocolError,
    httpcore2.ProxyError,
    httpcore2.UnsupportedProtocol,
)

__all__ = [
    "Client",
    "ConnectTimeout",
    "PoolTimeout",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "Response",
    "TRANSPORT_ERRORS",
    "TimeoutException",
    "default_tls_context",
    "event_data",
]

#: A trace callback (httpcore2's ``trace`` extension): ``(event name, info)``.
Trace = Callable[[str, dict[str, Any]], Awaitable[None]]


def default_tls_context() -> ssl.SSLContext:
    """The verifying TLS context httpx2 would make: the system's CAs, or
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set."""
    return httpcore2.default_ssl_context()


def environment_proxy(url: str) -> tuple[httpcore2.Proxy, str] | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, minus ``NO_PROXY``), read as httpx2 reads them: through
    ``urllib.request.getproxies``; with its address as it may be shown (no login).
    None without one."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None  # the usual case, decided without loading urllib.request
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    address = proxies.get(parts.scheme) or proxies.get("all")
    if not address or (parts.hostname and urllib.request.proxy_bypass(parts.hostname)):
        return None
    if "://" not in address:
        address = f"http://{address}"  # HTTP_PROXY=host:port, as curl and httpx2 take it
    proxy = urlsplit(address)
    bare = urlunsplit((proxy.scheme, proxy.netloc.rpartition("@")[2], proxy.path, "", ""))
    if proxy.scheme.startswith("socks"):
        import importlib.util

        if importlib.util.find_spec("socksio") is None:
            from pygent.errors import ModelConnectionError

            raise ModelConnectionError(
                f"the proxy {bare} is a SOCKS proxy, which needs the socksio package",
                hint="pip install socksio (into Pygent's environment), or name an HTTP proxy",
            )
    if proxy.username is None:
        return httpcore2.Proxy(bare), bare
    login = (unquote(proxy.username), unquote(proxy.password or ""))
    return httpcore2.Proxy(bare, auth=login), bare


class Response:
    """An answer: status, headers (names in lower case) and a body read on demand."""

    def __init__(self, raw: httpcore2.Response) -> None:
        self._raw = raw
        self.status_code = raw.status
        headers: dict[str, str] = {}
        for name, value in raw.headers:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self.headers: Mapping[str, str] = headers

    @property
    def content(self) -> bytes:
        """The whole body (after :meth:`aread`, or from :meth:`Client.get`)."""
        return self._raw.content

    def json(self) -> Any:
        return json.loads(self.content)

    async def aread(self) -> bytes:
        return await self._raw.aread()

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        async for chunk in self._raw.aiter_stream():
            if chunk:
                yield chunk


class Client:
    """One connection pool to one server, for the event loop that opened it."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        timeout: float,
        connect_timeout: float,
        tls: ssl.SSLContext | None,
    ) -> None:
        self._headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        proxy = environment_proxy(base_url)
        #: The proxy the requests go through, as it may be shown (no login); None: none.
        self.proxy: str | None = proxy[1] if proxy else None
        # httpx2's pool limits; a plain-http server needs no TLS context (building one
        # reads the system's CA files), so none is built for one.
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=tls, proxy=proxy[0] if proxy else None, max_connections=100,
            max_keepalive_connections=20, keepalive_expiry=5.0,
        )

    def _extensions(self, timeout: float | None, trace: Trace | None) -> dict[str, Any]:
        whole = self._timeout if timeout is None else timeout
        connect = self._connect_timeout if timeout is None else timeout
        out: dict[str, Any] = {
            "timeout": {"connect": connect, "read": whole, "write": whole, "pool": whole},
        }
        if trace is not None:
            out["trace"] = trace
        return out

    def _with(self, headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
        if not headers:
            return self._headers
        extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        names = {k.lower() for k, _ in extra}
        return [*(h for h in self._headers if h[0].lower() not in names), *extra]

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: str, *, content: bytes | None = None,
        headers: Mapping[str, str] | None = None, timeout: float | None = None,
        trace: Trace | None = None,
    ) -> AsyncIterator[Response]:
        """The answer with its body still to read; the connection goes back at the end."""
        async with self._pool.stream(method, url, headers=self._with(headers), content=content,
                                     extensions=self._extensions(timeout, trace)) as raw:
            yield Response(raw)

    async def request(
        self, method: str, url: str, *, content: bytes | None = None,
        headers: Mapping[str, str] | None = None, timeout: float | None = None,
        trace: Trace | None = None,
    ) -> Response:
        """The whole answer, body read."""
        raw = await self._pool.request(method, url, headers=self._with(headers), content=content,
                                       extensions=self._extensions(timeout, trace))
        return Response(raw)

    async def get(self, url: str, *, timeout: float | None = None) -> Response:
        return await self.request("GET", url, timeout=timeout)

    async def aclose(self) -> None:
        await self._pool.aclose()


def _lines(text: str) -> list[str]:
    """``text`` cut at CR, LF and CRLF; the last piece is what follows the last line end."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


async def event_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event in a byte stream, as httpx2's ``EventSource``
    reads them (the WHATWG rules): lines end in CR, LF or CRLF; a blank line ends an
    event, whose ``data:`` lines are joined with newlines; comments and other fields are
    skipped; an event whose blank line never came is not an event."""
    decode = codecs.getincrementaldecoder("utf-8")("replace").decode
    pending = ""  # the line still arriving
    data: list[str] = []

    def take(line: str) -> str | None:
        """Read one line; the event's data when the line ends an event."""
        nonlocal data
        if not line:
            event, data = ("\n".join(data) if data else None), []
            return event
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
        return None

    async for chunk in chunks:
        text = decode(chunk)
        if "\n" not in text and "\r" not in text:
            pending += text  # a long line in many chunks is not cut again at each one
            continue
        pending += text
        # A CR at the end may be the first half of a CRLF: kept until the next chunk.
        cut = len(pending) - 1 if pending.endswith("\r") else len(pending)
        lines = _lines(pending[:cut])
        pending = lines.pop() + pending[cut:]
        for line in lines:
            event = take(line)
            if event is not None:
                yield event
    pending += decode(b"", True)
    for line in _lines(pending) if pending else ():
        event = take(line)
        if event is not None:
            yield event
