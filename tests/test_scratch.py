"""Sandbox folders in the temp dir: an owner record beside each, and the reaper that reads it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pygent.runtime import Runtime
from pygent.runtime.ownership import LABEL_OWNER_PID, LABEL_OWNER_START, owner_labels
from pygent.runtime.scratch import OWNER_SUFFIX, reap_scratch_dirs


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _folder(root: Path, name: str, record: object | None) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "work.txt").write_text("x")
    if record is not None:
        text = record if isinstance(record, str) else json.dumps(record)
        folder.with_name(name + OWNER_SUFFIX).write_text(text)
    return folder


def test_only_folders_of_dead_owners_are_removed(tmp_path: Path) -> None:
    dead = _folder(tmp_path, "pygent_dead", {**owner_labels(), LABEL_OWNER_PID: str(_dead_pid())})
    reused = _folder(tmp_path, "pygent_reused", {**owner_labels(), LABEL_OWNER_START: "1"})
    alive = _folder(tmp_path, "pygent_alive", owner_labels())
    unrecorded = _folder(tmp_path, "pygent_unrecorded", None)
    garbled = _folder(tmp_path, "pygent_garbled", "{not json")
    foreign = _folder(tmp_path, "other_dead", {**owner_labels(), LABEL_OWNER_PID: str(_dead_pid())})

    assert sorted(reap_scratch_dirs(tmp_path)) == sorted([dead, reused])
    for gone in (dead, reused):
        assert not gone.exists() and not gone.with_name(gone.name + OWNER_SUFFIX).exists()
    for kept in (alive, unrecorded, garbled, foreign):
        assert (kept / "work.txt").read_text() == "x"


def test_a_runtime_records_its_folder_and_cleanup_removes_both(tmp_path: Path) -> None:
    rt = Runtime(use_docker=False)
    try:
        folder = rt.workspace
        record = json.loads(folder.with_name(folder.name + OWNER_SUFFIX).read_text())
        assert record == owner_labels()
        assert list(folder.iterdir()) == [], "the record must not be visible in the sandbox"
    finally:
        rt.cleanup()
    assert not folder.exists() and not folder.with_name(folder.name + OWNER_SUFFIX).exists()
