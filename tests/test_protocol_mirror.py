"""The VS Code extension's protocol mirror (editors/vscode/src/protocol.ts) matches pygent/lsp/protocol.py.

Every method and command name, error code and closed vocabulary of the Python file must
appear in the TypeScript file with the same value, every payload class must have an
interface of the same name with the same (camelCase) fields, and the TypeScript file may
not name methods the server does not have.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import attrs
import pytest

from pygent.lsp import protocol

MIRROR = Path(__file__).resolve().parents[1] / "editors" / "vscode" / "src" / "protocol.ts"

#: Module-level integer constants that are part of the wire protocol.
INT_CONSTANTS = [
    "PROTOCOL_VERSION",
    "PARSE_ERROR",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "INVALID_PARAMS",
    "INTERNAL_ERROR",
    "REQUEST_CANCELLED",
    "SESSION_NOT_FOUND",
    "SESSION_BUSY",
    "RUNTIME_UNAVAILABLE",
    "TASK_NOT_FOUND",
    "PYGENT_ERROR",
    "PATH_REFUSED",
    "MAX_MESSAGE_BYTES",
]

#: Literal aliases whose every value must appear in the mirror's alias of the same name.
VOCABULARIES = [
    "RuntimeKind",
    "SyncMode",
    "ApprovalMode",
    "StopReason",
    "ChangeStatus",
    "ApplyMethod",
    "PermissionOptionId",
]


@pytest.fixture(scope="module")
def ts() -> str:
    return MIRROR.read_text(encoding="utf-8")


def _method_constants() -> dict[str, str]:
    """NAME -> method for every ``pygent/...`` string constant of protocol.py."""
    return {
        name: value
        for name, value in vars(protocol).items()
        if name.isupper() and isinstance(value, str) and value.startswith("pygent/")
    }


def _ts_consts(ts: str) -> dict[str, str]:
    """``export const NAME = <expr>;`` -> expr (single-line constants only)."""
    return dict(re.findall(r"^export const (\w+) = ([^;\n]+);", ts, flags=re.M))


def _ts_interfaces(ts: str) -> dict[str, tuple[list[str], set[str]]]:
    """interface name -> (bases, own field names)."""
    found: dict[str, tuple[list[str], set[str]]] = {}
    pattern = re.compile(
        r"^(?:export )?interface (\w+)(?: extends ([\w, ]+))? \{\n(.*?)^\}", re.M | re.S
    )
    for name, bases, body in pattern.findall(ts):
        fields = set(re.findall(r"^  (\w+)\??:", body, flags=re.M))
        found[name] = ([b.strip() for b in bases.split(",")] if bases else [], fields)
    return found


def _all_fields(name: str, interfaces: dict[str, tuple[list[str], set[str]]]) -> set[str]:
    bases, fields = interfaces[name]
    out = set(fields)
    for base in bases:
        if base in interfaces:
            out |= _all_fields(base, interfaces)
    return out


def test_every_method_is_mirrored_with_the_same_name(ts: str) -> None:
    consts = _ts_consts(ts)
    methods = _method_constants()
    assert set(protocol.REQUESTS) | {protocol.SESSION_UPDATE, protocol.REQUEST_PERMISSION} <= set(
        methods.values()
    )
    for name, method in methods.items():
        assert consts.get(name) == f"'{method}'", (
            f"protocol.ts lacks: export const {name} = '{method}';"
        )


def test_every_command_name_appears(ts: str) -> None:
    for command in protocol.COMMANDS:
        assert f"'{command}'" in ts, f"command {command} missing from protocol.ts"


def test_the_mirror_names_no_method_the_server_lacks(ts: str) -> None:
    known = set(_method_constants().values()) | set(protocol.COMMANDS)
    named = set(re.findall(r"'(pygent[/.][\w/.]+)'", ts))
    assert named - known == set()


def test_integer_constants_match(ts: str) -> None:
    consts = _ts_consts(ts)
    for name in INT_CONSTANTS:
        assert name in consts, f"protocol.ts lacks {name}"
        expr = consts[name]
        assert re.fullmatch(r"[-\d\s*+]+", expr), f"{name} = {expr} is not a plain number"
        assert eval(expr) == getattr(protocol, name), name  # noqa: S307 (digits and * only, checked above)


@pytest.mark.parametrize("alias", VOCABULARIES)
def test_vocabularies_match(ts: str, alias: str) -> None:
    values = typing.get_args(getattr(protocol, alias))
    assert values, alias
    # `export type Alias = 'a' | 'b'` or `(typeof LIST)[number]` with `export const LIST = [...]`.
    match = re.search(rf"^export type {alias} = (.+?);$", ts, flags=re.M | re.S)
    assert match, f"protocol.ts lacks type {alias}"
    text = match.group(1)
    list_ref = re.fullmatch(r"\(typeof (\w+)\)\[number\]", text.strip())
    if list_ref:
        list_match = re.search(
            rf"^export const {list_ref.group(1)} = \[(.*?)\] as const;", ts, flags=re.M | re.S
        )
        assert list_match, list_ref.group(1)
        text = list_match.group(1)
    assert set(re.findall(r"'([^']+)'", text)) == set(values), alias


def test_every_payload_type_has_an_interface_with_its_fields(ts: str) -> None:
    interfaces = _ts_interfaces(ts)
    classes = [
        obj
        for obj in vars(protocol).values()
        if isinstance(obj, type) and attrs.has(obj) and obj.__module__ == protocol.__name__
    ]
    assert len(classes) > 30
    for cls in classes:
        assert cls.__name__ in interfaces, f"protocol.ts lacks interface {cls.__name__}"
        fields = _all_fields(cls.__name__, interfaces)
        for field in attrs.fields(cls):
            assert protocol.camel(field.name) in fields, (
                f"{cls.__name__}.{protocol.camel(field.name)} missing in protocol.ts"
            )


def test_every_update_type_is_in_the_union(ts: str) -> None:
    union = re.search(r"^export type SessionUpdate =(.*?);$", ts, flags=re.M | re.S)
    assert union
    members = set(re.findall(r"\| (\w+)", union.group(1)))
    interfaces = _ts_interfaces(ts)
    tags = set()
    for member in members:
        body = _interface_body(ts, member)
        tag = re.search(r"type: '(\w+)'", body)
        assert tag, member
        tags.add(tag.group(1))
        assert member in interfaces
    assert tags == set(protocol.UPDATE_TYPES)


def _interface_body(ts: str, name: str) -> str:
    match = re.search(rf"^export interface {name}\b.*?\{{\n(.*?)^\}}", ts, flags=re.M | re.S)
    assert match, name
    return match.group(1)
