"""Copy-on-write core: the upper layer read as a change set and as checkpoints, and the
fallback to a copy where no overlay can be mounted.

The layer tests mount a real kernel overlay (they need root, as the Docker engine has);
the Docker end-to-end tests are in tests/docker/test_cow_docker.py.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pygent.checkpoints import Checkpoints
from pygent.cow import CowSync
from pygent.layer_checkpoints import LayerCheckpoints, scan_layer
from pygent.runtime import Runtime
from pygent.runtime.overlay import OverlayLayers, OverlayWorkspace
from pygent.service import SessionOptions, SessionService
from pygent.settings import load_settings


class MountWriter:
    """Writes through a mounted overlay's merged folder (what the sandbox does)."""

    def __init__(self, merged: Path) -> None:
        self.merged = merged

    def apply(self, puts, links, removes, dirs=None) -> None:
        for rel in removes:
            (self.merged / rel).unlink(missing_ok=True)
        for rel in dirs or ():
            (self.merged / rel).mkdir(parents=True, exist_ok=True)
        for rel, data, mode in puts:
            path = self.merged / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                path.unlink()
            path.write_bytes(data)
            os.chmod(path, mode)
        for rel, target in links:
            path = self.merged / rel
            path.unlink(missing_ok=True)
            path.symlink_to(target)


@pytest.fixture()
def mounted(tmp_path: Path) -> Iterator[tuple[Path, Path, OverlayWorkspace]]:
    """(folder, merged mount, the host's view) over a real kernel overlay."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a kernel overlay needs root")
    folder = tmp_path / "proj"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "a.py").write_text("a = 1\n")
    (folder / "src" / "b.py").write_text("b = 1\n")
    (folder / "gone").mkdir()
    (folder / "gone" / "x.txt").write_text("x\n")
    (folder / "tool.sh").write_text("echo\n")
    (folder / "notes").symlink_to("src/a.py")
    (folder / ".gitignore").write_text("*.log\n")
    layers = OverlayLayers.create(tmp_path / "data", folder)
    merged = tmp_path / "merged"
    merged.mkdir()
    done = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", layers.mount_options(), str(merged)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"no kernel overlay here: {done.stderr.strip()}")
    try:
        yield folder, merged, OverlayWorkspace(layers, MountWriter(merged))
    finally:
        subprocess.run(["umount", str(merged)], check=False)
        layers.remove()


def test_the_change_set_is_read_from_the_upper_layer(mounted) -> None:
    folder, merged, view = mounted
    sync = CowSync(folder, view)
    assert sync.changes() == [] and scan_layer(view.layers.upper).files == {}
    (merged / "src" / "a.py").write_text("a = 2\n")  # modified
    (merged / "new.txt").write_text("new\n")  # added
    shutil.rmtree(merged / "gone")  # deleted: a whiteout of a folder
    os.chmod(merged / "tool.sh", 0o755)  # a mode change only
    (merged / "notes").unlink()
    (merged / "notes").symlink_to("src/b.py")  # a link retargeted
    (merged / "debug.log").write_text("ignored\n")  # .gitignore'd: not a change
    shutil.rmtree(merged / "src")
    (merged / "src").mkdir()  # an opaque folder: b.py is gone, a.py made again
    (merged / "src" / "a.py").write_text("a = 2\n")
    got = {c.path: (c.status, c.kind) for c in sync.changes()}
    assert got == {
        "src/a.py": ("modified", "file"),
        "src/b.py": ("deleted", "file"),
        "new.txt": ("added", "file"),
        "gone/x.txt": ("deleted", "file"),
        "tool.sh": ("modified", "file"),
        "notes": ("modified", "symlink"),
    }
    # The host's view agrees with the mount.
    assert view.read_bytes("src/a.py") == b"a = 2\n" and view.lstat("src/b.py") is None
    assert view.lstat("gone") is None and view.readlink("notes") == "src/b.py"
    assert sorted(r for r, _ in view.iter_files()) == sorted(
        str(p.relative_to(merged)) for p in merged.rglob("*") if p.is_file() and not p.is_symlink()
    )
    # Discard brings the folder's version back through the mount.
    sync.discard(["src/b.py", "tool.sh", "new.txt"])
    assert (merged / "src" / "b.py").read_text() == "b = 1\n"
    assert {c.path for c in sync.changes()} == {"src/a.py", "gone/x.txt", "notes"}
    assert (folder / "src" / "b.py").read_text() == "b = 1\n", "the folder is never written"


def test_layer_checkpoints_cost_what_changed_and_restore(mounted) -> None:
    folder, merged, view = mounted
    cps = Checkpoints.for_workspace(Path("/unused"), view)
    assert isinstance(cps, LayerCheckpoints) and cps.store == view.layers.checkpoints
    empty = cps.checkpoint("start")
    assert empty is not None
    (merged / "src" / "a.py").write_text("a = 2\n")
    one = cps.checkpoint("turn 1")
    assert one is not None and cps.list()[-1].files == 1
    shutil.rmtree(merged / "src")
    (merged / "tool.sh").unlink()
    (merged / "made.txt").write_text("made\n")
    assert cps.checkpoint("turn 2") is not None
    report = cps.restore(one, delete_new=True)
    assert report.failed == () and report.removed == ("made.txt",)
    assert (merged / "src" / "a.py").read_text() == "a = 2\n"
    assert (merged / "src" / "b.py").read_text() == "b = 1\n"
    assert (merged / "tool.sh").exists() and not (merged / "made.txt").exists()
    cps.restore(empty)
    assert (merged / "src" / "a.py").read_text() == "a = 1\n"


def test_local_runtime_falls_back_to_a_copy_and_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "a.txt").write_text("a\n")
    settings = dataclasses.replace(load_settings(), sessions_dir=tmp_path / "data" / "sessions")
    rt = Runtime(use_docker=False, settings=settings, cow_lower=folder)
    try:
        assert rt.overlay is None and "copied" in (rt.cow_fallback or "")
    finally:
        rt.cleanup()
    service = SessionService(settings)
    session = service.open_blocking(SessionOptions(workspace_folder=str(folder), runtime="local"))
    try:
        assert session.sync_mode == "copy"
        assert any("copy-on-write" in n for n in session.notices)
        assert (session.runtime.workspace / "a.txt").read_text() == "a\n"
    finally:
        service.close_blocking(session.id)


def test_editor_buffers_reach_the_sandbox_and_are_not_the_agents_changes(mounted) -> None:
    folder, merged, view = mounted
    sync = CowSync(folder, view)
    report = sync.sync(overlay={"src/a.py": b"a = 'unsaved'\n"})
    assert report.copied == ("src/a.py",)
    assert (merged / "src" / "a.py").read_text() == "a = 'unsaved'\n"
    assert sync.changes() == [], "an editor buffer is not a change of the agent"
    (merged / "src" / "b.py").write_text("b = 'agent'\n")
    report = sync.sync(overlay={"src/b.py": b"b = 'buffer'\n"})
    assert report.conflicts == ("src/b.py",), "the agent's version is kept"
    assert (merged / "src" / "b.py").read_text() == "b = 'agent'\n"
    # A saved file reaches the sandbox by itself: the folder is the lower layer.
    (folder / "tool.sh").write_text("echo saved\n")
    assert view.read_bytes("tool.sh") == b"echo saved\n"
