"""Session updates read from the host's JSON into core events, for ``pygent attach``.

The wire form of an update is its event's fields but ``session_id``, camelCase, after
its ``type`` tag (``pygent.lsp.protocol``). The protocol module reads it with its cattrs
converter, but importing that module and building the converter cost a terminal client
more than rendering a whole screen of transcript. This reader is derived from the same
event dataclasses (no second list of fields), and refuses what the converter refuses:
an unknown ``type``, an unknown key (a newer host's field), a value of the wrong type.
``tests/host/test_attach.py`` checks that it reads every event as the converter writes it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from typing import Any, Literal, Union

from pygent import events as ev


class UnreadableUpdate(ValueError):
    """An update this version cannot read (a newer host's, or a damaged one)."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_FIELDS: dict[type[ev.Event], dict[str, tuple[str, Any]]] = {}


def _fields(cls: type[ev.Event]) -> dict[str, tuple[str, Any]]:
    """Wire key -> (field name, its type) for one event class (resolved once)."""
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls)
        _FIELDS[cls] = {_camel(f.name): (f.name, hints[f.name]) for f in dataclasses.fields(cls)
                        if f.name != "session_id"}
    return _FIELDS[cls]


def _value(hint: Any, value: Any) -> Any:
    """``value`` checked against ``hint`` (converted for enums); raises ValueError."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if value in typing.get_args(hint):
            return value
    elif origin in (Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _value(option, value)
            except ValueError:
                continue
    elif hint is type(None):
        if value is None:
            return None
    elif isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    elif origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        if isinstance(value, list):
            return [_value(item, v) for v in value]
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ValueError(f"expected {hint}, got {type(value).__name__}")


def read_update(item: Any) -> ev.Event:
    """One update (``{"type": ..., camelCase fields}``) as its core event."""
    if not isinstance(item, dict):
        raise UnreadableUpdate(f"expected an object, got {type(item).__name__}")
    cls = ev.EVENT_TYPES.get(item.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise UnreadableUpdate(f"unknown update type {item.get('type')!r}")
    fields = _fields(cls)
    kwargs: dict[str, Any] = {}
    for key, value in item.items():
        if key == "type":
            continue
        if key not in fields:
            raise UnreadableUpdate(f"{cls.type}: unknown field {key!r}")
        name, hint = fields[key]
        try:
            kwargs[name] = _value(hint, value)
        except ValueError as exc:
            raise UnreadableUpdate(f"{cls.type}.{key}: {exc}") from None
    return cls(**kwargs)
