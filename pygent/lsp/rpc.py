"""``PygentProtocol``: pygls' language-server protocol with the JSON-RPC fixes Pygent needs.

- messages arrive already parsed from :mod:`pygent.lsp.transport`; custom params stay
  plain dicts (pygls would make namedtuples and rename keys such as ``_meta``);
- a request whose params cannot be structured gets ``-32602`` with its id, and a
  client answer that cannot be read fails the waiting request instead of hanging it;
- ``workspace/executeCommand`` runs as a cancellable task taking ONE params object;
- ``$/progress`` notifications are dropped when the client stops reading;
- ``exit`` ends the connection instead of calling ``sys.exit`` inside the event loop,
  so the server can remove its containers first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import attrs
import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
    LanguageServerProtocol,
    lsp_method,
)

from pygent.lsp import protocol as p
from pygent.lsp.transport import MAX_BACKLOG

log = logging.getLogger(__name__)


def _plain(obj: dict[str, Any], cls: type) -> Any:
    # Keep params/results as the plain JSON the client sent (pitfall 1: no namedtuples).
    return cls(**{a.name: obj.get(a.name) for a in attrs.fields(cls)})


def converter_factory() -> cattrs.Converter:
    """pygls' converter, except that generic messages keep plain-dict params and results."""
    from pygls.protocol import default_converter

    conv = default_converter()
    for cls in (JsonRPCRequestMessage, JsonRPCResponseMessage, JsonRPCNotification):
        conv.register_structure_hook(cls, _plain)
    return conv


def _size_hint(params: Any, depth: int = 0) -> int:
    """About how many bytes ``params`` encode to (counted as pending until they are)."""
    if isinstance(params, str):
        return len(params) + 2
    if depth < 4 and isinstance(params, dict):
        return sum(len(k) + 4 + _size_hint(v, depth + 1) for k, v in params.items()) + 2
    if depth < 4 and isinstance(params, list):
        return sum(_size_hint(v, depth + 1) + 1 for v in params) + 2
    return 8


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        try:
            return "; ".join(cattrs.transform_error(exc, path="$"))[:2000]
        except Exception:  # a message is all we need; never fail while reporting
            return str(exc)
    return str(exc) or type(exc).__name__


class PygentProtocol(LanguageServerProtocol):
    """The protocol object of :class:`~pygent.lsp.server.PygentLanguageServer`."""

    def __init__(self, server: Any, converter: cattrs.Converter) -> None:
        super().__init__(server, converter)
        self.exit_requested = False
        self.shutdown_requested = False
        self.on_exit: Callable[[], None] | None = None
        self.dropped_progress = 0
        #: Requests answered before the server loaded (``initialize``): their ids.
        self.answered_early: set[Any] = set()

    # --- reading -------------------------------------------------------------------------

    def handle_raw(self, data: dict[str, Any]) -> None:
        """Structure one parsed message and handle it (see :mod:`pygent.lsp.transport`)."""
        method = data.get("method")
        msg_id = data.get("id")
        message: Any
        try:
            if "id" in data:
                if "error" in data:
                    message = self._converter.structure(data, types.ResponseErrorMessage)
                elif method is not None:
                    kind = self.get_message_type(method) or JsonRPCRequestMessage
                    message = self._converter.structure(data, kind)
                else:
                    kind = self._result_types.pop(msg_id, None) or JsonRPCResponseMessage  # type: ignore[arg-type]
                    message = self._converter.structure(data, kind)
            else:
                kind = self.get_message_type(method or "") or JsonRPCNotification
                message = self._converter.structure(data, kind)
        except Exception as exc:  # cattrs raises many kinds; each gets a clear answer
            detail = _describe(exc)
            if method is not None and "id" in data:
                self.send_error(msg_id, p.INVALID_PARAMS, f"invalid params for {method}: {detail}")
            elif method is None:
                self._fail_pending(msg_id, f"the client's answer could not be read: {detail}")
            else:
                log.warning("ignoring notification %s with invalid params: %s", method, detail)
            return
        self.handle_message(message)

    def _fail_pending(self, msg_id: Any, why: str) -> None:
        future = self._request_futures.pop(msg_id, None)
        if future is not None and not future.done():
            future.set_exception(JsonRpcInvalidParams(why))
        else:
            log.warning("unreadable response to unknown request %r: %s", msg_id, why)

    # --- writing -------------------------------------------------------------------------

    def send_error(self, msg_id: Any, code: int, message: str, data: Any = None) -> None:
        """Send an error response (``id`` may be None for an unreadable request)."""
        error: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        self._send_data({"jsonrpc": "2.0", "id": msg_id, "error": error})

    def _send_data(self, data: Any) -> None:
        if not data:
            return
        if self.writer is None:
            log.error("cannot send a message: no connection")
            return
        if getattr(data, "method", None) == types.PROGRESS:
            if getattr(self.writer, "backlog", 0) > MAX_BACKLOG:
                # The client is not reading: drop progress, keep results and updates.
                self.dropped_progress += 1
                return
        write_later = getattr(self.writer, "write_later", None)
        if write_later is not None and type(data) is JsonRPCNotification:
            # Session updates (command output: 64 KiB frames, megabytes a second) are
            # encoded on the writer's thread, in queue order: the loop stays free for
            # requests. A notification that cannot be encoded is logged and dropped there.
            write_later(lambda: self._encode(data), _size_hint(data.params))
            self._mark_handled()
            return
        try:
            body = json.dumps(data, default=self._serialize_message)
        except (TypeError, ValueError, RecursionError) as exc:
            log.error("cannot serialise a message: %s", exc)
            msg_id = getattr(data, "id", None) if not isinstance(data, dict) else data.get("id")
            if msg_id is not None and getattr(data, "method", None) is None:
                self.send_error(
                    msg_id, p.INTERNAL_ERROR, f"the result could not be serialised: {exc}"
                )
            return
        if self.answered_early and getattr(data, "method", None) is None:
            answered = data.get("id") if isinstance(data, dict) else getattr(data, "id", None)
            if answered in self.answered_early:
                self.answered_early.discard(answered)
                log.debug("dropping the answer to %r (answered early)", answered)
                return
        reply_to = getattr(data, "id", None) if getattr(data, "method", None) is None else None
        write_reply = getattr(self.writer, "write_reply", None)
        if reply_to is not None and write_reply is not None:
            write_reply(self._frame(body), reply_to)  # may pass queued notifications
            return
        self.writer.write(self._frame(body))
        self._mark_handled()

    def _mark_handled(self) -> None:
        # Sent while handling a request (its turn's updates...): its reply comes after.
        mark = getattr(self.writer, "mark", None)
        request_id = self.msg_id
        if mark is not None and request_id is not None:
            mark(request_id)

    def _frame(self, body: str) -> bytes:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("sending %s", body[:500])
        encoded = body.encode("utf-8")
        if self._include_headers:
            header = f"Content-Length: {len(encoded)}\r\n\r\n".encode("ascii")
            encoded = header + encoded
        return encoded

    def _encode(self, data: Any) -> bytes | None:
        """A notification as bytes on the wire (on the writer's thread); None if it cannot be."""
        try:
            return self._frame(json.dumps(data, default=self._serialize_message))
        except (TypeError, ValueError, RecursionError) as exc:
            log.error("cannot serialise a notification: %s", exc)
            return None

    # --- LSP methods with Pygent behaviour --------------------------------------------

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams) -> Any:
        result = yield from super().lsp_initialize(params)
        result.capabilities.experimental = {
            "pygent": {
                "protocolVersion": p.PROTOCOL_VERSION,
                "methods": list(p.REQUESTS),
                "notifications": [p.SESSION_UPDATE],
                "serverRequests": [p.REQUEST_PERMISSION],
            }
        }
        return result

    @lsp_method(types.SHUTDOWN)
    def lsp_shutdown(self, *args: Any) -> Any:
        self.shutdown_requested = True
        yield from super().lsp_shutdown(*args)
        return None

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any) -> None:  # type: ignore[override]
        # pygls calls sys.exit() inside the event loop; Pygent must await clean-up first.
        self.exit_requested = True
        if self.on_exit is not None:
            self.on_exit()

    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    async def lsp_workspace__execute_command(  # type: ignore[override]
        self, params: types.ExecuteCommandParams
    ) -> Any:
        handler = self.fm.commands.get(params.command)
        if handler is None:
            known = ", ".join(sorted(self.fm.commands))
            raise JsonRpcInvalidParams(f"unknown command {params.command!r} (commands: {known})")
        arguments = list(params.arguments or [])
        if len(arguments) > 1:
            raise JsonRpcInvalidParams(
                f"command {params.command} takes one argument (the params object), got {len(arguments)}"
            )
        return await handler(arguments[0] if arguments else None, params.work_done_token)

    def handle_message(self, message: Any) -> None:
        try:
            super().handle_message(message)
        except JsonRpcException as exc:
            log.warning("message failed: %s", exc)
