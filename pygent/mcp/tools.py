"""MCP tools as agent tools: names, checked schemas, and results as the model sees them.

A server's tool ``status`` becomes ``mcp__SERVER__status``. Its ``inputSchema`` is
checked before it is offered to the model (a JSON Schema the validator accepts, an
object at the top, no ``$ref`` cycles, not absurdly large); a tool that fails is left
out with a notice, the rest of the server's tools stay. Results keep every kind of
content: text, images (as attachments the model sees), embedded resources, resource
links, structured content, and ``isError`` (a failed call for the model).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import jsonschema
import mcp_types as types

PREFIX = "mcp__"
#: The model sees at most this many characters of one result (head and tail kept).
RESULT_CHARS = 100_000
#: A schema bigger than this (serialised) is refused: it would crowd the model's context.
SCHEMA_CHARS = 64_000
_TOOL = re.compile(r"[^A-Za-z0-9_-]+")
#: OpenAI-compatible APIs accept tool names up to 64 characters.
NAME_LIMIT = 64


def tool_name(server: str, tool: str) -> str:
    """``mcp__SERVER__TOOL``, with characters the model APIs refuse replaced by ``_``."""
    return (PREFIX + server + "__" + _TOOL.sub("_", tool))[:NAME_LIMIT]


def split_name(name: str) -> tuple[str, str] | None:
    """``mcp__git__status`` -> ("git", "status"); None for other tools."""
    if not name.startswith(PREFIX):
        return None
    server, sep, tool = name[len(PREFIX) :].partition("__")
    return (server, tool) if sep else None


def _has_ref_cycle(schema: Any, root: Any, seen: tuple[str, ...] = ()) -> bool:
    """True when following local ``$ref``s from ``schema`` comes back to one already on the path."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            if ref in seen:
                return True
            target: Any = root
            for part in ref.lstrip("#/").split("/") if ref != "#" else []:
                if not isinstance(target, dict) or part not in target:
                    return False  # unresolvable: the validator reports it
                target = target[part]
            if _has_ref_cycle(target, root, (*seen, ref)):
                return True
        return any(_has_ref_cycle(v, root, seen) for k, v in schema.items() if k != "$ref")
    if isinstance(schema, list):
        return any(_has_ref_cycle(v, root, seen) for v in schema)
    return False


def check_schema(schema: Any) -> str | None:
    """Why ``schema`` cannot be a tool's parameters (None when it can)."""
    if not isinstance(schema, dict):
        return "the input schema is not an object"
    if schema.get("type", "object") != "object":
        return f"the input schema's type is {schema.get('type')!r}, not 'object'"
    try:
        size = len(json.dumps(schema))
    except (TypeError, ValueError) as exc:
        return f"the input schema is not JSON: {exc}"
    if size > SCHEMA_CHARS:
        return f"the input schema is {size} characters long (limit {SCHEMA_CHARS})"
    if _has_ref_cycle(schema, schema):
        return "the input schema has a $ref cycle"
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"the input schema is invalid: {exc.message}"
    return None


def validate_call(schema: dict[str, Any], args: dict[str, Any]) -> str | None:
    """Check arguments against a tool's full JSON Schema; the first error, or None."""
    try:
        validator = jsonschema.validators.validator_for(schema)(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(args))
    except Exception as exc:  # an unresolvable $ref surfaces only while validating
        return f"the tool's schema cannot be used: {exc.__class__.__name__}: {exc}"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{'argument ' + where + ': ' if where else ''}{error.message}"


def cap(text: str, limit: int = RESULT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, head and tail kept, saying how much was cut."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return (
        text[:half]
        + f"\n[... output truncated: {len(text)} characters in total; head and tail kept ...]\n"
        + text[-half:]
    )


def _blob_size(data: str) -> int:
    return len(data) * 3 // 4


def convert_result(result: types.CallToolResult, limit: int = RESULT_CHARS) -> tuple[bool, str, tuple[str, ...]]:
    """A tool result -> (ok, text for the model, image data URLs).

    Every content block is kept in order: text as is, images as attachments (with a
    line saying so), audio and binary resources described (the model cannot take
    them), text resources with their URI, resource links as links. Structured content
    is added as JSON unless a text block already carries the same JSON.
    """
    parts: list[str] = []
    images: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent):
            if block.mime_type.startswith("image/") and image_attachment_ok(block.data):
                images.append(f"data:{block.mime_type};base64,{block.data}")
                parts.append(f"[image: {block.mime_type}, {_blob_size(block.data)} bytes, attached]")
            else:
                parts.append(f"[image: {block.mime_type}: not valid image data, not shown]")
        elif isinstance(block, types.AudioContent):
            parts.append(f"[audio: {block.mime_type}, {_blob_size(block.data)} bytes, not shown]")
        elif isinstance(block, types.EmbeddedResource):
            res = block.resource
            mime = f" ({res.mime_type})" if res.mime_type else ""
            if isinstance(res, types.TextResourceContents):
                parts.append(f"[resource {res.uri}{mime}]\n{res.text}")
            else:
                size = _blob_size(res.blob)
                parts.append(f"[resource {res.uri}{mime}: {size} bytes of binary data, not shown]")
        elif isinstance(block, types.ResourceLink):
            desc = f": {block.description}" if block.description else ""
            parts.append(f"[resource link {block.uri} ({block.name}){desc}]")
        else:  # a content type newer than this client: say so rather than drop it
            parts.append(f"[{getattr(block, 'type', 'unknown')} content not shown]")
    structured = result.structured_content
    if structured is not None:
        dumped = json.dumps(structured, ensure_ascii=False)
        # The SDK's servers wrap a plain return value as {"result": value}: no need twice.
        wrapped = structured.get("result") if isinstance(structured, dict) and len(structured) == 1 else None
        if not any(_same_json(p, structured) or (wrapped is not None and p == wrapped) for p in parts):
            parts.append("structured content:\n" + dumped)
    text = "\n".join(parts)
    if result.is_error:
        text = "error: the MCP tool reported an error:\n" + (text or "(no details)")
    elif not text:
        text = "(the tool returned no content)"
    return not result.is_error, cap(text, limit), tuple(images)


def _same_json(text: str, value: Any) -> bool:
    try:
        return bool(json.loads(text) == value)
    except ValueError:
        return False


def image_attachment_ok(data: str) -> bool:
    """True when ``data`` is base64 (a server could send anything)."""
    try:
        base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=True)
    except ValueError:
        return False
    return True
