"""Copy-on-write workspaces against a real engine: an overlay volume over the user's folder."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pygent.checkpoints import Checkpoints
from pygent.cow import CowSync
from pygent.layer_checkpoints import LayerCheckpoints
from pygent.runtime import Runtime
from pygent.runtime.overlay import OverlayWorkspace
from pygent.service import SessionOptions, SessionService
from pygent.settings import load_settings
from tests.docker_gate import TEST_IMAGE

pytestmark = pytest.mark.docker


def make_tree(root: Path, files: int) -> None:
    """``files`` small source files in folders of 100, fast (no pathlib per file)."""
    for i in range(files):
        folder = root / f"pkg{i // 100:04d}"
        if i % 100 == 0:
            folder.mkdir(parents=True)
        fd = os.open(folder / f"m{i % 100:02d}.py", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, f"value = {i}\n".encode())
        os.close(fd)


def tree_state(root: Path) -> dict[str, tuple]:
    """path -> ("file", sha256, mode) | ("link", target): what `diff -r` compares, plus modes."""
    out: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    out[rel] = ("file", hashlib.sha256(f.read()).hexdigest(), stat.S_IMODE(st.st_mode))
    return out


def sandbox_state(rt: Runtime, dest: Path) -> dict[str, tuple]:
    """The sandbox's /workspace as the container sees it, copied out through the engine."""
    backend = rt.backend
    stream, _ = backend._client.api.get_archive(backend.container_id, "/workspace/.")  # type: ignore[attr-defined]
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        tar.extractall(dest, filter="tar")
    return tree_state(dest)


@pytest.fixture()
def settings(tmp_path: Path):
    return dataclasses.replace(
        load_settings(), image=TEST_IMAGE, sessions_dir=tmp_path / "data" / "sessions"
    )


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    make_tree(root, 300)
    (root / "README.md").write_text("hello\n")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "old").mkdir()
    (root / "old" / "a.txt").write_text("a\n")
    (root / "old" / "b.txt").write_text("b\n")
    (root / "remade").mkdir()
    (root / "remade" / "keep.txt").write_text("keep\n")
    (root / "remade" / "drop.txt").write_text("drop\n")
    (root / "link").symlink_to("README.md")
    (root / ".gitignore").write_text("build/\n")
    return root


@pytest.fixture()
def runtime(settings, folder: Path) -> Iterator[Runtime]:
    rt = Runtime(use_docker=True, settings=settings, cow_lower=folder)
    rt.wait_ready(120)
    yield rt
    rt.cleanup()


AGENT = (
    "cd /workspace && printf 'hello\\nworld\\n' > README.md && echo new > pkg0000/new.py"
    " && rm pkg0001/m00.py && rm -r old && chmod 755 run.sh && ln -s run.sh start"
    " && ln -sfn pkg0000/m00.py link && printf '\\000\\001bin' > blob.bin"
    " && rm -r remade && mkdir remade && echo keep > remade/keep.txt"
    " && mkdir -p build deep/er && echo x > build/out.o && echo d > deep/er/f.txt"
)
EXPECTED = {
    "README.md": "modified",
    "pkg0000/new.py": "added",
    "pkg0001/m00.py": "deleted",
    "old/a.txt": "deleted",
    "old/b.txt": "deleted",
    "run.sh": "modified",
    "start": "added",
    "link": "modified",
    "blob.bin": "added",
    "remade/drop.txt": "deleted",
    "deep/er/f.txt": "added",
}


def test_change_set_is_exact_and_the_folder_is_never_written(
    runtime: Runtime, folder: Path, tmp_path: Path
) -> None:
    assert isinstance(runtime.files, OverlayWorkspace)
    sync = CowSync(folder, runtime.files)
    before = tree_state(folder)
    assert sync.changes() == []
    result = runtime.run(AGENT)
    assert result.exit_code == 0, result.stderr
    assert tree_state(folder) == before, "the sandbox wrote the user's folder"
    changes = {c.path: c for c in sync.changes()}
    assert {p: c.status for p, c in changes.items()} == EXPECTED
    assert changes["blob.bin"].binary and changes["start"].kind == "symlink"
    assert "new mode 100755" in changes["run.sh"].diff or "new mode 755" in changes["run.sh"].diff
    assert "+world" in changes["README.md"].diff
    assert not any(c.conflict for c in changes.values())
    # The change set, applied to the folder, gives exactly what the sandbox sees (but
    # the ignored build output, which stays in the sandbox).
    report = sync.write_to_folder()
    assert sorted(report.applied) == sorted(EXPECTED) and report.failed == []
    view = sandbox_state(runtime, tmp_path / "view")
    view = {k: v for k, v in view.items() if not k.startswith("build/")}
    assert tree_state(folder) == view
    assert not (folder / "old").exists(), "a folder the sandbox removed is removed"
    assert sync.changes() == []


def test_host_file_writes_reads_and_discard_go_through_the_overlay(
    runtime: Runtime, folder: Path
) -> None:
    sync = CowSync(folder, runtime.files)
    runtime.files.write("new/dir/tool.txt", b"from a file tool\n", mode=0o600)
    out = runtime.run("cat /workspace/new/dir/tool.txt; stat -c %a /workspace/new/dir/tool.txt")
    assert out.stdout.split() == ["from", "a", "file", "tool", "600"]
    assert runtime.run("cd /workspace && echo agent > README.md && rm run.sh").exit_code == 0
    assert runtime.files.read_bytes("README.md") == b"agent\n"
    assert runtime.files.lstat("run.sh") is None
    assert {c.path for c in sync.changes()} == {"new/dir/tool.txt", "README.md", "run.sh"}
    (folder / "pkg0002" / "m00.py").write_text("saved = 1\n")  # a save in the editor
    assert runtime.run("cat /workspace/pkg0002/m00.py").stdout == "saved = 1\n"
    assert sorted(sync.discard(["README.md", "run.sh"])) == ["README.md", "run.sh"]
    assert runtime.run("cat /workspace/README.md").stdout == "hello\n"
    mode = oct(stat.S_IMODE((folder / "run.sh").stat().st_mode))[2:]
    assert runtime.run("stat -c %a /workspace/run.sh").stdout.strip() == mode
    assert [c.path for c in sync.changes()] == ["new/dir/tool.txt"]
    assert sync.discard() == ["new/dir/tool.txt"]
    assert runtime.run("test -e /workspace/new/dir/tool.txt").exit_code == 1
    assert sync.changes() == []


def test_a_user_edit_since_the_start_is_a_conflict(runtime: Runtime, folder: Path) -> None:
    sync = CowSync(folder, runtime.files)
    assert runtime.run("cd /workspace && echo agent > README.md").exit_code == 0
    (folder / "README.md").write_text("user\n")
    (change,) = sync.changes()
    assert change.conflict
    report = sync.write_to_folder()
    assert report.applied == [] and "changed in the folder" in report.failed[0][1]
    assert (folder / "README.md").read_text() == "user\n"
    assert sync.write_to_folder(["README.md"]).applied == ["README.md"]
    assert (folder / "README.md").read_text() == "agent\n"


def test_checkpoints_follow_the_changed_files_and_restore(
    runtime: Runtime, folder: Path, tmp_path: Path
) -> None:
    cps = Checkpoints.for_workspace(Path("/unused"), runtime.files)
    assert isinstance(cps, LayerCheckpoints)
    first = cps.checkpoint("turn 1")
    assert first is not None and cps.list()[-1].files == 0
    sizes = []
    for turn in range(5):
        assert runtime.run(f"cd /workspace && echo {turn} > pkg0000/m00.py").exit_code == 0
        assert cps.checkpoint(f"turn {turn + 2}") is not None
        objects = list((cps.store / "objects").rglob("*"))
        sizes.append(sum(1 for o in objects if o.is_file()))
    assert sizes == [1, 2, 3, 4, 5], "one new object per turn: a turn costs what it changed"
    # An approved `rm -rf *` is undone.
    assert runtime.run("cd /workspace && rm -rf -- * && ls | wc -l").stdout.strip() == "0"
    report = cps.restore(first)
    assert report.failed == ()
    assert runtime.run("cat /workspace/pkg0000/m00.py /workspace/README.md").stdout == (
        "value = 0\nhello\n"
    )
    assert sandbox_state(runtime, tmp_path / "view") == tree_state(folder)


def test_session_opens_a_big_folder_without_copying_and_closes_clean(
    settings, tmp_path: Path
) -> None:
    big = tmp_path / "big"
    make_tree(big, 50_000)
    service = SessionService(settings)
    session = service.open_blocking(
        SessionOptions(workspace_folder=str(big), runtime="docker")
    )
    try:
        assert session.sync_mode == "cow", session.notices
        layers = session.runtime.overlay
        assert layers is not None
        assert os.listdir(layers.upper) == [], "nothing was copied at start"
        assert os.listdir(session.runtime.workspace) == []
        assert session.runtime.run("find /workspace -type f | wc -l").stdout.strip() == "50000"
        volume = session.runtime.backend.volume_name  # type: ignore[attr-defined]
        assert volume is not None
    finally:
        assert service.close_blocking(session.id)
    import docker

    client = docker.from_env()
    try:
        assert not client.volumes.list(filters={"name": volume})
    finally:
        client.close()
    assert not layers.root.exists()
    assert len(list(big.rglob("*.py"))) == 50_000


async def test_agent_turns_checkpoint_the_upper_layer_and_rewind(
    settings, folder: Path, openai_server
) -> None:
    settings = dataclasses.replace(
        settings, base_url=openai_server.base_url, api_key="sk-test", model="test-model"
    )
    service = SessionService(settings)
    session = await service.create(
        SessionOptions(workspace_folder=str(folder), runtime="docker", approval_mode="auto")
    )
    try:
        assert session.sync_mode == "cow"
        cps = session.agent.checkpoints
        assert isinstance(cps, LayerCheckpoints), "a cow session checkpoints its upper layer"
        openai_server.add_tool_call("bash", {"cmd": "echo one > /workspace/t1.txt"})
        openai_server.add_text("made t1")
        openai_server.add_tool_call("bash", {"cmd": "cd /workspace && rm -rf -- * && echo gone"})
        openai_server.add_text("removed everything")
        await service.prompt(session.id, "make t1")
        # Taken before the turn's first command (nothing yet) and at its end (t1.txt).
        assert [(i.label, i.files) for i in cps.list()][-2:] == [
            (cps.list()[-2].label, 0), ("end of turn", 1)], cps.list()
        await service.prompt(session.id, "remove everything")
        second = session.agent.last_checkpoint
        assert second is not None
        # The second turn starts from the first one's end (reused, nothing changed since).
        # It starts from the first turn's end (reused: nothing changed in between) and
        # ends with nothing left.
        assert second == cps.list()[1].id and [i.files for i in cps.list()] == [0, 1, 0]
        assert session.runtime.run("ls /workspace | wc -l").stdout.strip() == "0"
        report = await asyncio.to_thread(cps.restore, second)  # undo the second turn
        assert report.failed == () and "t1.txt" in report.restored
        assert session.runtime.run("cat /workspace/t1.txt /workspace/README.md").stdout == (
            "one\nhello\n"
        )
        assert [c.path for c in await service.changes(session.id)] == ["t1.txt"]
    finally:
        await service.close(session.id)


async def test_another_container_user_can_write_the_merged_root(folder: Path, tmp_path: Path) -> None:
    from pygent.runtime.docker_backend import DockerBackend, DockerOptions
    from pygent.runtime.overlay import OverlayLayers

    layers = OverlayLayers.create(tmp_path / "data", folder)
    backend = DockerBackend(
        tmp_path / "unused",
        DockerOptions(image=TEST_IMAGE, pull=False, user="4242:4242"),
        overlay=layers,
    )
    await backend.start()
    try:
        made = await backend.run("echo mine > /workspace/new.txt && id -u", timeout=30)
        assert made.exit_code == 0 and made.stdout.strip() == "4242", made.stderr
        assert (layers.upper / "new.txt").stat().st_uid == 4242
        if os.geteuid() != 4242:  # the folder's files keep their owner and permissions
            denied = await backend.run("echo x >> /workspace/README.md", timeout=30)
            assert denied.exit_code != 0
    finally:
        await backend.close()
        layers.remove()
    assert (folder / "README.md").read_text() == "hello\n" and not (folder / "new.txt").exists()


def test_a_folder_the_engine_cannot_overlay_is_copied_and_the_session_says_so(
    settings, tmp_path: Path
) -> None:
    odd = tmp_path / "a,b"  # a ',' cannot be in an overlay's options
    odd.mkdir()
    (odd / "x.txt").write_text("x\n")
    service = SessionService(settings)
    session = service.open_blocking(SessionOptions(workspace_folder=str(odd), runtime="docker"))
    try:
        assert session.sync_mode == "copy"
        assert any("could not mount a copy-on-write workspace" in n for n in session.notices)
        assert session.runtime.run("cat /workspace/x.txt").stdout == "x\n"
    finally:
        service.close_blocking(session.id)


def test_initial_files_are_written_through_the_overlay(settings, folder: Path, tmp_path: Path) -> None:
    seed = tmp_path / "seed.txt"
    seed.write_text("seeded\n")
    rt = Runtime(use_docker=True, settings=settings, cow_lower=folder, initial_files=[seed])
    try:
        assert rt.run("cat /workspace/seed.txt").stdout == "seeded\n"
        assert not (folder / "seed.txt").exists()
    finally:
        rt.cleanup()
