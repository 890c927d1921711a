"""The emitted JSON Schema describes the wire: docs examples and real payloads validate.

Every ```json block of docs/protocol.md is a JSON-RPC message: a request or
notification is validated as a whole against the schema (its ``oneOf``), a response
against the result type of the request with the same ``id`` earlier on the page, and a
``workspace/executeCommand`` by its argument against the command's params. What the
server's converter writes validates too, the wire vocabularies equal the core's own
lists, and every exception carries the code the LSP edge answers with.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pygent import approval, errors, service, settings, task_info
from pygent import events as ev
from pygent.lsp import protocol as p
from pygent.lsp.handlers import _error
from pygent.lsp.schema import protocol_schema
from pygent.tasks import UnknownTaskError

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "protocol.md"
#: Standard LSP methods the page shows; their payloads are LSP's, not in this schema.
LSP_METHODS = {"workspace/applyEdit"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads((ROOT / "docs" / "protocol.schema.json").read_text(encoding="utf-8"))


def _validator(schema: dict[str, Any], name: str | None = None) -> Draft202012Validator:
    if name is None:
        return Draft202012Validator(schema)
    return Draft202012Validator(
        {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{name}"}
    )


def _errors(validator: Draft202012Validator, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


def _examples() -> list[tuple[int, Any]]:
    """(line, message) of every ```json block on the page, in order."""
    text = DOC.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"^```json\n(.*?)^```", text, flags=re.M | re.S):
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, json.loads(match.group(1))))
    return found


def test_the_schema_is_a_valid_json_schema(schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    assert schema == protocol_schema()  # the file is what the Python types give today


def test_every_json_example_in_protocol_md_validates(schema: dict[str, Any]) -> None:
    methods = {m["method"]: m for m in schema["x-methods"]}
    commands = {m["command"]: m for m in schema["x-methods"] if "command" in m}
    whole = _validator(schema)
    asked: dict[Any, str] = {}  # request id -> method, to type the response
    checked: dict[str, int] = {"request": 0, "notification": 0, "result": 0, "command": 0}
    problems: list[str] = []
    for line, message in _examples():
        where = f"docs/protocol.md:{line}"
        if "method" in message:
            method = message["method"]
            if method == "workspace/executeCommand":
                entry = commands[message["params"]["command"]]
                problems += [
                    f"{where}: {e}"
                    for e in _errors(
                        _validator(schema, entry["params"]), message["params"]["arguments"][0]
                    )
                ]
                asked[message["id"]] = entry["method"]
                checked["command"] += 1
                continue
            if method in LSP_METHODS:
                asked[message["id"]] = method
                continue
            assert method in methods, f"{where}: unknown method {method}"
            problems += [f"{where}: {e}" for e in _errors(whole, message)]
            problems += [
                f"{where}: {e}"
                for e in _errors(_validator(schema, methods[method]["params"]), message["params"])
            ]
            if "id" in message:
                asked[message["id"]] = method
            checked[methods[method]["kind"]] += 1
        else:
            assert "result" in message, f"{where}: neither a request nor a result"
            method = asked[message["id"]]
            if method in LSP_METHODS:
                continue
            result = methods[method]["result"]
            problems += [
                f"{where}: {e}" for e in _errors(_validator(schema, result), message["result"])
            ]
            checked["result"] += 1
    assert problems == []
    # Every request of the protocol has an example, and so has each server -> client message.
    shown = set(asked.values())
    assert set(p.REQUESTS) - {p.TOOLS_LIST, p.TOOLS_ENABLE} <= shown
    assert p.REQUEST_PERMISSION in shown
    assert checked["notification"] >= 1 and checked["command"] >= 1 and checked["result"] >= 17


def test_an_example_that_does_not_fit_is_caught(schema: dict[str, Any]) -> None:
    validator = _validator(schema)
    good = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": p.SESSION_PROMPT,
        "params": {"sessionId": "s", "prompt": "hi"},
    }
    assert _errors(validator, good) == []
    for params in (
        {"sessionId": "s"},  # a required field missing
        {"sessionId": "s", "prompt": "hi", "maxStep": 3},  # a misspelt field
        {"sessionId": 1, "prompt": "hi"},  # a wrong type
    ):
        assert _errors(validator, {**good, "params": params})
    result = _validator(schema, "PromptResult")
    assert _errors(
        result,
        {
            "stopReason": "finished",
            "text": "",
            "error": "",
            "steps": 0,
            "question": "",
            "options": [],
            "changes": 0,
        },
    )


@pytest.mark.parametrize("cls", ev.SESSION_EVENTS, ids=lambda c: c.type)
def test_what_the_server_writes_validates(schema: dict[str, Any], cls: type[ev.Event]) -> None:
    wire = p.unstructure(p.SessionUpdateParams(session_id="s1", seq=1, update=cls(session_id="s1")))
    assert _errors(_validator(schema, "SessionUpdateParams"), wire) == []
    assert wire["update"]["type"] == cls.type and "sessionId" not in wire["update"]
    # and back: the wire form reads as the same event
    assert p.unstructure(p.structure(wire["update"], p.UPDATE_TYPES[cls.type])) == wire["update"]


def test_payloads_the_server_writes_validate(schema: dict[str, Any]) -> None:
    samples = {
        "PromptResult": p.PromptResult(stop_reason=ev.StopReason.MAX_STEPS, steps=3),
        "SessionInfo": p.SessionInfo(session_id="s1", approval_mode="confirm"),
        "TaskInfo": p.TaskInfo(task_id="t1", status="running"),
        "ChangeSet": p.ChangeSet("s1", "copy", [p.FileChange("a.py", "modified", "--- a/a.py")]),
        "RequestPermissionParams": p.RequestPermissionParams(
            session_id="s1",
            tool_call=p.ToolCallInfo("c1", "bash", {"cmd": "ls"}, "ls", "command"),
            options=p.default_permission_options(),
        ),
    }
    for name, value in samples.items():
        assert _errors(_validator(schema, name), p.unstructure(value)) == [], name


def _values(vocabulary: Any) -> set[str]:
    return set(typing.get_args(vocabulary))


def test_wire_vocabularies_are_the_cores() -> None:
    assert _values(p.RuntimeKind) == set(service.RUNTIMES)
    assert _values(p.SyncMode) == set(service.SYNC_MODES)
    assert _values(p.ApprovalMode) == set(settings.APPROVAL_MODES)
    assert _values(p.PermissionAnswer) == {o.value for o in approval.ApprovalOption}
    assert _values(p.PermissionOptionId) == {o.value for o in approval.ALL_OPTIONS}
    assert _values(ev.TaskState) == {
        task_info.QUEUED,
        task_info.RUNNING,
        task_info.FINISHED,
        task_info.FAILED,
        task_info.TIMEOUT,
        task_info.CANCELLED,
    }
    assert p.StopReason is ev.StopReason


def test_every_exception_carries_its_wire_code() -> None:
    assert errors.UnknownSessionError.code == p.SESSION_NOT_FOUND == -32001
    assert errors.SessionBusyError.code == p.SESSION_BUSY == -32002
    assert errors.RuntimeUnavailable.code == p.RUNTIME_UNAVAILABLE == -32003
    assert errors.PygentError.code == p.PYGENT_ERROR == -32005
    assert errors.PathError.code == p.PATH_REFUSED == -32006
    assert errors.ParamsError.code == p.INVALID_PARAMS == -32602
    assert errors.ModelAuthError.code == p.PYGENT_ERROR  # inherited
    # service.py re-exports the moved classes: one class each.
    assert service.UnknownSessionError is errors.UnknownSessionError
    assert service.SessionBusyError is errors.SessionBusyError


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.UnknownSessionError("no session x"), -32001),
        (errors.SessionBusyError("busy"), -32002),
        (errors.RuntimeUnavailable("no docker", hint="start it"), -32003),
        (UnknownTaskError("no task t9"), -32004),
        (errors.ConfigError("bad key"), -32005),
        (errors.PathError("outside"), -32006),
        (errors.ParamsError("invalid PromptParams: prompt: is required"), -32602),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_the_lsp_edge_answers_with_the_exceptions_code(exc: errors.PygentError, code: int) -> None:
    answer = _error(exc)
    assert answer.code == code
    assert answer.message == str(exc)
    assert answer.data == ({"hint": exc.hint} if exc.hint else None)


def test_the_exception_tree_is_drawn_in_its_docstring() -> None:
    tree = (errors.__doc__ or "").split("::", 1)[1]
    defined = [
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.PygentError)
    ]
    assert len(defined) >= 15
    for cls in defined:
        line = re.search(rf"[─ ]{cls.__name__}\b(.*)$", tree, flags=re.M)
        assert line, f"{cls.__name__} is not drawn in pygent/errors.py's docstring"
        if "code" in cls.__dict__:
            assert str(cls.code) in line.group(1), cls.__name__
