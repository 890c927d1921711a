"""Which saved session ``--resume [ID]`` or ``--continue`` means, with a picker for a bare ``--resume``.

Both the REPL and ``pygent -p`` reopen the chosen session through the session service;
this module only picks it (and its workspace, when that folder still exists), from the
store's list, before anything heavy is imported.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pygent.errors import ConfigError, PygentError
from pygent.settings import Settings
from pygent.store import SessionInfo, SessionStore

#: How many sessions the picker lists.
PICKER_ROWS = 20


def _ago(when: datetime) -> str:
    seconds = max(0, int((datetime.now(timezone.utc) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def _meta(store: SessionStore, session_id: str) -> dict[str, Any]:
    try:
        reader = store.read(session_id)
        try:
            reader.load(repair=False)
            return dict(reader.meta)
        finally:
            reader.close()
    except PygentError:
        return {}


def _saved(store: SessionStore) -> list[SessionInfo]:
    return [info for info in store.list() if info.message_count > 0]


def latest_for_folder(store: SessionStore, folder: Path) -> str | None:
    """The most recently updated session started in ``folder`` or working on it."""
    wanted = str(folder.resolve())
    for info in _saved(store):
        if info.workspace and str(Path(info.workspace).resolve()) == wanted:
            return info.id
        if _meta(store, info.id).get("cwd") == wanted:
            return info.id
    return None


def _by_id(store: SessionStore, text: str) -> str:
    """An exact id, or a prefix of exactly one saved session's id."""
    text = text.strip()
    try:
        if store.path(text).is_file():
            return text
    except PygentError:
        pass  # not a well-formed id: maybe a prefix
    matches = [info.id for info in store.list() if info.id.startswith(text)] if text else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(f"{text!r} matches {len(matches)} saved sessions: {', '.join(matches[:5])}")
    raise ConfigError(
        f"no saved session {text!r} in {store.root}", hint="run pygent --resume to pick one"
    )


def _pick(store: SessionStore) -> str:
    """List the saved sessions on the terminal and read the user's choice."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ConfigError(
            "--resume without an id needs a terminal to pick from",
            hint="give the id: pygent --resume ID (ids are listed by pygent --resume on a terminal)",
        )
    sessions = _saved(store)[:PICKER_ROWS]
    if not sessions:
        raise ConfigError(f"there are no saved sessions in {store.root}")
    print("saved sessions (newest first):")
    for n, info in enumerate(sessions, 1):
        title = " ".join(info.title.split())[:60]
        print(f"{n:3}. {info.id}  {_ago(info.updated):>10}  {info.message_count:4} msgs  {title}")
    try:
        answer = input(f"resume which session (1-{len(sessions)} or an id; Enter cancels)? ")
    except EOFError:
        answer = ""
    answer = answer.strip()
    if not answer:
        raise ConfigError("no session chosen")
    if answer.isdigit() and 1 <= int(answer) <= len(sessions):
        return sessions[int(answer) - 1].id
    return _by_id(store, answer)


def choose_session(options: Any, settings: Settings) -> str:
    """The id ``--resume [ID]``/``--continue`` names; sets ``settings.workspace`` to the
    session's workspace when it still exists and no ``-w``/``--cwd`` was given."""
    store = SessionStore(settings.sessions_dir)
    if options.resume:
        session_id = _by_id(store, options.resume)
    elif options.resume is not None:
        session_id = _pick(store)
    else:
        found = latest_for_folder(store, Path.cwd())
        if found is None:
            raise ConfigError(
                f"no saved session was started in {Path.cwd()}",
                hint="pygent --resume lists every saved session",
            )
        session_id = found
    if options.workspace is None and not options.cwd:
        recorded = _meta(store, session_id).get("workspace")
        if recorded and Path(recorded).is_dir():
            settings.workspace = Path(recorded)
        elif recorded:
            settings.warnings.append(
                f"the session's workspace {recorded} no longer exists: "
                "starting with an empty workspace"
            )
    return session_id
