"""The bridge mirrors ``editors/vscode/webview/messages.ts``: every page message is handled, every
host message and session event has the fields the page's parsers read.

The TypeScript is parsed here (the unions and the ``tagged({...})`` parser tables), so a
message added on either side without the other fails this test instead of being
dropped silently by the peer's parser at run time.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pygent.settings import Settings
from pygent.web import bridge as b
from pygent.web import messages as m

ROOT = Path(__file__).resolve().parents[2]
MESSAGES_TS = ROOT / "editors" / "vscode" / "webview" / "messages.ts"

pytestmark = pytest.mark.skipif(
    not MESSAGES_TS.is_file(), reason="editors/vscode is not checked out"
)

_OPEN = "([{"
_CLOSE = ")]}"


def _balanced(src: str, start: int) -> str:
    """The text inside the bracket at ``start`` (which must be an opening bracket)."""
    depth = 0
    quote = ""
    i = start
    while i < len(src):
        c = src[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "'\"`":
            quote = c
        elif c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth == 0:
                return src[start + 1 : i]
        i += 1
    raise AssertionError(f"unbalanced bracket at {start}")


def _top_level(body: str) -> list[str]:
    """``body`` split at the commas that are not inside brackets or strings."""
    parts, depth, quote, current = [], 0, "", []
    for c in body:
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"`":
            quote = c
        elif c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        elif c == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(c)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _strip_comments(src: str) -> str:
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    return re.sub(r"^\s*//.*$", "", src, flags=re.M)


SRC = _strip_comments(MESSAGES_TS.read_text(encoding="utf-8")) if MESSAGES_TS.is_file() else ""


def union_tags(name: str) -> set[str]:
    """The ``type`` tags of ``export type NAME = | {type: 'a'; ...} | ...;``."""
    start = SRC.index(f"export type {name} =")
    depth, end = 0, start
    for end in range(start, len(SRC)):
        c = SRC[end]
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        elif c == ";" and depth == 0:
            break
    return set(re.findall(r"type:\s*'(\w+)'", SRC[start:end]))


def parser_table(const: str) -> dict[str, list[str]]:
    """``export const CONST = tagged<...>({ tag: variant('tag', { field: ..., short, }) })``
    -> tag -> field names."""
    at = SRC.index(f"export const {const}")
    table = _balanced(SRC, SRC.index("({", at) + 1)
    out: dict[str, list[str]] = {}
    for entry in _top_level(table):
        key, _, rest = entry.partition(":")
        match = re.match(r"\s*variant\(\s*'(\w+)'\s*,\s*", rest)
        assert match, f"{const}: {entry[:80]!r} is not a variant"
        assert match.group(1) == key.strip(), f"{const}: key {key!r} tags {match.group(1)!r}"
        fields_body = _balanced(rest, rest.index("{", match.end() - 1))
        out[key.strip()] = [f.split(":")[0].strip() for f in _top_level(fields_body)]
    return out


def test_the_typescript_parses_into_something() -> None:
    # Guards the parsing helpers above: an empty result would make the other tests vacuous.
    assert {"ready", "prompt", "answerApproval"} <= union_tags("PageMessage")
    assert parser_table("parsePageMessage")["prompt"] == ["sessionId", "text"]
    assert "tool_call_proposed" in parser_table("parseSessionEvent")


def test_every_page_message_type_is_handled(tmp_path: Path) -> None:
    union = union_tags("PageMessage")
    parsers = set(parser_table("parsePageMessage"))
    assert union == parsers, "messages.ts: PageMessage and parsePageMessage disagree"
    assert set(m.PAGE_MESSAGES) == union, "bridge.PAGE_MESSAGES must list every PageMessage"
    bridge = b.Bridge(Settings(sessions_dir=tmp_path / "sessions"))
    assert set(bridge.handlers) == union, "every PageMessage needs a handler in the bridge"


def test_page_message_fields_match() -> None:
    for tag, fields in parser_table("parsePageMessage").items():
        assert list(m.PAGE_MESSAGES[tag]) == fields, tag


def test_host_messages_match() -> None:
    union = union_tags("HostMessage")
    table = parser_table("parseHostMessage")
    assert union == set(table) == set(m.HOST_MESSAGES)
    for tag, fields in table.items():
        assert list(m.HOST_MESSAGES[tag]) == fields, tag


def test_session_events_match() -> None:
    table = parser_table("parseSessionEvent")
    assert set(table) == set(m.SESSION_EVENTS), "the page's session events and the bridge's differ"
    for tag, fields in table.items():
        assert set(m.SESSION_EVENTS[tag]) == set(fields), tag


def test_vocabularies_match() -> None:
    version = re.search(r"PAGE_PROTOCOL_VERSION\s*=\s*(\d+)", SRC)
    assert version and int(version.group(1)) == m.PAGE_PROTOCOL_VERSION
    actions = re.search(r"HOST_ACTIONS\s*=\s*\[([^\]]*)\]", SRC)
    assert actions
    ts_actions = re.findall(r"'(\w+)'", actions.group(1))
    for action in ts_actions:
        m.parse_page_message({"type": "runAction", "action": action})
    with pytest.raises(m.MessageError):
        m.parse_page_message({"type": "runAction", "action": "formatDisk"})
    options = re.search(r"permissionOptionId = literal<PermissionOptionId>\(([^)]*)\)", SRC)
    assert options
    for option in re.findall(r"'(\w+)'", options.group(1)):
        m.parse_page_message(
            {"type": "answerApproval", "id": "a1", "optionId": option, "message": None}
        )


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        "ready",
        {"type": 3},
        {"type": "explode"},
        {"type": "prompt"},
        {"type": "prompt", "sessionId": 5, "text": "x"},
        {"type": "ready", "protocol": True},
        {"type": "answerApproval", "id": "a1", "optionId": "allow_forever", "message": None},
        {"type": "applyChanges", "sessionId": "s", "paths": ["a", 3]},
        {"type": "prompt", "sessionId": None, "text": "x" * (m.MAX_STRING + 1)},
    ],
)
def test_malformed_page_messages_are_refused(bad: object) -> None:
    with pytest.raises(m.MessageError):
        m.parse_page_message(bad)


def test_parsing_keeps_only_known_keys() -> None:
    got = m.parse_page_message({"type": "cancel", "sessionId": "s1", "__proto__": {}, "extra": 1})
    assert got == {"type": "cancel", "sessionId": "s1"}
    # Like messages.ts: a missing nullable key is null.
    assert m.parse_page_message({"type": "prompt", "text": "hi"}) == {
        "type": "prompt",
        "sessionId": None,
        "text": "hi",
    }


def object_fields(const: str) -> list[str]:
    """``const NAME = object<T>({ a: ..., b, })`` -> its field names."""
    at = SRC.index(f"const {const} = object<")
    body = _balanced(SRC, SRC.index("({", at) + 1)
    return [f.split(":")[0].strip() for f in _top_level(body)]


def test_data_shapes_match(tmp_path: Path) -> None:
    """The objects inside host messages carry exactly the keys the page's parsers read."""
    from pygent.approval import ApprovalRequest
    from pygent.changes import FileChange
    from pygent.service import SessionSummary
    from pygent.web.approvals import approval_view

    bridge = b.Bridge(Settings(sessions_dir=tmp_path / "sessions"))
    status = bridge.status()
    assert set(status) == set(object_fields("hostStatus"))
    assert status["problem"] is not None  # no API key in these settings
    assert set(status["problem"]) == set(object_fields("problem"))
    assert set(b.CAPABILITIES) == set(object_fields("capabilities"))

    request = ApprovalRequest(
        session_id="s",
        call_id="c",
        tool="bash",
        arguments={"cmd": "ls"},
        preview="ls",
        reason="why",
    )
    view = approval_view("a1", "s", request)
    assert set(view) == set(object_fields("approvalView"))
    assert {"optionId", "name"} == set(view["options"][0])

    assert [f.name for f in dataclasses.fields(FileChange)] == object_fields("fileChange")

    bridge._saved = [SessionSummary(session_id="s1", title="t", live=False)]
    assert set(bridge._summaries()[0]) == set(object_fields("sessionSummary"))

    bridge._task_update(
        "s1",
        {
            "type": "task_status",
            "taskId": "t1",
            "status": "running",
            "persona": "p",
            "prompt": "x",
            "steps": 1,
            "detail": "",
        },
    )
    assert set(bridge._tasks["s1"]["t1"]) == set(object_fields("taskInfo"))
