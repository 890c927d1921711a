"""ADVERSARIAL G: persistence faults, on real files (tmpfs for a full disk) and with kill -9."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pygent import Agent
from pygent.checkpoints import Checkpoints
from pygent.errors import SessionError
from pygent.store import INTERRUPTED_RESULT, HistoryFile, SessionStore
from tests.adversarial.conftest import ROOT, Harness, make_harness, make_runtime, settings_for
from tests.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.timeout(180)

sys.path.insert(0, str(ROOT / "bench"))


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def write_history(path: Path, n: int) -> list[dict[str, Any]]:
    messages = [user(f"message {i} é") for i in range(n)]
    with HistoryFile(path) as history:
        history.append_many(messages)
    return messages


def agent_on(server: ScriptedOpenAIServer, runtimes, tmp: Path, history: Path, **kw: Any) -> Agent:
    return make_harness(server, runtimes["local"], tmp, history_file=history, **kw).agent


# --- G1: kill -9 -----------------------------------------------------------------------


def test_G1_killnine_harness_quick(tmp_path: Path) -> None:
    """bench/killnine.py: the store's writer under SIGKILL, next to a naive writer that
    the harness must catch corrupting files (PYGENT_KILLNINE_TRIALS per writer, default 20;
    `python bench/killnine.py --quick` runs 50)."""
    trials = os.environ.get("PYGENT_KILLNINE_TRIALS", "20")
    out = tmp_path / "killnine.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "killnine.py"), trials, "--strict", "--json", str(out),
         "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())["results"]
    print(f"\nG1 killnine: {results['jsonl']} / naive: corrupt {results['naive']['corrupt_files']}")
    ours = results["jsonl"]
    assert ours["corrupt_files"] == ours["lost_completed"] == ours["dangling_after_load"] == 0
    assert results["naive"]["corrupt_files"] > 0, "the control must show the harness detects damage"


def test_G1_killnine_real_agent_sessions(
    openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """bench/killnine_agent.py: SIGKILL a real Agent session process (local runtime) at
    random moments (PYGENT_KILLNINE_AGENT_TRIALS, default 6; Docker mode: test_H8)."""
    from killnine_agent import run

    trials = int(os.environ.get("PYGENT_KILLNINE_AGENT_TRIALS", "6"))
    stats = run(trials, "local", 7, tmp_path, 0.8, openai_server)
    print(f"\nG1 real sessions: {stats}")
    assert stats["child_errors"] == 0 and stats["acked_turns"] > 0, stats["examples"]
    assert stats["corrupt_files"] == stats["lost_completed_turns"] == 0
    assert stats["dangling_after_load"] == 0 and stats["orphan_processes"] == 0


# --- G2-G9: damaged, full, locked, foreign files -------------------------------------------


def test_G2_torn_tail_and_partial_utf8(
    openai_server, runtimes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "h.jsonl"
    kept = write_history(path, 3)
    with open(path, "ab") as fh:
        fh.write(b'{"role": "user", "content": "cut \xc3')  # torn mid-record, mid-character
    with caplog.at_level(logging.WARNING):
        agent = agent_on(openai_server, runtimes, tmp_path, path)
    assert agent.history[1:] == kept
    assert any("incomplete" in r.getMessage() for r in caplog.records)
    openai_server.add_text("after")
    agent.turn("next")
    agent.close()
    loaded = HistoryFile.read(path).load()
    assert loaded[:3] == kept and loaded[-1]["content"] == "after" and len(loaded) == 5


@pytest.mark.parametrize("damage", ["middle", "empty", "flips"])
def test_G3_damaged_files_load_what_they_can_and_keep_a_backup(
    openai_server, runtimes, tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "h.jsonl"
    kept = write_history(path, 20)
    raw = bytearray(path.read_bytes())
    if damage == "middle":
        lines = raw.split(b"\n")
        lines[8] = b"{broken"
        raw = bytearray(b"\n".join(lines))
    elif damage == "empty":
        raw = bytearray()
    else:
        rng = random.Random(3)
        for _ in range(5):
            raw[rng.randrange(len(raw) // 3, len(raw))] ^= 0x55
    path.write_bytes(bytes(raw))
    damaged = path.read_bytes()
    agent = agent_on(openai_server, runtimes, tmp_path, path)
    loaded = agent.history[1:]
    backups = list(tmp_path.glob("h.jsonl.corrupt-*"))
    if damage != "flips" or len(loaded) < 20:
        assert backups and backups[0].read_bytes() == damaged  # never lost, never overwritten
    if damage == "middle":
        assert loaded == kept[:7] + kept[8:]
    elif damage == "flips":  # a flip may still be valid JSON (then it cannot be noticed)
        assert len(loaded) >= 15
    assert agent.history_store is not None and agent.history_store.warnings
    agent.close()


def test_G4_disk_full_while_saving(openai_server, runtimes, tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)]).returncode:
        pytest.fail("cannot mount a tmpfs (needs root)")
    try:
        path = tiny / "h.jsonl"
        kept = write_history(path, 3)
        ballast = tiny / "ballast"
        ballast.write_bytes(b"\0" * 40_000)
        h = make_harness(openai_server, runtimes["local"], tmp_path, history_file=path)
        openai_server.add_text("a long answer " * 3000)  # ~40 KB: does not fit
        h.agent.turn("talk")
        notices = [e.text for e in h.events if e.type == "notice"]
        assert any("could not save session: disk full" in n for n in notices), notices
        assert path.read_bytes().endswith(b"\n")  # no half-written record
        assert HistoryFile.read(path).load() == [*kept, user("talk")]  # intact, what fitted
        assert h.agent.history[-1]["content"].startswith("a long answer")  # kept in memory
        ballast.unlink()  # space returns: the next save catches up
        openai_server.add_text("short")
        h.agent.turn("again")
        h.agent.close()
        loaded = HistoryFile.read(path).load()
        assert loaded[:3] == kept and loaded[-1]["content"] == "short"
        assert any(m["content"].startswith("a long answer") for m in loaded)
    finally:
        subprocess.run(["umount", "-l", str(tiny)], check=False)


def test_G5_unusable_history_location_fails_at_start(
    openai_server, runtimes, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere.jsonl"
    write_history(target, 2)
    before = target.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    with pytest.raises(SessionError, match="symbolic link"):
        agent_on(openai_server, runtimes, tmp_path, link)
    assert target.read_bytes() == before
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(ro)]).returncode:
        pytest.fail("cannot mount a tmpfs (needs root)")
    try:
        with pytest.raises(SessionError, match="read-only"):
            agent_on(openai_server, runtimes, tmp_path, ro / "h.jsonl")
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def test_G6_second_process_on_the_same_session(openai_server, runtimes, tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import sys, time; sys.path.insert(0, {str(ROOT)!r})\n"
         f"from pygent.store import HistoryFile\nh = HistoryFile({str(path)!r})\n"
         "print('open', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"open"
        with pytest.raises(SessionError, match="in use by another Pygent process"):
            agent_on(openai_server, runtimes, tmp_path, path)
        assert HistoryFile.read(path).load() == []  # a read-only view still works
    finally:
        holder.kill()
        holder.wait()


def test_G7_crash_between_tool_and_result(openai_server, runtimes, tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    call = {"id": "call_lost", "type": "function",
            "function": {"name": "bash", "arguments": '{"cmd": "make"}'}}  # fmt: skip
    with HistoryFile(path) as history:
        history.append_many(
            [user("build it"), {"role": "assistant", "content": None, "tool_calls": [call]}]
        )
    agent = agent_on(openai_server, runtimes, tmp_path, path)
    openai_server.add_text("resumed")
    agent.turn("what happened?")
    agent.close()
    messages = openai_server.chat_requests[-1].body["messages"]
    results = [m for m in messages if m.get("role") == "tool"]
    assert results == [{"role": "tool", "tool_call_id": "call_lost", "content": INTERRUPTED_RESULT}]
    assert messages.index(results[0]) == 3  # right after its assistant message


def test_G8_files_from_other_versions(openai_server, runtimes, tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps([user("from upstream"), {"role": "assistant", "content": "hi"}]))
    agent = agent_on(openai_server, runtimes, tmp_path, old)
    assert [m["content"] for m in agent.history[1:]] == ["from upstream", "hi"]
    agent.close()
    assert list(tmp_path.glob("old.json.upstream-*"))  # the original is kept
    newer = tmp_path / "newer.jsonl"
    newer.write_text(
        '{"pygent_history": 99, "created": "2099-01-01"}\n{"role": "user", "content": "x"}\n'
    )
    before = newer.read_bytes()
    with pytest.raises(SessionError, match="newer Pygent"):
        agent_on(openai_server, runtimes, tmp_path, newer)
    assert newer.read_bytes() == before


def test_G9_stale_session_index_is_rebuilt(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    with store.create() as a:
        a.history.append(user("first"))
    with store.create() as b:
        b.history.append(user("second"))
    assert len(store.list()) == 2
    index = tmp_path / "sessions" / "index.json"
    stale = json.loads(index.read_text())
    store.delete(a.id)
    with store.create() as c:
        c.history.append(user("third"))
    index.write_text(json.dumps({**stale, "ghost": stale[a.id]}))  # crash: index out of date
    ids = {info.id for info in store.list()}
    assert ids == {b.id, c.id}


# --- G10: checkpoints ------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    (folder / "src").mkdir(parents=True)
    for i in range(20):
        (folder / "src" / f"m{i}.py").write_text(f"value = {i}\n")
    (folder / "README.md").write_text("# project\n")
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run(
        ["git", "-c", "user.email=a@b", "-c", "user.name=a", "add", "-A"], cwd=folder, check=True
    )
    subprocess.run(["git", "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "init"],
                   cwd=folder, check=True)  # fmt: skip
    return folder


@pytest.mark.parametrize("mode", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_G10_checkpoint_undoes_rm_rf_and_reset_hard(
    openai_server, tmp_path: Path, project: Path, mode: str
) -> None:
    rt = make_runtime(mode, project)
    try:
        h: Harness = make_harness(
            openai_server, rt, tmp_path, history_file=tmp_path / "h.jsonl", checkpoints=None
        )  # the default: on for a saved session
        assert h.agent.checkpoints is not None
        (project / "src" / "m3.py").write_text("value = 'uncommitted work'\n")
        (project / "notes.txt").write_text("not in git\n")
        destroy = (
            "rm -rf src README.md notes.txt"
            if mode == "docker"
            else ("git reset -q --hard && git clean -fdq && rm -rf src")
        )
        h.sh(destroy)
        assert not (project / "src").exists()
        ident = h.agent.last_checkpoint
        assert ident is not None
        report = h.agent.checkpoints.restore(ident)
        assert not report.failed
        assert (project / "src" / "m3.py").read_text() == "value = 'uncommitted work'\n"
        assert (project / "notes.txt").read_text() == "not in git\n"
        assert sorted(p.name for p in (project / "src").iterdir()) == sorted(
            f"m{i}.py" for i in range(20)
        )
        data = Path(h.agent.settings.sessions_dir).parent
        assert h.agent.checkpoints.store.is_relative_to(data)  # kept outside the workspace
        assert not any(".pygent" in str(p) for p in project.rglob("*") if "checkpoint" in str(p))
    finally:
        rt.cleanup()
    assert (project / "src" / "m0.py").exists()  # the workspace outlives the container


def test_G10_checkpoint_cost_and_bounds(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    for i in range(1000):
        p = ws / f"d{i % 20}" / f"f{i}.py"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"print({i})\n" * 50)
    cp = Checkpoints.for_workspace(tmp_path / "data", ws, keep=5)
    started = time.perf_counter()
    cp.checkpoint()
    cold = time.perf_counter() - started
    warm = []
    for _ in range(12):
        started = time.perf_counter()
        cp.checkpoint()
        warm.append(time.perf_counter() - started)
    print(
        f"\nG10: 1,000 files: first {cold * 1000:.0f} ms, then median "
        f"{sorted(warm)[6] * 1000:.1f} ms; store {cp.disk_usage() >> 10} KiB"
    )
    assert sorted(warm)[6] < 0.1
    assert len(cp.list()) <= 5 + 5  # bounded (pruned in batches)
    big = Checkpoints.for_workspace(tmp_path / "data2", ws, max_files=500)
    assert big.checkpoint() is None and "more than 500 files" in big.last_skip_reason


# --- G11, G12 -------------------------------------------------------------------------------------


def test_G11_hundred_megabyte_history(openai_server, runtimes, tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    chunk = "output line\n" * 8500  # ~100 KB per tool result
    with HistoryFile(path) as history:
        history.append_many([{"role": "user", "content": f"{i} {chunk}"} for i in range(1000)])
    size = path.stat().st_size
    from tests.adversarial.conftest import rss_kb

    before = rss_kb()
    started = time.perf_counter()
    agent = agent_on(openai_server, runtimes, tmp_path, path)
    load = time.perf_counter() - started
    grown = (rss_kb() - before) >> 10
    store = agent.history_store
    assert store is not None
    times = []
    for i in range(20):
        started = time.perf_counter()
        store.append(user(f"small {i}"))
        times.append(time.perf_counter() - started)
    agent.close()
    median = sorted(times)[10]
    print(
        f"\nG11: {size >> 20} MiB history: load {load:.2f}s, RSS +{grown} MiB, "
        f"append median {median * 1000:.2f} ms"
    )
    assert size > 100_000_000 and median < 0.05
    assert path.stat().st_size > size  # appended, never rewritten


def test_G12_appends_and_rewrites_are_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What kill -9 cannot show: data is on disk, not only in the page cache."""
    import pygent.history.file as history_module

    synced: list[str] = []
    real_datasync, real_fsync = history_module.datasync, os.fsync

    def datasync(fd: int) -> None:
        synced.append("data")
        real_datasync(fd)

    def fsync(fd: int) -> None:
        synced.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    monkeypatch.setattr(history_module, "datasync", datasync)
    monkeypatch.setattr(os, "fsync", fsync)
    history = HistoryFile(tmp_path / "h.jsonl")
    synced.clear()
    history.append(user("one"))
    assert synced and synced[-1] in ("data", "file")
    synced.clear()
    history.rewrite([user("one"), user("two")])
    assert "file" in synced or "data" in synced
    assert "dir" in synced  # the rename is made durable too
    history.close()


_ = (Iterator, settings_for)
