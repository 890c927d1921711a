"""Generate the editor protocol's mirrors from its Python types: the JSON Schema, then protocol.ts.

    python scripts/gen_protocol.py            # write docs/protocol.schema.json,
                                              # editors/vscode/src/protocol.ts and
                                              # pygent/lsp/initialize.json
    python scripts/gen_protocol.py --check    # exit 1, naming each file that differs

The schema comes from :func:`pygent.lsp.schema.protocol_schema` (``pygent/lsp/protocol.py``,
``pygent/events.py``, ``pygent/errors.py``); the TypeScript module is rendered from the
schema alone, so anything the extension knows is in the schema too. The language
server's ``initialize`` answer is what the real server answers (:mod:`pygent.lsp.capabilities`). ``--root`` points
at another copy of the repository's files (the tests check a hand-edited copy).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCHEMA_FILE = Path("docs/protocol.schema.json")
TS_FILE = Path("editors/vscode/src/protocol.ts")
#: The language server's answer to initialize, sent before pygls loads (pygent.lsp.launch).
INITIALIZE_FILE = Path("pygent/lsp/initialize.json")
COMMAND = "python scripts/gen_protocol.py"

TS_HEADER = f"""\
/**
 * The Pygent editor protocol as the extension sees it: method names, error codes,
 * closed vocabularies and payload types, with camelCase fields as on the wire.
 *
 * GENERATED from {SCHEMA_FILE} (itself generated from pygent/lsp/protocol.py,
 * pygent/events.py and pygent/errors.py) by `{COMMAND}`. Do not edit by hand:
 * change the Python types and run the script; the tests run it with `--check`.
 * This module has no runtime dependencies so the webview can import its types too.
 */
"""


# --- the schema ------------------------------------------------------------------------------


def build_schema() -> dict[str, Any]:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from pygent.lsp.schema import protocol_schema

    return protocol_schema()


def render_schema(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


# --- TypeScript --------------------------------------------------------------------------------


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return json.dumps(value)


def _doc(text: str, indent: str = "") -> list[str]:
    """A JSDoc comment (nothing for no text)."""
    if not text:
        return []
    lines = text.replace("*/", "*\\/").splitlines()
    if len(lines) == 1 and len(indent) + len(lines[0]) <= 92:
        return [f"{indent}/** {lines[0]} */"]
    return [f"{indent}/**", *(f"{indent} * {line}".rstrip() for line in lines), f"{indent} */"]


def ts_type(schema: dict[str, Any]) -> str:
    """The TypeScript type of a (sub)schema."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[1]
    if "const" in schema:
        return _quote(schema["const"])
    if "enum" in schema:
        return " | ".join(_quote(v) for v in schema["enum"])
    if "anyOf" in schema or "oneOf" in schema:
        return " | ".join(ts_type(s) for s in schema.get("anyOf") or schema["oneOf"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(ts_type({"type": k}) for k in kind)
    if kind == "array":
        item = ts_type(schema.get("items", {}))
        return f"({item})[]" if " | " in item else f"{item}[]"
    if kind == "object":
        extra = schema.get("additionalProperties")
        return f"Record<string, {ts_type(extra) if isinstance(extra, dict) else 'unknown'}>"
    simple = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean"}
    if kind in simple:
        return simple[kind]
    if kind == "null":
        return "null"
    return "unknown"


def _union(name: str, members: list[str], doc: str) -> list[str]:
    line = f"export type {name} = {' | '.join(members)};"
    if len(line) <= 100:
        return [*_doc(doc), line]
    return [
        *_doc(doc),
        f"export type {name} =",
        *(f"  | {m}" for m in members[:-1]),
        f"  | {members[-1]};",
    ]


def _interface(name: str, schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = [*_doc(schema.get("description", "")), f"export interface {name} {{"]
    for key, prop in schema["properties"].items():
        lines += _doc(prop.get("description", ""), "  ")
        lines.append(f"  {key}{'' if key in required else '?'}: {ts_type(prop)};")
    return [*lines, "}"]


def _section(title: str) -> list[str]:
    return ["", f"// --- {title} ".ljust(100, "-"), ""]


def render_ts(schema: dict[str, Any]) -> str:
    defs: dict[str, Any] = schema["$defs"]
    methods: list[dict[str, Any]] = schema["x-methods"]
    out: list[str] = [TS_HEADER.rstrip("\n"), ""]
    for name, value in schema["x-constants"].items():
        out.append(f"export const {name} = {_quote(value)};")

    out += _section("methods")
    requests = [m for m in methods if m["direction"] == "clientToServer" and m["kind"] == "request"]
    for m in methods:
        if m["kind"] == "notification":
            what = f"Notification (server -> client): {{@link {m['params']}}}."
        else:
            arrow = "client -> server" if m["direction"] == "clientToServer" else "server -> client"
            what = f"Request ({arrow}): {{@link {m['params']}}} -> {{@link {m['result']}}}."
        out += _doc(what)
        out.append(f"export const {m['name']} = {_quote(m['method'])};")
    out += ["", "/** Every client -> server request, in documentation order. */"]
    out += ["export const REQUESTS = [", *(f"  {m['name']}," for m in requests), "] as const;"]
    out += [
        "",
        "/** The `workspace/executeCommand` name of a request: `pygent/task/list` -> `pygent.task.list`. */",
        "export function commandName(method: string): string {",
        "  return method.replaceAll('/', '.');",
        "}",
        "",
        "/** `workspace/executeCommand` names (one argument: the request's params). */",
        "export const COMMANDS = {",
        *(f"  {_quote(m['command'])}: {m['name']}," for m in requests),
        "} as const satisfies Record<string, (typeof REQUESTS)[number]>;",
        "",
        "/** The params and result of every request, by method. */",
        "export interface RequestTypes {",
        *(
            f"  {_quote(m['method'])}: {{ params: {m['params']}; result: {m['result']} }};"
            for m in methods
            if m["kind"] == "request"
        ),
        "}",
    ]

    out += _section("error codes (JSON-RPC error.code)")
    for error in schema["x-errors"]:
        doc = f"{error['exception']}: {error['description']}" if "exception" in error else ""
        out += _doc(doc)
        out.append(f"export const {error['name']} = {error['code']};")

    out += _section("closed vocabularies")
    objects: list[tuple[str, dict[str, Any]]] = []
    unions: list[tuple[str, dict[str, Any]]] = []
    for name, definition in defs.items():
        if "enum" in definition:
            out += _union(
                name, [_quote(v) for v in definition["enum"]], definition.get("description", "")
            )
        elif "oneOf" in definition:
            unions.append((name, definition))
        else:
            objects.append((name, definition))

    updates = {str(ref["$ref"]).rsplit("/", 1)[1] for _, u in unions for ref in u["oneOf"]}
    out += _section("params and results")
    for name, definition in objects:
        if name not in updates:
            out += [*_interface(name, definition), ""]
    out += _section("server -> client: session updates (a union tagged by `type`)")[1:]
    for name, definition in objects:
        if name in updates:
            out += [*_interface(name, definition), ""]
    for name, definition in unions:
        members = [str(ref["$ref"]).rsplit("/", 1)[1] for ref in definition["oneOf"]]
        out += _union(name, members, definition.get("description", ""))
        out += ["", f"export type {name}Type = {name}['type'];"]
    while out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


# --- writing and checking ---------------------------------------------------------------------


def outputs() -> dict[Path, str]:
    """Each generated file (relative to the repository) -> its content."""
    schema = build_schema()
    # protocol.ts is rendered from the schema as written, so it needs nothing else.
    written = json.loads(render_schema(schema))
    from pygent.lsp.capabilities import render, served_answer

    return {
        SCHEMA_FILE: render_schema(schema),
        TS_FILE: render_ts(written),
        INITIALIZE_FILE: render(served_answer({"capabilities": {}})),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    parser.add_argument(
        "--root", type=Path, default=REPO, help="the repository (default: this one)"
    )
    args = parser.parse_args(argv)
    stale = []
    for rel, text in outputs().items():
        path = args.root / rel
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current == text:
            continue
        if not args.check:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {rel}")
            continue
        stale.append(rel)
        diff = difflib.unified_diff(
            current.splitlines(),
            text.splitlines(),
            f"{rel} (on disk)",
            f"{rel} (generated)",
            lineterm="",
            n=1,
        )
        shown = list(diff)
        print(f"{rel} differs from what the Python types generate:", file=sys.stderr)
        print("\n".join(shown[:40] + (["..."] if len(shown) > 40 else [])), file=sys.stderr)
    if stale:
        names = ", ".join(str(rel) for rel in stale)
        print(
            f"\n{names}: generated files, out of date or edited by hand. Change the Python "
            f"types (pygent/lsp/protocol.py, pygent/events.py, pygent/errors.py) and run "
            f"`{COMMAND}` to regenerate.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
