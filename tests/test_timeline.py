"""The timeline through the Python API: rewind, redo and fork of real turns over a real
folder (local runtime, and Docker in mount mode), and the bad inputs of issue #15."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from pygent.checkpoints import Checkpoints
from pygent.errors import SessionBusyError
from pygent.events import Notice
from pygent.timeline import TimelineError
from tests.adversarial.conftest import MODES, Harness, make_harness, make_runtime
from tests.openai_server import ScriptedOpenAIServer


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    (folder / "src").mkdir(parents=True)
    for i in range(5):
        (folder / "src" / f"m{i}.py").write_text(f"value = {i}\n")
    (folder / "keep.txt").write_text("precious\n")
    return folder


def harness(server: ScriptedOpenAIServer, tmp: Path, project: Path, mode: str = "local",
            **kwargs: object) -> Harness:
    rt = make_runtime(mode, project)
    return make_harness(server, rt, tmp, history_file=tmp / "h.jsonl", checkpoints=None, **kwargs)


def close(h: Harness) -> None:
    h.agent.close()
    h.agent.runtime.cleanup()


def saved_messages(path: Path) -> list[dict]:
    lines = [json.loads(x) for x in path.read_text().splitlines()[1:]]
    return [x for x in lines if "role" in x]


@pytest.mark.parametrize("mode", MODES)
def test_rewind_redo_round_trip(openai_server: ScriptedOpenAIServer, tmp_path: Path,
                                project: Path, mode: str) -> None:
    h = harness(openai_server, tmp_path, project, mode)
    try:
        h.sh("echo one > a.txt")  # turn 1
        h.sh("echo two > a.txt && echo new > b.txt && rm keep.txt && rm -rf src")  # turn 2
        turns = h.agent.timeline()
        assert [t.turn for t in turns] == [1, 2]
        assert {(c.path, c.kind) for c in turns[0].files} == {("a.txt", "added")}
        changed = {(c.path, c.kind) for c in turns[1].files}
        assert {("a.txt", "modified"), ("b.txt", "added"), ("keep.txt", "deleted"),
                ("src/m0.py", "deleted")} <= changed
        assert turns[1].id == f"{h.agent.session_id}:2" and turns[1].can_restore_files
        before = len(h.agent.history)

        result = h.agent.rewind(2)
        assert (project / "keep.txt").read_text() == "precious\n"
        assert (project / "a.txt").read_text() == "one\n"
        assert not (project / "b.txt").exists()
        assert sorted(p.name for p in (project / "src").iterdir()) == [f"m{i}.py" for i in range(5)]
        assert "keep.txt" in result.restored and "b.txt" in result.removed
        assert result.messages_removed == before - len(h.agent.history) > 0
        assert [t.turn for t in h.agent.timeline()] == [1]
        assert h.agent.history[-1]["role"] == "assistant"
        # The saved conversation is the rewound one.
        assert saved_messages(tmp_path / "h.jsonl") == h.agent.history[1:]

        redo = h.agent.redo()
        assert redo.turn == 2
        assert not (project / "keep.txt").exists() and (project / "b.txt").read_text() == "new\n"
        assert len(h.agent.history) == before
        assert [t.turn for t in h.agent.timeline()] == [1, 2]
        with pytest.raises(TimelineError, match="nothing to redo"):
            h.agent.redo()
    finally:
        close(h)


def test_rewind_files_only_and_conversation_only(openai_server: ScriptedOpenAIServer,
                                                 tmp_path: Path, project: Path) -> None:
    h = harness(openai_server, tmp_path, project)
    try:
        h.sh("echo x > made.txt")
        n = len(h.agent.history)
        r = h.agent.rewind(1, files=True, conversation=False)
        assert not (project / "made.txt").exists() and len(h.agent.history) == n
        assert r.messages_removed == 0 and [t.turn for t in h.agent.timeline()] == [1]
        h.agent.redo()
        assert (project / "made.txt").exists()
        r = h.agent.rewind(f"{h.agent.session_id}:1", files=False, conversation=True)
        assert (project / "made.txt").exists() and len(h.agent.history) == 1
        assert h.agent.timeline() == []
        # The next turn is numbered after every turn the session had.
        h.sh("true")
        assert [t.turn for t in h.agent.timeline()] == [2]
    finally:
        close(h)


def test_bad_turns_change_nothing(openai_server: ScriptedOpenAIServer, tmp_path: Path,
                                  project: Path) -> None:
    h = harness(openai_server, tmp_path, project)
    try:
        h.sh("echo x > made.txt")
        n = len(h.agent.history)
        with pytest.raises(TimelineError, match=r"no turn 7 in session .*turns: 1"):
            h.agent.rewind(7)
        with pytest.raises(TimelineError, match="belongs to session other, not to this session"):
            h.agent.rewind("other:1")
        with pytest.raises(TimelineError, match="is not a turn"):
            h.agent.rewind("latest")
        with pytest.raises(TimelineError, match="nothing to rewind"):
            h.agent.rewind(1, files=False, conversation=False)
        assert (project / "made.txt").exists() and len(h.agent.history) == n
    finally:
        close(h)


def test_rewind_during_a_running_turn_is_refused(openai_server: ScriptedOpenAIServer,
                                                tmp_path: Path, project: Path) -> None:
    h = harness(openai_server, tmp_path, project)
    try:
        h.sh("echo x > made.txt")
        openai_server.add_slow_stream("thinking " * 40, delay_per_chunk=0.05)
        done = threading.Event()
        t = threading.Thread(target=lambda: (h.agent.turn("slow"), done.set()))
        t.start()
        for _ in range(200):
            if h.agent.busy:
                break
            asyncio.run(asyncio.sleep(0.01))
        with pytest.raises(SessionBusyError, match="cancel it first"):
            h.agent.rewind(1)
        with pytest.raises(SessionBusyError):
            h.agent.fork(1)
        h.agent.cancel()
        t.join(20)
        assert (project / "made.txt").exists()
        h.agent.rewind(1)  # once the turn is over
        assert not (project / "made.txt").exists()
    finally:
        close(h)


def test_corrupted_checkpoint_store(openai_server: ScriptedOpenAIServer, tmp_path: Path,
                                    project: Path) -> None:
    h = harness(openai_server, tmp_path, project)
    try:
        h.sh("rm -rf src")
        cps = h.agent.checkpoints
        assert cps is not None
        for obj in (cps.store / "objects").rglob("*"):
            if obj.is_file():
                obj.write_bytes(b"garbage")
        history = [dict(m) for m in h.agent.history]
        with pytest.raises(TimelineError, match="before turn 1: its checkpoint is unusable") as err:
            h.agent.rewind(1)
        assert "nothing was changed" in str(err.value)
        assert h.agent.history == history
        assert saved_messages(tmp_path / "h.jsonl") == history[1:]
        assert not (project / "src").exists()  # the current files untouched
        # A deleted manifest: the same clear error.
        for manifest in cps.store.glob("*.json"):
            manifest.unlink()
        with pytest.raises(TimelineError, match="turn 1"):
            h.agent.rewind(1)
    finally:
        close(h)


def test_mount_mode_keeps_what_the_user_edited(openai_server: ScriptedOpenAIServer,
                                               tmp_path: Path, project: Path) -> None:
    h = harness(openai_server, tmp_path, project)
    try:
        h.sh("echo agent > src/m1.py && echo agent > src/m2.py")
        (project / "src" / "m2.py").write_text("the user's edit\n")  # after the turn
        os.utime(project / "src" / "m2.py", (1, 1))  # a different mtime for sure
        result = h.agent.rewind(1)
        assert result.kept == ("src/m2.py",)
        assert (project / "src" / "m1.py").read_text() == "value = 1\n"
        assert (project / "src" / "m2.py").read_text() == "the user's edit\n"
    finally:
        close(h)


def test_fork_at_a_turn(openai_server: ScriptedOpenAIServer, tmp_path: Path,
                        project: Path) -> None:
    h = harness(openai_server, tmp_path, project)
    fork = None
    try:
        h.sh("echo one > a.txt")
        h.sh("echo two > a.txt && rm keep.txt")
        fork = h.agent.fork(2)
        ws = fork.runtime.workspace
        assert ws != project
        assert (ws / "a.txt").read_text() == "one\n" and (ws / "keep.txt").exists()
        assert fork.history[1:] == h.agent.history[1:len(fork.history)]
        assert fork.history[-1]["role"] == "assistant" and len(fork.history) < len(h.agent.history)
        assert not (project / "keep.txt").exists()  # the parent is untouched
        openai_server.add_text("hello from the fork")
        fork.turn("hi")
        assert fork.history[-1]["content"] == "hello from the fork"
    finally:
        if fork is not None:
            fork.close()
            fork.runtime.cleanup()
        close(h)


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 256 KiB tmpfs: a full disk for the checkpoint store (needs root)."""
    where = tmp_path / "tiny"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], check=True)
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_full_disk_while_checkpointing(openai_server: ScriptedOpenAIServer, tmp_path: Path,
                                       project: Path, tiny_disk: Path) -> None:
    (project / "big.bin").write_bytes(os.urandom(400 * 1024))  # more than the disk holds
    rt = make_runtime("local", project)
    cps = Checkpoints(tiny_disk / "store", project)
    h = make_harness(openai_server, rt, tmp_path, history_file=tmp_path / "h.jsonl",
                     checkpoints=cps)
    try:
        out = h.sh("echo ran > after.txt && cat after.txt")
        assert "ran" in out  # the turn went on
        notices = [e.text for e in h.events if isinstance(e, Notice)]
        assert any("No space left on device" in n and "this turn cannot be undone" in n
                   for n in notices), notices
        turn = h.agent.timeline()[0]
        assert not turn.can_restore_files and "No space left" in turn.note
        with pytest.raises(TimelineError, match="cannot be restored: workspace checkpoint failed"):
            h.agent.rewind(1)
        # No half-written temp file left in the store.
        assert not [p for p in (tiny_disk / "store").rglob(".*.tmp")]
        # The conversation can still be rewound.
        h.agent.rewind(1, files=False)
        assert len(h.agent.history) == 1
    finally:
        close(h)


def test_timeline_survives_a_restart(openai_server: ScriptedOpenAIServer, tmp_path: Path,
                                     project: Path) -> None:
    h = harness(openai_server, tmp_path, project)
    h.sh("echo x > made.txt")
    close(h)
    h2 = harness(openai_server, tmp_path, project)
    try:
        assert [t.turn for t in h2.agent.timeline()] == [1]
        h2.agent.rewind(1)
        assert not (project / "made.txt").exists() and len(h2.agent.history) == 1
    finally:
        close(h2)




def test_a_turn_without_tools_takes_no_checkpoint(openai_server: ScriptedOpenAIServer,
                                                  tmp_path: Path, project: Path) -> None:
    h = harness(openai_server, tmp_path, project)
    try:
        openai_server.add_text("just talking")
        h.agent.turn("hello")  # turn 1: no tool, so no walk of the folder
        cps = h.agent.checkpoints
        assert cps is not None and cps.list() == []
        h.sh("echo x > made.txt && rm keep.txt")  # turn 2
        assert len(cps.list()) == 2  # before and after turn 2
        [first, second] = h.agent.timeline()
        assert first.files == () and first.can_restore_files
        # Rewinding to before turn 1 restores what the later turns changed.
        assert {(c.path, c.kind) for c in h.agent.turn_log.preview(1)[0]} == {
            ("made.txt", "deleted"), ("keep.txt", "added")}
        h.agent.rewind(1, conversation=False)
        assert (project / "keep.txt").exists() and not (project / "made.txt").exists()
        # A talk-only turn after the last change: nothing to restore, the rewind is the
        # conversation's alone.
        h.agent.redo()
        openai_server.add_text("more talk")
        h.agent.turn("and now?")
        result = h.agent.rewind(3)
        assert result.restored == () and result.removed == () and len(h.agent.history) > 1
        assert (project / "made.txt").exists()
        fork = h.agent.fork(2)  # a fork takes the checkpoint it needs
        try:
            assert (fork.runtime.workspace / "keep.txt").exists()
        finally:
            fork.close()
            fork.runtime.cleanup()
    finally:
        close(h)
