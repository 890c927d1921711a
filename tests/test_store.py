"""Session history on real files: crash safety, damage recovery, locking, redaction, sessions list."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pygent.errors import SessionError
from pygent.redact import REDACTED, Redactor, redact_secrets
from pygent.store import (
    INTERRUPTED_RESULT,
    HistoryFile,
    SessionInfo,
    SessionStore,
    default_sessions_dir,
    repair_tool_calls,
)

ROOT = Path(__file__).resolve().parent.parent


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def call(call_id: str, cmd: str = "ls") -> dict:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "bash", "arguments": json.dumps({"cmd": cmd})},
    }


def tool(call_id: str, text: str = "ok") -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def conversation(n: int) -> list[dict]:
    return [user(f"message {i} é") for i in range(n)]


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def backups(path: Path, kind: str = "corrupt") -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.{kind}-*"))


def write_history(path: Path, messages: list[dict]) -> None:
    with HistoryFile(path) as history:
        history.append_many(messages)


def mount_tmpfs(where: Path, size: str = "64k") -> None:
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tiny tmpfs here: {result.stderr.strip() or 'not root'}")


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB file system of its own, to run out of space for real."""
    where = tmp_path / "tiny"
    mount_tmpfs(where)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# --- format and basic operations ------------------------------------------------------------------


def test_new_file_has_a_header_and_each_append_adds_one_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryFile(path, meta={"model": "gpt-x"}) as history:
        assert history.load() == []
        assert history.warnings == []
        history.append(user("hello"))
        before = path.read_bytes()
        inode = path.stat().st_ino
        history.append({"role": "assistant", "content": "hi", "tool_calls": [call("c1")]})
        # Appending is not rewriting: same file, old bytes untouched, one line more.
        assert path.stat().st_ino == inode
        assert path.read_bytes().startswith(before)
    header, *rest = [json.loads(line) for line in lines(path)]
    assert header["pygent_history"] == 1
    assert header["meta"] == {"model": "gpt-x"}
    assert isinstance(header["created"], str)
    assert rest == [
        user("hello"),
        {"role": "assistant", "content": "hi", "tool_calls": [call("c1")]},
    ]


def test_reopened_history_loads_messages_and_merged_meta(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryFile(path, meta={"model": "a", "workspace": "/ws"}) as history:
        history.append_many([user("one"), user("two")])
        history.set_meta("model", "b")
        history.set_meta("title", "Fix the build")
        history.append(user("three"))
    with HistoryFile(path) as history:
        assert history.load() == [user("one"), user("two"), user("three")]
        assert history.meta == {"model": "b", "workspace": "/ws", "title": "Fix the build"}
        assert history.warnings == []


def test_rewrite_replaces_the_file_atomically_and_keeps_header(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryFile(path, meta={"model": "a"}) as history:
        history.append_many(conversation(5))
        history.set_meta("title", "t")
        created = json.loads(lines(path)[0])["created"]
        inode = path.stat().st_ino
        history.rewrite([user("summary of the earlier conversation")])
        assert path.stat().st_ino != inode  # a new file renamed over the old one
        history.append(user("after"))
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    header = json.loads(lines(path)[0])
    assert header["created"] == created
    assert header["meta"] == {"model": "a", "title": "t"}
    assert HistoryFile.read(path).load() == [
        user("summary of the earlier conversation"),
        user("after"),
    ]


def test_rewrite_without_load_keeps_meta_written_earlier(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryFile(path, meta={"model": "a"}) as history:
        history.append(user("x"))
        history.set_meta("title", "kept")
    with HistoryFile(path) as history:
        history.rewrite([])  # a reset straight after opening
    view = HistoryFile.read(path)
    assert view.load() == []
    assert view.meta == {"model": "a", "title": "kept"}


def test_closed_or_read_only_history_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    history = HistoryFile(path)
    history.close()
    with pytest.raises(SessionError, match="closed"):
        history.append(user("x"))
    write_history(path, [user("x")])
    view = HistoryFile.read(path)
    with pytest.raises(SessionError, match="read-only"):
        view.append(user("y"))


# --- locking -------------------------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pygent.store import HistoryFile
    history = HistoryFile(Path(sys.argv[1]))
    history.append({"role": "user", "content": "from the other process"})
    print("open", flush=True)
    time.sleep(60)
    """
)


def test_second_writer_gets_in_use_error_but_can_read(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        started = time.monotonic()
        with pytest.raises(SessionError) as info:
            HistoryFile(path)
        assert time.monotonic() - started < 1  # refused at once, not after waiting
        assert str(info.value) == (
            f"session file {path} is in use by another Pygent process (pid {holder.pid})"
        )
        view = HistoryFile.read(path)
        assert view.load() == [user("from the other process")]
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the lock with the process: no stale lock to clean up.
    with HistoryFile(path) as history:
        assert history.load() == [user("from the other process")]


def test_second_open_in_the_same_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryFile(path):
        with pytest.raises(SessionError, match="already open in this Pygent process"):
            HistoryFile(path)


# --- kill -9 --------------------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from pygent.store import HistoryFile
    history = HistoryFile(Path(sys.argv[1]))
    history.load()
    n = int(sys.argv[2])
    os.write(1, b"ready\\n")
    while True:
        size = 50_000 if n % 7 == 0 else 100
        history.append({"role": "user", "content": f"#{n} " + "x" * size})
        os.write(1, f"{n}\\n".encode())  # reported only once the append returned
        if n % 25 == 0:
            history.rewrite(history.load())
        n += 1
    """
)


@pytest.mark.slow
def test_kill_9_while_writing_loses_no_completed_message(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    rng = random.Random(7)
    completed: set[int] = set()
    start = 0
    for _ in range(20):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.05))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        acked = [int(x) for x in writer.stdout.read().split()]
        writer.stdout.close()
        completed.update(acked)
        start = max(completed | {start}) + 10

        view = HistoryFile.read(path)
        messages = view.load()
        assert not view.report.damaged, view.warnings
        saved = {int(m["content"].split()[0][1:]) for m in messages}
        assert completed <= saved
    assert len(completed) > 20


# --- damaged files ------------------------------------------------------------------------------------


def test_torn_tail_is_dropped_and_the_next_append_starts_on_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_history(path, [user("one"), user("two")])
    with open(path, "ab") as fh:
        fh.write(b'{"role":"user","content":"thr' + "é".encode()[:1])  # cut mid-UTF-8
    with HistoryFile(path) as history:
        assert history.load() == [user("one"), user("two")]
        assert len(history.warnings) == 1
        assert "last record" in history.warnings[0] and "incomplete" in history.warnings[0]
        assert history.report.torn_bytes > 0 and not history.report.damaged
        history.append(user("three"))
    assert lines(path)[-1] == b'{"role":"user","content":"three"}\n'
    view = HistoryFile.read(path)
    assert view.load() == [user("one"), user("two"), user("three")]
    assert view.warnings == []
    assert backups(path) == []


def test_read_only_view_reports_a_torn_tail_without_changing_the_file(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_history(path, [user("one")])
    with open(path, "ab") as fh:
        fh.write(b'{"role":"us')
    before = path.read_bytes()
    view = HistoryFile.read(path)
    assert view.load() == [user("one")]
    assert "incomplete" in view.warnings[0]
    assert path.read_bytes() == before


def test_complete_last_record_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_history(path, [user("one")])
    with open(path, "ab") as fh:
        fh.write(b'{"role":"user","content":"two"}')
    with HistoryFile(path) as history:
        assert history.load() == [user("one"), user("two")]
        history.append(user("three"))
    assert HistoryFile.read(path).load() == [user("one"), user("two"), user("three")]


def test_corrupt_middle_line_is_skipped_backed_up_once_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_history(path, conversation(5))
    raw = lines(path)
    raw[3] = b'{"role":"user","cont\x00\xff garbage\n'
    damaged = b"".join(raw)
    path.write_bytes(damaged)

    with HistoryFile(path) as history:
        messages = history.load()
        assert messages == [m for i, m in enumerate(conversation(5)) if i != 2]
        [backup] = backups(path)
        assert backup.read_bytes() == damaged  # the damaged original, byte for byte
        assert history.warnings == [
            f"1 damaged line(s) in {path} could not be read and were skipped (line 4); "
            f"4 messages were loaded; the damaged file is kept as {backup}"
        ]
        assert history.report.backup == backup
    # The file was rewritten clean after the backup: no warning and no new backup next time.
    with HistoryFile(path) as history:
        assert history.load() == messages
        assert history.warnings == []
    assert len(backups(path)) == 1


def test_random_byte_flips_never_give_a_silent_empty_history(tmp_path: Path) -> None:
    original = conversation(40)
    for seed in range(25):
        path = tmp_path / f"h{seed}.jsonl"
        write_history(path, original)
        data = bytearray(path.read_bytes())
        rng = random.Random(seed)
        for _ in range(3):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        with HistoryFile(path) as history:
            messages = history.load()
            if history.report.damaged:
                [backup] = backups(path)
                assert backup.read_bytes() == bytes(data)
                assert any(str(backup) in w for w in history.warnings)
            # Three flipped bytes damage at most three lines (a flipped newline joins two).
            assert len(messages) >= len(original) - 6


def test_file_truncated_to_zero_warns_and_keeps_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_history(path, conversation(3))
    path.write_bytes(b"")
    with HistoryFile(path) as history:
        assert history.load() == []
        [backup] = backups(path)
        assert history.warnings == [
            f"{path} was empty (0 bytes): no earlier conversation could be loaded; "
            f"the damaged file is kept as {backup}"
        ]
        assert history.report.empty_file
        history.append(user("new start"))
    assert HistoryFile.read(path).load() == [user("new start")]


def test_lost_header_is_repaired_with_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_history(path, conversation(3))
    path.write_bytes(b"".join(lines(path)[1:]))
    with HistoryFile(path) as history:
        assert history.load() == conversation(3)
        assert "lost its header line" in history.warnings[0]
        assert len(backups(path)) == 1
    assert json.loads(lines(path)[0])["pygent_history"] == 1


def test_a_file_that_is_not_a_history_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my notes\nsecond line, no newline at the end")
    before = path.read_bytes()
    with pytest.raises(SessionError, match="is not a Pygent history file"):
        HistoryFile(path)
    with pytest.raises(SessionError, match="is not a Pygent history file"):
        HistoryFile.read(path).load()
    assert path.read_bytes() == before
    assert backups(path) == []


# --- versions -----------------------------------------------------------------------------------------


def test_upstream_json_array_is_migrated_with_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    old = [
        {"role": "system", "content": "You are Pygent."},
        user("hi"),
        {"role": "assistant", "content": None, "tool_calls": [call("c1")]},
        tool("c1", "file.txt"),
    ]
    path.write_text(json.dumps(old))
    original = path.read_bytes()
    assert HistoryFile.read(path).load() == old  # a read-only view reads it, unchanged
    assert path.read_bytes() == original
    with HistoryFile(path) as history:
        assert history.load() == old
        [backup] = backups(path, "upstream")
        assert backup.read_bytes() == original
        assert history.warnings[0].startswith(f"{path} was in the old format (a JSON array)")
        assert history.report.migrated
    assert json.loads(lines(path)[0])["pygent_history"] == 1
    with HistoryFile(path) as history:
        assert history.load() == old
        assert history.warnings == []


def test_upstream_array_cut_short_by_a_crash_is_salvaged(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    text = json.dumps([user("one"), user("two"), user("three")])
    path.write_text(text[: text.index("three")])
    with HistoryFile(path) as history:
        assert history.load() == [user("one"), user("two")]
        assert "cut short" in history.warnings[0]
        [backup] = backups(path)
        assert backup.read_text() == text[: text.index("three")]


def test_file_from_a_newer_pygent_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"pygent_history": 2, "created": "2030-01-01"}\n{"kind": "new"}\n')
    before = path.read_bytes()
    message = f"session file {path} was written by a newer Pygent (format 2); upgrade Pygent"
    with pytest.raises(SessionError) as info:
        HistoryFile(path)
    assert str(info.value) == message
    with pytest.raises(SessionError) as info:
        HistoryFile.read(path)
    assert str(info.value) == message
    assert path.read_bytes() == before


# --- unusable paths ------------------------------------------------------------------------------------


def test_symlinked_history_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious")
    link = tmp_path / "h.jsonl"
    link.symlink_to(target)
    with pytest.raises(SessionError) as info:
        HistoryFile(link)
    assert str(link) in str(info.value) and "symbolic link" in str(info.value)
    assert "PYGENT_HISTORY_FILE" in info.value.hint
    assert target.read_text() == "precious"


def test_symlinked_lock_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious")
    (tmp_path / "h.jsonl.lock").symlink_to(target)
    with pytest.raises(SessionError, match="symbolic link"):
        HistoryFile(tmp_path / "h.jsonl")
    assert target.read_text() == "precious"


def test_read_only_directory_is_refused_at_open(tiny_fs: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    with pytest.raises(SessionError) as info:
        HistoryFile(tiny_fs / "h.jsonl")
    assert str(tiny_fs) in str(info.value)
    assert "read-only" in str(info.value)


# --- disk full --------------------------------------------------------------------------------------------


def test_disk_full_keeps_the_file_valid_and_saves_later(tiny_fs: Path) -> None:
    path = tiny_fs / "h.jsonl"
    ballast = tiny_fs / "ballast"
    ballast.write_bytes(b"\0" * 40_000)
    history = HistoryFile(path)
    history.append_many(conversation(3))
    size = path.stat().st_size
    big = user("output " + "y" * 30_000)
    with pytest.raises(SessionError) as info:
        history.append(big)  # part of it fits: the partial write must be cut back
    assert str(info.value).startswith("could not save session: disk full")
    assert path.stat().st_size == size
    assert HistoryFile.read(path).load() == conversation(3)
    assert history.pending == 1

    with pytest.raises(SessionError, match="disk full"):
        history.rewrite(conversation(3) + [big])
    assert HistoryFile.read(path).load() == conversation(3)

    ballast.unlink()  # space returns
    history.append(user("later"))
    assert history.pending == 0
    history.close()
    assert HistoryFile.read(path).load() == conversation(3) + [big, user("later")]


def test_damaged_file_without_room_for_a_backup_is_left_as_it_is(tiny_fs: Path) -> None:
    path = tiny_fs / "h.jsonl"
    write_history(path, conversation(5))
    raw = lines(path)
    raw[2] = b"{broken\n"
    path.write_bytes(b"".join(raw))
    damaged = path.read_bytes()
    ballast = tiny_fs / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 512):  # fill the file system to the last block
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    with HistoryFile(path) as history:
        assert len(history.load()) == 4
        assert "could not be backed up, so it was left as it is" in history.warnings[0]
        assert path.read_bytes() == damaged  # never replaced without a copy
        assert backups(path) == []
        ballast.unlink()
        history.append(user("after"))
    assert path.read_bytes().startswith(damaged)
    assert HistoryFile.read(path).load()[-1] == user("after")


# --- tool-call integrity ----------------------------------------------------------------------------------


def test_repair_tool_calls_adds_interrupted_results_after_existing_ones() -> None:
    messages = [
        user("go"),
        {"role": "assistant", "content": None, "tool_calls": [call("a"), call("b"), call("c")]},
        tool("a"),
        user("next"),
        {"role": "assistant", "content": None, "tool_calls": [call("d")]},
    ]
    snapshot = json.dumps(messages)
    repaired = repair_tool_calls(messages)
    interrupted = {"role": "tool", "content": INTERRUPTED_RESULT}
    assert repaired == [
        messages[0],
        messages[1],
        tool("a"),
        {**interrupted, "tool_call_id": "b"},
        {**interrupted, "tool_call_id": "c"},
        user("next"),
        messages[4],
        {**interrupted, "tool_call_id": "d"},
    ]
    assert json.dumps(messages) == snapshot  # pure: the input is unchanged
    assert repair_tool_calls(repaired) == repaired
    cancelled = repair_tool_calls(messages[4:], note="[cancelled by the user]")
    assert cancelled[-1]["content"] == "[cancelled by the user]"


def test_load_marks_a_tool_call_cut_off_by_a_crash_as_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_history(
        path,
        [
            user("go"),
            {"role": "assistant", "content": None, "tool_calls": [call("a"), call("b")]},
            tool("a"),
        ],
    )
    with HistoryFile(path) as history:
        messages = history.load()
        assert messages[-1] == {"role": "tool", "tool_call_id": "b", "content": INTERRUPTED_RESULT}
        assert history.report.interrupted_calls == 1
        assert "marked as interrupted" in history.warnings[0]
        assert history.load(repair=False)[-1] == tool("a")


# --- redaction -----------------------------------------------------------------------------------------------


def test_api_keys_never_reach_the_session_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api_key = "sk-canary-" + "3f9a1c2b7d" * 3
    token = "canary-token-b81f0e"
    monkeypatch.setenv("OPENAI_API_KEY", api_key)
    monkeypatch.setenv("DEPLOY_TOKEN", token)
    monkeypatch.setenv("SHORT_KEY", "abc")  # too short to be treated as a secret
    path = tmp_path / "h.jsonl"
    with HistoryFile(path, meta={"note": f"key {api_key}"}) as history:
        history.append(user(f"my key is {api_key} and the token {token}; abc stays"))
        history.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call("c1", f"curl -H 'Authorization: Bearer {token}' x")],
            }
        )
        history.append(tool("c1", "sk-proj-AAAAAAAAAAAAAAAAAAAAAAAA leaked by a command"))
        history.set_meta("title", token)
        history.rewrite(history.load() + [user(api_key)])
    data = path.read_text()
    assert api_key not in data and token not in data and "sk-proj-AAAA" not in data
    assert REDACTED in data and "abc stays" in data
    messages = HistoryFile.read(path).load()
    assert messages[0]["content"] == f"my key is {REDACTED} and the token {REDACTED}; abc stays"


def test_redact_secrets_patterns_and_custom_redactor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", "hunter2hunter2")
    assert redact_secrets("pw hunter2hunter2") == f"pw {REDACTED}"
    assert redact_secrets("Authorization: Bearer abc.def") == f"Authorization: Bearer {REDACTED}"
    assert redact_secrets("plain text, sk-short") == "plain text, sk-short"
    hide = Redactor(["my-own-secret-value"], patterns=False)
    assert hide("x my-own-secret-value sk-" + "a" * 20) == f"x {REDACTED} sk-" + "a" * 20


def test_custom_redact_callable_is_used(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryFile(path, redact=lambda s: s.replace("secret", "***")) as history:
        history.append(user("a secret"))
    assert HistoryFile.read(path).load() == [user("a ***")]


# --- sessions directory -----------------------------------------------------------------------------------


def test_sessions_are_created_listed_resumed_and_deleted(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    assert store.list() == []
    with store.create({"workspace": "/ws/a", "model": "gpt-x"}) as first:
        first.history.append(
            user("  Please fix the failing tests in the parser module, then rerun all of them  ")
        )
        first.history.append({"role": "assistant", "content": "done"})
    with store.create({"workspace": "/ws/b", "model": "gpt-y"}) as second:
        second.history.append(user("short one"))
    assert first.id[:15] <= second.id[:15]  # ids start with the UTC creation time
    hour_ago = time.time() - 3600
    os.utime(first.path, (hour_ago, hour_ago))  # mtimes a few ms apart may be equal

    listed = store.list()
    assert [s.id for s in listed] == [second.id, first.id]  # most recent first
    info = listed[1]
    assert isinstance(info, SessionInfo)
    assert info.title == "Please fix the failing tests in the parser module, then rer…"
    assert len(info.title) == 60
    assert (info.message_count, info.workspace, info.model) == (2, "/ws/a", "gpt-x")
    assert info.created is not None
    assert listed[0].updated >= listed[0].created
    with pytest.raises(AttributeError):
        info.title = "x"  # type: ignore[misc]

    with store.open(first.id) as history:
        assert history.load()[-1] == {"role": "assistant", "content": "done"}
        with pytest.raises(SessionError, match="already open"):
            store.delete(first.id)
    store.delete(first.id)
    assert [s.id for s in store.list()] == [second.id]
    with pytest.raises(SessionError, match="no session"):
        store.open(first.id)
    with pytest.raises(SessionError, match="invalid session id"):
        store.open("../../etc")


def test_session_list_is_rebuilt_from_the_files_when_the_index_is_stale(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    with store.create({"model": "m"}) as record:
        record.history.append(user("first"))
    assert store.list()[0].message_count == 1
    assert (tmp_path / "index.json").exists()
    # Written behind the index's back (as after a crash): the list must follow the file.
    with store.open(record.id) as history:
        history.append(user("second"))
        history.set_meta("title", "Renamed")
    info = store.list()[0]
    assert (info.message_count, info.title) == (2, "Renamed")
    (tmp_path / "index.json").write_text("{not json")
    assert store.list()[0].message_count == 2
    (tmp_path / "index.json").unlink()
    assert store.list()[0].title == "Renamed"


def test_default_sessions_dir_honours_xdg_data_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_sessions_dir() == tmp_path / "pygent" / "sessions"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_sessions_dir() == Path.home() / ".local" / "share" / "pygent" / "sessions"


def test_sessions_root_file_modes_are_private(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    with store.create() as record:
        record.history.append(user("x"))
    assert record.path.stat().st_mode & 0o077 == 0
    assert record.path.parent.stat().st_mode & 0o077 == 0
