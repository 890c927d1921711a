"""The server's ``initialize`` answer, known before pygls is imported.

Importing ``lsprotocol.types`` (which pygls needs) takes a quarter of a second, more
than everything else in the server's start-up together. The answer to ``initialize``
does not depend on it: the features Pygent registers are fixed, and the only part the
client decides is the position encoding (and whether ``willSave`` is mentioned). So ``initialize.json`` beside this module
holds the answer the real server gives (``scripts/gen_protocol.py`` writes it and its
``--check`` compares it with the live server), and :mod:`pygent.lsp.launch` sends it
while the server is still loading. The real server then handles the same request with
its answer dropped, so its state (client capabilities, folders, process id) is exactly
as if it had answered; a difference from the early answer is logged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The stored capabilities (without ``positionEncoding``, which the client decides).
ANSWER_PATH = Path(__file__).with_name("initialize.json")
#: The encodings pygls accepts, as ``ServerCapabilitiesBuilder.choose_position_encoding``.
_ENCODINGS = ("utf-8", "utf-16", "utf-32")


def position_encoding(params: dict[str, Any]) -> str:
    """The client's first supported encoding (UTF-16 when it names none), as pygls picks."""
    general = (params.get("capabilities") or {}).get("general") or {}
    for encoding in general.get("positionEncodings") or ():
        if encoding in _ENCODINGS:
            return str(encoding)
    return "utf-16"


def early_answer(params: dict[str, Any], stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``initialize`` result for ``params``, from the stored capabilities."""
    from pygent import __version__

    caps = stored if stored is not None else json.loads(ANSWER_PATH.read_text())
    caps = {"positionEncoding": position_encoding(params), **caps}
    client_sync = ((params.get("capabilities") or {}).get("textDocument") or {}).get(
        "synchronization"
    ) or {}
    if "textDocumentSync" in caps:
        # pygls answers "willSave: false" to a client that names it (Pygent has no
        # willSave handler), and leaves it out otherwise.
        sync = dict(caps["textDocumentSync"])
        for key in ("willSave", "willSaveWaitUntil"):
            if client_sync.get(key) is not None:
                sync[key] = False
        caps["textDocumentSync"] = sync
    return {
        "capabilities": caps,
        "serverInfo": {"name": "pygent", "version": __version__},
    }


def served_answer(params: dict[str, Any]) -> dict[str, Any]:
    """What the real server answers to ``initialize`` with ``params`` (imports pygls)."""
    from pygent.lsp.server import create_server
    from pygent.settings import load_settings

    sent: list[bytes] = []

    class Capture:
        backlog = 0

        def write(self, data: bytes) -> None:
            sent.append(data)

        def close(self, timeout: float = 5.0) -> None:
            pass

    server = create_server(load_settings({}, config_file=None))
    server.protocol.set_writer(Capture())
    server.protocol.handle_raw({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
    body = b"".join(sent).partition(b"\r\n\r\n")[2]
    return dict(json.loads(body)["result"])


def stored_form(answer: dict[str, Any]) -> dict[str, Any]:
    """The file's content for a served answer: its capabilities but the client's part."""
    return {k: v for k, v in answer["capabilities"].items() if k != "positionEncoding"}


def render(answer: dict[str, Any]) -> str:
    return json.dumps(stored_form(answer), indent=2, sort_keys=True) + "\n"
