"""Session snapshots: ``/save DIR`` writes one, ``pygent --load DIR`` resumes it.

A snapshot directory holds::

    snapshot.json    what this is: version, time, session id, where the workspace is
    history.jsonl    the conversation (pygent.history format; secrets redacted)
    workspace/       a copy of the workspace files (absent when only its location is kept)
    settings.json    the non-secret settings (Settings.public_dict plus live changes)
    transcript.log   what the terminal showed, as plain text
    pygent.log       the log of the run, when it has one

Resuming continues *in* the directory, as the upstream CLI did: the conversation is
appended to its ``history.jsonl`` and ``workspace/`` is used (and kept) as the
workspace. A directory from the sessions store (``~/.local/share/pygent/sessions/ID``,
written on a crash) resumes the same way; its history names the workspace location.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pygent.errors import ConfigError, SessionError
from pygent.history import HistoryFile
from pygent.persona import Persona

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "snapshot.json"
HISTORY_FILE = "history.jsonl"
UPSTREAM_HISTORY = "history.json"  # the upstream CLI's JSON array
WORKSPACE_DIR = "workspace"
SETTINGS_FILE = "settings.json"
TRANSCRIPT_FILE = "transcript.log"
LOG_FILE = "pygent.log"
FORMAT = 1
#: Settings a resumed session takes from the snapshot (below flags and environment).
RESTORED_SETTINGS = (
    "model",
    "image",
    "persona_name",
    "persona",
    "task_personas",
    "disabled_tools",
    "banned_commands",
    "approval_mode",
    "confirm_bash",
    "max_steps",
    "network",
)


@dataclass
class Snapshot:
    """A snapshot directory, read for resuming."""

    directory: Path
    history_file: Path
    workspace: Path | None
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def copy_workspace(files: Any, target: Path) -> int:
    """Copy the regular files of a workspace (links are not followed); returns the count.

    ``files`` is the runtime's :class:`~pygent.runtime.workspace.Workspace`.
    """
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    count = 0
    for rel, st in files.iter_files():
        out = tmp / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(files.read_bytes(rel))
        os.chmod(out, st.st_mode & 0o777)
        count += 1
    # Swap in whole: an interrupted save never leaves half a workspace in place.
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)
    return count


def _check_target(dest: Path) -> None:
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"cannot save to {dest}: it is a file")
    if dest.is_dir() and any(dest.iterdir()):
        known = (dest / SNAPSHOT_FILE).exists() or (dest / HISTORY_FILE).exists()
        if not known:
            raise ConfigError(
                f"cannot save to {dest}: the directory is not empty and is not a Pygent snapshot",
                hint="choose a new or empty directory",
            )


def save(
    dest: Path,
    agent: Any,
    *,
    transcript: Any = None,
    include_workspace: bool = True,
    log_file: Path | None = None,
) -> Path:
    """Write a snapshot of ``agent``'s session to ``dest``; returns the directory.

    Args:
        dest: the snapshot directory (created; an existing snapshot is replaced).
        agent: the session's :class:`~pygent.agent.Agent` (history, runtime, settings).
        transcript: a :class:`~pygent.repl.transcript.Transcript` to write along.
        include_workspace: copy the workspace files; when False only its location is
            recorded (a workspace the user owns, such as ``--cwd``).
        log_file: the run's log file, copied when it exists.
    """
    dest = dest.expanduser().resolve()
    _check_target(dest)
    dest.mkdir(parents=True, exist_ok=True)
    workspace = Path(agent.runtime.workspace).resolve()
    ws_entry: str
    if include_workspace and workspace != (dest / WORKSPACE_DIR).resolve():
        copy_workspace(agent.runtime.files, dest / WORKSPACE_DIR)
        ws_entry = WORKSPACE_DIR
    elif workspace == (dest / WORKSPACE_DIR).resolve():
        ws_entry = WORKSPACE_DIR  # resumed from here: the workspace is already in place
    else:
        ws_entry = str(workspace)
    meta = {
        "workspace": str(dest / ws_entry) if ws_entry == WORKSPACE_DIR else ws_entry,
        "model": agent.model_name,
        "session_id": agent.session_id,
    }
    _write_history(dest / HISTORY_FILE, agent, meta)
    settings = agent.settings.public_dict()
    settings["disabled_tools"] = sorted(agent.disabled_tools)
    settings["banned_commands"] = list(agent.policy.banned_commands())
    settings["approval_mode"] = agent.policy.mode
    settings["confirm_bash"] = None  # the mode above already says it
    _write_json(dest / SETTINGS_FILE, settings)
    if transcript is not None:
        transcript.write(dest / TRANSCRIPT_FILE)
    if log_file is not None and log_file.is_file():
        shutil.copyfile(log_file, dest / LOG_FILE)
    from pygent import __version__

    _write_json(
        dest / SNAPSHOT_FILE,
        {
            "pygent_snapshot": FORMAT,
            "pygent_version": __version__,
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "session_id": agent.session_id,
            "workspace": ws_entry,
            "model": agent.model_name,
            "persona": agent.persona.name,
        },
    )
    return dest


def _write_history(path: Path, agent: Any, meta: dict[str, Any]) -> None:
    store = getattr(agent, "history_store", None)
    if store is not None and Path(store.path).resolve() == path.resolve():
        store.flush()  # the live history file already is this one
        store.set_meta("workspace", meta["workspace"])
        return
    history = HistoryFile(path, meta=meta)
    try:
        history.rewrite(agent.history[1:])  # the system prompt is rebuilt on resume
        for key, value in meta.items():
            history.set_meta(key, value)
    finally:
        history.close()


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path, warnings: list[str]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        warnings.append(f"{path} could not be read ({exc}); it was ignored")
        return {}
    return data if isinstance(data, dict) else {}


def _restored(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in RESTORED_SETTINGS:
        value = values.get(key)
        if value is None:
            continue
        if key == "task_personas":
            value = [
                Persona(
                    str(p.get("name")),
                    str(p.get("description", p.get("name"))),
                    # its MCP servers (None: all of the session's)
                    tuple(map(str, p["mcp"])) if isinstance(p.get("mcp"), list) else None,
                )
                for p in value
                if isinstance(p, dict) and p.get("name")
            ]
        out[key] = value
    return out


def load(directory: Path) -> Snapshot:
    """Read the snapshot (or saved session) in ``directory`` for resuming."""
    root = directory.expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(
            f"cannot load {directory}: no such directory", hint="pass a directory written by /save"
        )
    warnings: list[str] = []
    info = _read_json(root / SNAPSHOT_FILE, warnings)
    history = root / HISTORY_FILE
    if not history.exists() and (root / UPSTREAM_HISTORY).is_file():
        history = root / UPSTREAM_HISTORY
    if not history.exists() and not info:
        raise ConfigError(
            f"cannot load {directory}: it holds no Pygent snapshot "
            f"({SNAPSHOT_FILE} or {HISTORY_FILE})"
        )
    workspace: Path | None = None
    if (root / WORKSPACE_DIR).is_dir():
        workspace = root / WORKSPACE_DIR
    else:
        recorded = info.get("workspace")
        if not recorded and history.exists():
            try:
                reader = HistoryFile.read(history)
                reader.load(repair=False)
                recorded = reader.meta.get("workspace")
            except SessionError as exc:
                raise ConfigError(f"cannot load {directory}: {exc}") from None
        if recorded and Path(recorded).is_dir():
            workspace = Path(recorded)
        elif recorded:
            warnings.append(
                f"the session's workspace {recorded} no longer exists: "
                "starting with an empty workspace"
            )
    settings = _restored(_read_json(root / SETTINGS_FILE, warnings))
    return Snapshot(root, history, workspace, settings, warnings)
