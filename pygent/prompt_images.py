"""Images in a user's prompt: the OpenAI ``image_url`` content parts of the user message.

A front end that takes images (``pygent acp``: ACP ``image`` content blocks) hands them to
:meth:`pygent.agent.Agent.arun` as data URLs; the user message becomes OpenAI's multi-part
content (a ``text`` part, then one ``image_url`` part per image), which the
OpenAI-compatible servers that take images (vision models) read. A server that refuses
them gets its images dropped from the conversation (:func:`without_images`), so the
session's next turn is not refused again for the same reason.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from pygent.errors import ParamsError

#: The largest image taken in a prompt (decoded bytes), as for the read_image tool.
MAX_PROMPT_IMAGE_BYTES = 8 * 1024 * 1024
#: The image types OpenAI-compatible vision models take.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
#: What replaces an image the model server refused, in the conversation.
DROPPED_NOTE = "[an image was attached here; the model server did not accept it]"


def data_url(mime_type: str, data: str) -> str:
    """A ``data:`` URL of a base64 image; :class:`ParamsError` names what is wrong with it."""
    if mime_type not in IMAGE_TYPES:
        raise ParamsError(
            f"images of type {mime_type!r} are not supported",
            hint=f"send one of {', '.join(IMAGE_TYPES)}",
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ParamsError("the image data is not valid base64") from None
    if not raw:
        raise ParamsError("the image is empty")
    if len(raw) > MAX_PROMPT_IMAGE_BYTES:
        raise ParamsError(
            f"the image is {len(raw)} bytes; the limit is {MAX_PROMPT_IMAGE_BYTES}",
            hint="send a smaller image",
        )
    return f"data:{mime_type};base64,{data}"


def check_data_url(url: str) -> str:
    """``url`` when it is the ``data:`` URL of a supported image (any client's prompt
    image is checked so), else :class:`ParamsError` saying what is wrong."""
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
        raise ParamsError(
            "an image must be a data: URL",
            hint="send data:image/png;base64,... (or jpeg, gif, webp)",
        )
    head, _, data = url.partition(";base64,")
    return data_url(head[len("data:") :], data)


def user_message(text: str, images: Sequence[str] = ()) -> dict[str, Any]:
    """The user message of a prompt: plain text, or text and ``image_url`` parts."""
    if not images:
        return {"role": "user", "content": text}
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return {"role": "user", "content": parts}


def without_images(message: dict[str, Any]) -> dict[str, Any] | None:
    """``message`` with its image parts replaced by :data:`DROPPED_NOTE` (None: it has none)."""
    content = message.get("content")
    if not isinstance(content, list):
        return None
    if not any(isinstance(p, dict) and p.get("type") == "image_url" for p in content):
        return None
    parts = [p for p in content if not (isinstance(p, dict) and p.get("type") == "image_url")]
    parts.append({"type": "text", "text": DROPPED_NOTE})
    return {**message, "content": parts}
