"""The protocol's generated mirrors are up to date and cannot be edited by hand.

``docs/protocol.schema.json`` and ``editors/vscode/src/protocol.ts`` are generated from
the Python types (``python scripts/gen_protocol.py``); ``--check`` fails when either
differs, and a hand edit in a copy of them is caught. The extension imports nothing the
generated module lacks.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pygent import events as ev
from pygent.lsp import protocol
from pygent.lsp.schema import protocol_schema

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gen_protocol.py"
SCHEMA = Path("docs/protocol.schema.json")
MIRROR = Path("editors/vscode/src/protocol.ts")
INITIALIZE = Path("pygent/lsp/initialize.json")
EXTENSION = ROOT / "editors" / "vscode"


def _check(root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_generated_files_are_up_to_date() -> None:
    proc = _check()
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("rel", "edit"),
    [
        # A field made optional by hand in the TypeScript mirror.
        (MIRROR, lambda text: text.replace("  sessionId: string;", "  sessionId?: string;", 1)),
        # A stop reason added to the TypeScript vocabulary only.
        (MIRROR, lambda text: text.replace("  | 'refusal';", "  | 'refusal'\n  | 'timeout';", 1)),
        # An error code changed in the schema.
        (SCHEMA, lambda text: text.replace('"code": -32001', '"code": -32010', 1)),
    ],
    ids=["ts-field", "ts-vocabulary", "schema-code"],
)
def test_a_hand_edit_is_caught(tmp_path: Path, rel: Path, edit) -> None:
    for generated in (SCHEMA, MIRROR, INITIALIZE):
        (tmp_path / generated).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / generated, tmp_path / generated)
    assert _check(tmp_path).returncode == 0
    original = (tmp_path / rel).read_text(encoding="utf-8")
    edited = edit(original)
    assert edited != original, "the edit did not apply"
    (tmp_path / rel).write_text(edited, encoding="utf-8")
    proc = _check(tmp_path)
    assert proc.returncode == 1
    assert str(rel) in proc.stderr
    assert "python scripts/gen_protocol.py" in proc.stderr  # how to regenerate
    other = MIRROR if rel == SCHEMA else SCHEMA
    assert f"{other}: generated files" not in proc.stderr


def test_a_missing_file_is_caught(tmp_path: Path) -> None:
    (tmp_path / SCHEMA).parent.mkdir(parents=True)
    shutil.copy(ROOT / SCHEMA, tmp_path / SCHEMA)
    proc = _check(tmp_path)
    assert proc.returncode == 1
    assert str(MIRROR) in proc.stderr


def test_the_schema_names_every_method_code_and_update() -> None:
    schema = protocol_schema()
    methods = {m["name"]: m["method"] for m in schema["x-methods"]}
    constants = {
        name: value
        for name, value in vars(protocol).items()
        if name.isupper() and isinstance(value, str) and value.startswith("pygent/")
    }
    assert methods == constants
    assert [m["method"] for m in schema["x-methods"] if m.get("command")] == list(protocol.REQUESTS)
    assert {e["name"]: e["code"] for e in schema["x-errors"]} == protocol.ERROR_CODES
    tags = [
        schema["$defs"][ref["$ref"].rsplit("/", 1)[1]]["properties"]["type"]["const"]
        for ref in schema["$defs"]["SessionUpdate"]["oneOf"]
    ]
    assert tags == [cls.type for cls in ev.SESSION_EVENTS] == list(protocol.UPDATE_TYPES)


def test_vocabularies_are_closed_in_the_mirror() -> None:
    ts = (ROOT / MIRROR).read_text(encoding="utf-8")
    schema = json.loads((ROOT / SCHEMA).read_text(encoding="utf-8"))
    for name in ("StopReason", "TaskState", "ToolCallStatus", "PermissionOptionId", "SyncMode"):
        values = schema["$defs"][name]["enum"]
        match = re.search(rf"^export type {name} =(.*?);$", ts, flags=re.M | re.S)
        assert match, name
        assert re.findall(r"'([^']+)'", match.group(1)) == values
    assert "status: TaskState;" in ts and "stopReason: StopReason;" in ts


def _imports_from_protocol() -> set[str]:
    """Every name a file of the extension imports from src/protocol.ts."""
    names: set[str] = set()
    pattern = re.compile(r"import\s+(?:type\s+)?\{([^}]*)\}\s+from\s+'[./]*(?:src/)?protocol'")
    for path in EXTENSION.glob("**/*.ts"):
        if "node_modules" in path.parts or path.name.endswith(".d.ts"):
            continue
        for group in pattern.findall(path.read_text(encoding="utf-8")):
            for item in group.split(","):
                item = item.strip().removeprefix("type ").strip()
                if item:
                    names.add(item.split(" as ")[0].strip())
    return names


def test_the_mirror_exports_everything_the_extension_imports() -> None:
    ts = (ROOT / MIRROR).read_text(encoding="utf-8")
    exported = set(re.findall(r"^export (?:const|type|interface|function) (\w+)", ts, flags=re.M))
    imported = _imports_from_protocol()
    assert {"SessionUpdate", "PROTOCOL_VERSION", "PermissionOptionId"} <= imported
    assert imported - exported == set()
