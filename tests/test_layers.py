"""Imports point inward: the core never imports a front end's libraries (STYLE item 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pygent"
FRONT_END_ONLY = {
    "pygls": ("lsp",),
    "lsprotocol": ("lsp",),
    "rich": ("repl", "cli.py"),
    "prompt_toolkit": ("repl", "cli.py"),
    "aiohttp": ("web",),
    "acp": ("acp",),  # the Agent Client Protocol SDK: pygent acp only
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_front_end_libraries_stay_in_their_layer(path: Path) -> None:
    rel = path.relative_to(PACKAGE)
    for lib in _imports(path) & FRONT_END_ONLY.keys():
        allowed = FRONT_END_ONLY[lib]
        assert rel.parts[0] in allowed or str(rel) in allowed, f"{rel} imports {lib}"


def test_core_modules_never_import_front_ends() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("lsp", "repl", "web", "acp", "cli.py", "oneshot.py", "__main__.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[:2] in (
                ["pygent", "lsp"], ["pygent", "repl"], ["pygent", "web"], ["pygent", "acp"],
                ["pygent", "cli"]):
                offenders.append(f"{rel}: {node.module}")
    assert offenders == []


def _constructed(path: Path, name: str) -> list[int]:
    """Lines where ``name(...)`` (or ``something.name(...)``) is called."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if called == name:
                lines.append(node.lineno)
    return lines


def test_only_the_session_service_assembles_agents() -> None:
    """One builder (STYLE item 18): the REPL, ``pygent -p``, the language server, the web
    page and delegated tasks get their agents and task managers from pygent/service.py."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        if rel == "service.py":
            continue
        for name in ("Agent", "TaskManager"):
            offenders += [f"{rel}:{line}: {name}(...)" for line in _constructed(path, name)]
    assert offenders == []
    assert _constructed(PACKAGE / "service.py", "Agent"), "the service builds agents itself"
