"""Core workspace sync (pygent.changes) and the edit conversion, without a server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pygent.changes import FileEdit, IgnoreRules, WorkspaceSync
from pygent.lsp.convert import EditSupport, end_position, workspace_edit
from pygent.runtime.workspace import Workspace


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, WorkspaceSync]:
    folder, sandbox = tmp_path / "folder", tmp_path / "sandbox"
    (folder / "pkg").mkdir(parents=True)
    sandbox.mkdir()
    (folder / "pkg" / "a.py").write_text("a = 1\n")
    (folder / "b.txt").write_text("b\n")
    return folder, sandbox, WorkspaceSync(folder, Workspace(sandbox))


def test_gitignore_rules() -> None:
    rules = IgnoreRules()
    rules.add_file("", "*.log\n!keep.log\n/build/\ndocs/**/*.tmp\n# comment\n\\#hash\n")
    rules.add_file("sub", "local.txt\n")
    assert rules.path_ignored("x.log") and rules.path_ignored("deep/x.log")
    assert not rules.path_ignored("keep.log")
    assert rules.path_ignored("build/out.o") and not rules.path_ignored("src/build")
    assert rules.path_ignored("docs/a/b/c.tmp") and not rules.path_ignored("docs/c.txt")
    assert rules.path_ignored("sub/local.txt") and not rules.path_ignored("local.txt")
    assert rules.path_ignored("#hash")
    assert rules.path_ignored("node_modules/x/y.js") and rules.path_ignored("a/.git/config")


def test_sync_copies_only_changes_and_skips_links(pair, tmp_path: Path) -> None:
    folder, sandbox, sync = pair
    secret = tmp_path / "secret"
    secret.write_text("host secret\n")
    os.symlink(secret, folder / "link.txt")
    first = sync.initial_sync()
    assert sorted(first.copied) == ["b.txt", "pkg/a.py"]
    assert not (sandbox / "link.txt").exists(), "links are never followed into the sandbox"
    assert sync.sync(full=True).copied == ()
    (folder / "b.txt").write_text("b changed\n")
    sync.mark_dirty([str(folder / "b.txt")])
    report = sync.sync()
    assert report.copied == ("b.txt",) and report.scanned == 1
    (folder / "pkg" / "a.py").unlink()
    assert sync.sync(full=True).removed == ("pkg/a.py",)
    assert not (sandbox / "pkg" / "a.py").exists()


def test_conflicts_keep_the_sandbox_copy(pair) -> None:
    folder, sandbox, sync = pair
    sync.initial_sync()
    (sandbox / "b.txt").write_text("agent\n")
    (folder / "b.txt").write_text("user\n")
    report = sync.sync(full=True)
    assert report.conflicts == ("b.txt",)
    assert (sandbox / "b.txt").read_text() == "agent\n"
    [change] = sync.changes()
    assert change.path == "b.txt" and change.conflict and "+agent" in change.diff


def test_change_set_apply_and_protected_paths(pair) -> None:
    folder, sandbox, sync = pair
    sync.initial_sync()
    (sandbox / "new.txt").write_text("new\n")
    (sandbox / ".vscode").mkdir()
    (sandbox / ".vscode" / "tasks.json").write_text("{}\n")
    (sandbox / "b.txt").unlink()
    changes = {c.path: c for c in sync.changes()}
    assert {p: c.status for p, c in changes.items()} == {
        ".vscode/tasks.json": "added",
        "b.txt": "deleted",
        "new.txt": "added",
    }
    assert changes[".vscode/tasks.json"].protected
    report = sync.write_to_folder()
    assert sorted(report.applied) == ["b.txt", "new.txt"]
    assert report.failed and report.failed[0][0] == ".vscode/tasks.json"
    assert not (folder / ".vscode").exists() and not (folder / "b.txt").exists()
    assert sync.write_to_folder([".vscode/tasks.json"]).applied == [".vscode/tasks.json"]
    assert sync.changes() == []
    assert sync.write_to_folder(["../outside"]).failed[0][1].endswith("outside the workspace")


def test_end_position_and_edit_support() -> None:
    assert (end_position("a\nb😀").line, end_position("a\nb😀").character) == (1, 3)
    assert end_position("a\nb😀", "utf-8").character == 5
    assert end_position("a\nb😀", "utf-32").character == 2
    assert (end_position("x\n").line, end_position("x\n").character) == (1, 0)
    edits = [
        FileEdit("n.txt", "create", "n\n"),
        FileEdit("d.txt", "delete"),
        FileEdit("m.txt", "replace", "new\n", "old\n"),
    ]
    edit, unsupported = workspace_edit(
        Path("/p"),
        edits,
        open_texts={},
        support=EditSupport(document_changes=False, create=False, delete=False),
    )
    assert [e.path for e in unsupported] == ["d.txt"]
    assert edit.changes is not None and set(edit.changes) == {"file:///p/n.txt", "file:///p/m.txt"}
    full, none = workspace_edit(Path("/p"), edits, open_texts={"m.txt": "old\nunsaved\n"})
    assert none == [] and len(full.document_changes or []) == 4
    replace = (full.document_changes or [])[-1]
    assert replace.edits[0].range.end.line == 2  # spans the open buffer, not the file
