"""The JSON Schema of the editor protocol, read off the Python types that define it.

:func:`protocol_schema` walks :mod:`pygent.lsp.protocol` (methods, payload classes,
``Literal`` vocabularies, error codes), :mod:`pygent.events` (the session updates) and
:mod:`pygent.errors` (which exception answers with which code) and returns one JSON
Schema (draft 2020-12) with the wire names (camelCase). ``docs/protocol.schema.json``
is this schema, and the VS Code extension's ``protocol.ts`` is generated from that
file; ``python scripts/gen_protocol.py`` writes both and ``--check`` compares them.

A payload's ``required`` keys follow who writes it: what the server sends always has
every field; what a client sends may leave out any field with a default (the
server fills it in). Every object is closed (``additionalProperties: false``), as the
server rejects unknown keys. Beside the standard keywords the root holds ``x-methods``
(every method, its direction, command and payload names), ``x-errors`` (every
``error.code``, with the exception that carries it) and ``x-constants``; its
``oneOf`` validates any request or notification message a peer sends.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from enum import Enum
from typing import Any, Literal

import attrs

from pygent import errors
from pygent import events as ev
from pygent.lsp import protocol as p
from pygent.task_info import UnknownTaskError

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
UPDATE_UNION = "SessionUpdate"


def protocol_schema() -> dict[str, Any]:
    """The whole protocol as one JSON-ready JSON Schema document."""
    return _Builder().build()


def update_name(cls: type[ev.Event]) -> str:
    """The schema (and TypeScript) name of an event as a session update: ``UsageUpdate``."""
    return f"{cls.__name__}Update"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}"}


def _doc(obj: Any) -> str:
    """An object's own docstring, cleaned (none for dataclasses' generated signatures)."""
    raw = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if not raw or raw.startswith(f"{getattr(obj, '__name__', '')}("):
        return ""
    return inspect.cleandoc(raw).replace("``", "`")  # Markdown, as JSON Schema tools show it


def _vocabularies() -> dict[str, Any]:
    """Name -> ``Literal`` alias or enum class, from protocol.py then events.py, in file order."""
    found: dict[str, Any] = {}
    for module in (p, ev):
        for name, obj in vars(module).items():
            if name.startswith("_") or name in found:
                continue
            if typing.get_origin(obj) is Literal:
                found[name] = obj
            elif isinstance(obj, type) and issubclass(obj, Enum) and obj.__module__ == ev.__name__:
                found[name] = obj
    return found


class _Builder:
    def __init__(self) -> None:
        self.vocabularies = _vocabularies()
        self.defs: dict[str, Any] = {}
        self.client_written = self._reachable(
            [params for m, (params, _r) in p.SIGNATURES.items() if m != p.REQUEST_PERMISSION]
            + [p.SIGNATURES[p.REQUEST_PERMISSION][1]]
        )
        server_written = self._reachable(
            [result for m, (_p, result) in p.SIGNATURES.items() if m != p.REQUEST_PERMISSION]
            + [p.SIGNATURES[p.REQUEST_PERMISSION][0], *p.NOTIFICATIONS.values()]
        )
        both = sorted(c.__name__ for c in self.client_written & server_written)
        if both:  # its required keys would depend on the direction: give each its own class
            raise TypeError(f"payload classes sent both ways: {', '.join(both)}")

    # --- the document ------------------------------------------------------------------

    def build(self) -> dict[str, Any]:
        for name, vocabulary in self.vocabularies.items():
            self.defs[name] = self._vocabulary(vocabulary)
        methods = self._methods()
        for cls in ev.SESSION_EVENTS:
            self._event(cls)
        self.defs[UPDATE_UNION] = {
            "description": "One event of a session, tagged by `type` (the events of "
            "pygent/events.py).",
            "oneOf": [_ref(update_name(cls)) for cls in ev.SESSION_EVENTS],
        }
        return {
            "$schema": SCHEMA_DIALECT,
            "title": "The Pygent editor protocol",
            "description": "Generated from pygent/lsp/protocol.py, pygent/events.py and "
            "pygent/errors.py by `python scripts/gen_protocol.py`: do not edit by hand. "
            "Validates a request or notification message; `x-methods` names each "
            "method's params and result in `$defs`.",
            "x-constants": {
                "PROTOCOL_VERSION": p.PROTOCOL_VERSION,
                "MAX_MESSAGE_BYTES": p.MAX_MESSAGE_BYTES,
            },
            "x-methods": methods,
            "x-errors": self._errors(),
            "oneOf": [self._message(m) for m in methods],
            "$defs": self.defs,
        }

    def _methods(self) -> list[dict[str, Any]]:
        names = {
            value: name
            for name, value in vars(p).items()
            if name.isupper() and isinstance(value, str) and value.startswith("pygent/")
        }
        out: list[dict[str, Any]] = []
        for method in p.REQUESTS:
            params, result = p.SIGNATURES[method]
            out.append(
                {
                    "name": names[method],
                    "method": method,
                    "kind": "request",
                    "direction": "clientToServer",
                    "command": p.command_name(method),
                    "params": self._class(params),
                    "result": self._class(result),
                }
            )
        for method, params in p.NOTIFICATIONS.items():
            out.append(
                {
                    "name": names[method],
                    "method": method,
                    "kind": "notification",
                    "direction": "serverToClient",
                    "params": self._class(params),
                }
            )
        params, result = p.SIGNATURES[p.REQUEST_PERMISSION]
        out.append(
            {
                "name": names[p.REQUEST_PERMISSION],
                "method": p.REQUEST_PERMISSION,
                "kind": "request",
                "direction": "serverToClient",
                "params": self._class(params),
                "result": self._class(result),
            }
        )
        return out

    def _message(self, method: dict[str, Any]) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["string", "integer"]},
            "method": {"const": method["method"]},
            "params": _ref(method["params"]),
        }
        required = ["jsonrpc", "method"]
        if method["kind"] == "request":
            required.insert(1, "id")
        else:
            del properties["id"]
        return {
            "title": method["method"],
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }

    def _errors(self) -> list[dict[str, Any]]:
        carriers: dict[int, list[type[errors.PygentError]]] = {}
        for obj in vars(errors).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, errors.PygentError)
                and "code" in obj.__dict__
            ):
                carriers.setdefault(obj.code, []).append(obj)
        # Still defined in pygent/task_info.py, without its code (see pygent.errors).
        carriers.setdefault(errors.TASK_NOT_FOUND, []).append(UnknownTaskError)
        out = []
        for name, code in p.ERROR_CODES.items():
            entry: dict[str, Any] = {"name": name, "code": code}
            for exc in carriers.get(code, []):
                entry["exception"] = exc.__name__
                entry["description"] = _doc(exc).split("\n\n")[0].replace("\n", " ")
            out.append(entry)
        return out

    # --- types -------------------------------------------------------------------------

    def _vocabulary(self, vocabulary: Any) -> dict[str, Any]:
        if isinstance(vocabulary, type) and issubclass(vocabulary, Enum):
            schema: dict[str, Any] = {"type": "string", "enum": [e.value for e in vocabulary]}
            if _doc(vocabulary):
                schema["description"] = _doc(vocabulary)
            return schema
        return {"type": "string", "enum": list(typing.get_args(vocabulary))}

    def _literal(self, tp: Any) -> dict[str, Any]:
        for name, vocabulary in self.vocabularies.items():
            if typing.get_origin(vocabulary) is Literal and vocabulary == tp:
                return _ref(name)
        values = list(typing.get_args(tp))
        return {"const": values[0]} if len(values) == 1 else {"type": "string", "enum": values}

    def _type(self, tp: Any) -> dict[str, Any]:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            vocabulary = p.closed_vocabulary(tp)
            return (
                self._literal(vocabulary) if vocabulary is not None else self._type(tp.__origin__)
            )
        if tp is Any:
            return {}
        if tp is type(None):
            return {"type": "null"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if origin is Literal:
            return self._literal(tp)
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [self._type(a) for a in typing.get_args(tp)]}
        if origin in (list, tuple):
            return {"type": "array", "items": self._type(typing.get_args(tp)[0])}
        if origin is dict:
            value = self._type(typing.get_args(tp)[1])
            return {"type": "object", **({"additionalProperties": value} if value else {})}
        if isinstance(tp, type) and issubclass(tp, Enum):
            return _ref(tp.__name__)
        if tp is ev.Event:
            return _ref(UPDATE_UNION)
        if isinstance(tp, type) and attrs.has(tp):
            return _ref(self._class(tp))
        raise TypeError(f"no JSON Schema for {tp!r}")

    def _class(self, cls: type) -> str:
        """Define an attrs payload class (once) and return its name."""
        name = cls.__name__
        if name in self.defs:
            return name
        self.defs[name] = {}  # reserved first: a class may refer to itself
        hints = typing.get_type_hints(cls, include_extras=True)
        client = cls in self.client_written
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            key = p.camel(field.name)
            schema = self._type(hints[field.name])
            if field.default is attrs.NOTHING or not client:
                required.append(key)
            elif client:
                default = field.default
                if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                    default = default.factory()
                schema = {
                    **schema,
                    "default": default.value if isinstance(default, Enum) else default,
                }
            properties[key] = schema
        self.defs[name] = self._object(cls, properties, required)
        return name

    def _event(self, cls: type[ev.Event]) -> None:
        hints = typing.get_type_hints(cls, include_extras=True)
        properties: dict[str, Any] = {"type": {"const": cls.type}}
        for field in dataclasses.fields(cls):
            if field.name != "session_id":
                properties[p.camel(field.name)] = self._type(hints[field.name])
        self.defs[update_name(cls)] = self._object(cls, properties, list(properties))

    @staticmethod
    def _object(cls: type, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object"}
        if _doc(cls):
            schema["description"] = _doc(cls)
        schema.update(properties=properties, required=required, additionalProperties=False)
        return schema

    def _reachable(self, roots: list[type]) -> set[type]:
        """The payload classes ``roots`` consist of, themselves included."""
        seen: set[type] = set()
        todo = list(roots)
        while todo:
            cls = todo.pop()
            if cls in seen:
                continue
            seen.add(cls)
            for hint in typing.get_type_hints(cls).values():
                todo.extend(_classes_in(hint))
        return seen


def _classes_in(tp: Any) -> list[type]:
    if isinstance(tp, type) and attrs.has(tp):
        return [tp]
    return [c for arg in typing.get_args(tp) for c in _classes_in(arg)]
