"""#15: a workspace over the checkpoint's file limit is not walked again while the folders
that put it over are unchanged; any change that can add or remove a file there (or a
folder changed too recently to be sure of) walks again, and a file edited in place,
which changes no folder's mtime, needs no walk: it cannot change the count."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pygent import checkpoints as cpm
from pygent.checkpoints import Checkpoints

HOUR_AGO = time.time() - 3600


def _tree(root: Path, folders: int = 3, files: int = 5) -> None:
    for d in range(folders):
        folder = root / f"d{d}"
        folder.mkdir(parents=True)
        for f in range(files):
            (folder / f"f{f}.txt").write_text(f"{d}-{f}\n")


def _age(root: Path) -> None:
    """Folders last changed an hour ago (what a real project's folders are)."""
    for path in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(path, (HOUR_AGO, HOUR_AGO))


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the checkpoint's tree walks (a spy around the real walk)."""
    count = [0]
    real = cpm.walk_tree

    def counted(root: Path):  # type: ignore[no-untyped-def]
        count[0] += 1
        return real(root)

    monkeypatch.setattr(cpm, "walk_tree", counted)
    return count


def test_an_unchanged_tree_over_the_limit_is_not_walked_again(tmp_path: Path, walks) -> None:
    ws = tmp_path / "ws"
    _tree(ws)
    _age(ws)
    cps = Checkpoints(tmp_path / "store", ws, max_files=10)
    assert cps.checkpoint() is None and "more than 10 files" in cps.last_skip_reason
    assert walks[0] == 1
    assert cps.checkpoint() is None and "more than 10 files" in cps.last_skip_reason
    assert walks[0] == 1  # no walk: the folders it counted are as they were
    # An edit in place changes no folder's mtime and no count: still over, still no walk.
    (ws / "d0" / "f0.txt").write_text("edited in place, much longer than before\n")
    assert cps.checkpoint() is None and walks[0] == 1

    # Removing files changes their folder: walked again, and now it fits.
    for f in range(5):
        (ws / "d2" / f"f{f}.txt").unlink()
    ident = cps.checkpoint()
    assert ident is not None and walks[0] == 2
    assert cps.entries(ident)["d0/f0.txt"][1] == len("edited in place, much longer than before\n")


def test_a_folder_replaced_with_the_same_mtime_is_walked_again(tmp_path: Path, walks) -> None:
    ws = tmp_path / "ws"
    _tree(ws)
    _age(ws)
    cps = Checkpoints(tmp_path / "store", ws, max_files=11)
    assert cps.checkpoint() is None and walks[0] == 1  # 15 files
    # Another folder of one file moved in under the same name, its mtime set back to the
    # old one: the inode differs, so the count is not trusted.
    (ws / "d1").rename(tmp_path / "old-d1")
    (ws / "d1").mkdir()
    (ws / "d1" / "only.txt").write_text("x\n")
    os.utime(ws / "d1", (HOUR_AGO, HOUR_AGO))
    for f in range(5):
        (ws / "d0" / f"f{f}.txt").write_text("same count\n")  # in place: d0 unchanged
    ident = cps.checkpoint()
    assert walks[0] == 2 and ident is not None  # 11 files now: it fits
    assert sorted(cps.entries(ident)) == sorted(
        [f"d0/f{f}.txt" for f in range(5)] + ["d1/only.txt"]
        + [f"d2/f{f}.txt" for f in range(5)])


def test_folders_changed_just_now_are_not_trusted(tmp_path: Path, walks) -> None:
    ws = tmp_path / "ws"
    _tree(ws)  # folders changed this very second: a change in the same clock tick
    cps = Checkpoints(tmp_path / "store", ws, max_files=10)  # would not move their mtime
    assert cps.checkpoint() is None and cps.checkpoint() is None
    assert walks[0] == 2
