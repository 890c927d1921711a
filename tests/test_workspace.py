"""Workspace containment: the file-tool half of the adversarial catalogue (group A)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from pygent.errors import PathError
from pygent.runtime.workspace import Workspace


@pytest.fixture()
def layout(tmp_path: Path) -> tuple[Workspace, Path]:
    ws_dir = tmp_path / "proj"
    outside = tmp_path / "outside"
    ws_dir.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("secret")
    (ws_dir / "src").mkdir()
    (ws_dir / "src" / "a.py").write_text("print(1)\n")
    return Workspace(ws_dir), outside


@pytest.mark.parametrize("path", [
    "../../etc/passwd", "a/../../../x", "/etc/shadow", "/root/.ssh/id_rsa", "~/.bashrc",
    "/proc/self/environ", "/proc/self/root/etc/passwd",
])
def test_paths_outside_are_refused(layout: tuple[Workspace, Path], path: str) -> None:
    ws, _ = layout
    with pytest.raises(PathError):
        ws.read(path)
    with pytest.raises(PathError):
        ws.write(path, b"x")


def test_prefix_confusion_is_refused(layout: tuple[Workspace, Path], tmp_path: Path) -> None:
    ws, _ = layout
    evil = tmp_path / "proj-evil"
    evil.mkdir()
    (evil / "x").write_text("no")
    with pytest.raises(PathError, match="outside"):
        ws.read(str(evil / "x"))


def test_nul_and_long_paths(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    with pytest.raises(PathError, match="NUL"):
        ws.read("a\x00b")
    with pytest.raises(PathError, match="longer"):
        ws.read("a" * 5000)
    assert ws.read("./src/../src/a.py").data == b"print(1)\n"
    # URL-encoding is not decoded: "%2e%2e" is an ordinary (missing) name inside the workspace.
    with pytest.raises(PathError, match="does not exist"):
        ws.read("%2e%2e/x")


def test_absolute_paths_under_the_root_and_container_root(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    assert ws.read(str(ws.root / "src/a.py")).data == b"print(1)\n"
    assert ws.read("/workspace/src/a.py").data == b"print(1)\n"


def test_directory_link_out_is_refused_and_nothing_created(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    os.symlink(outside, ws.root / "escape")
    with pytest.raises(PathError, match="outside"):
        ws.write("escape/evil", b"x")
    with pytest.raises(PathError):
        ws.write("escape/new/dir/evil", b"x")
    assert sorted(os.listdir(outside)) == ["victim"]


def test_last_component_and_dangling_links_are_refused(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    os.symlink(outside / "victim", ws.root / "notes.md")
    os.symlink(outside / "new.txt", ws.root / "draft")
    with pytest.raises(PathError):
        ws.write("notes.md", b"pwned")
    with pytest.raises(PathError):
        ws.read("notes.md")
    with pytest.raises(PathError):
        ws.write("draft", b"x")
    assert (outside / "victim").read_text() == "secret"
    assert not (outside / "new.txt").exists()


def test_links_inside_the_workspace_still_work(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    os.symlink("src", ws.root / "lib")
    os.symlink("a.py", ws.root / "src" / "alias.py")
    assert ws.read("lib/alias.py").data == b"print(1)\n"
    ws.write("lib/b.py", b"two")
    assert (ws.root / "src" / "b.py").read_bytes() == b"two"


def test_symlink_loop_is_a_clear_error(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    os.symlink("b", ws.root / "a")
    os.symlink("a", ws.root / "b")
    with pytest.raises(PathError, match="too many levels"):
        ws.read("a")
    assert [p for p, _ in ws.iter_files()] == ["src/a.py"]


def test_non_regular_files_are_refused_without_hanging(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    os.mkfifo(ws.root / "p")
    with pytest.raises(PathError, match="not a regular file"):
        ws.read("p")
    os.symlink("/dev/zero", ws.root / "z")
    with pytest.raises(PathError):
        ws.read("z")


def test_hardlink_to_outside_file_is_replaced_not_written_through(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    os.link(outside / "victim", ws.root / "h")
    ws.write("h", b"changed")
    assert (outside / "victim").read_text() == "secret"
    assert (ws.root / "h").read_bytes() == b"changed"


def test_capped_read_of_a_huge_sparse_file(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    with open(ws.root / "big", "wb") as fh:
        fh.truncate(5 * 1024**3)
    got = ws.read("big", limit=1000)
    assert len(got.data) == 1000 and got.size == 5 * 1024**3 and got.truncated


def test_racing_directory_swap_never_writes_outside(layout: tuple[Workspace, Path]) -> None:
    """A9: a thread swaps ws/sub between a directory and a link to outside."""
    ws, outside = layout
    sub = ws.root / "sub"
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            try:
                sub.mkdir()
                sub.rmdir()
                os.symlink(outside, sub)
                os.unlink(sub)
            except OSError:
                pass

    thread = threading.Thread(target=swapper)
    thread.start()
    try:
        for _ in range(3000):
            try:
                ws.write("sub/f", b"x")
            except (PathError, OSError):
                pass
    finally:
        stop.set()
        thread.join()
    assert sorted(os.listdir(outside)) == ["victim"]


def test_a_calls_locations_are_the_files_it_names_inside_the_workspace(tmp_path: Path) -> None:
    """``tool_call_proposed.locations``: what an editor can link a call to."""
    from pygent.runtime.workspace import Workspace
    from pygent.tools.preview import locations

    ws = Workspace(tmp_path)
    assert locations("write_file", {"path": "src/app.py", "content": "x"}, ws) == ["src/app.py"]
    assert locations("read_file", {"path": "/workspace/a/../b.txt"}, ws) == ["b.txt"]
    assert locations("list_files", {"path": "."}, ws) == ["."]
    assert locations("read_file", {"path": "../../etc/passwd"}, ws) == []  # outside: nothing
    assert locations("read_file", {"path": "/etc/passwd"}, ws) == []
    assert locations("bash", {"cmd": "cat a.txt"}, ws) == []
    assert locations("mcp__fs__read", {"path": "a.txt"}, ws) == []  # the server's path
