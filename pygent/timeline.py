"""A session's timeline: its turns, each with the workspace checkpoints around it, and
rewind, redo and fork built on them.

Every turn is recorded with the number of messages before it and, when it runs a tool
that may change files, two checkpoints of the workspace (:mod:`pygent.checkpoints`; a
copy-on-write workspace's are :mod:`pygent.layer_checkpoints`): ``before`` (taken just
before that first tool call) and ``after`` (as the turn ends). A turn that only talks or
reads takes none (no walk of a big folder): the files before it are those before the
next turn that did. What a turn changed is the difference of its two manifests (no file
is read); what a rewind would restore is ``before`` against the workspace now.

A rewind first saves where the session is (a checkpoint and the conversation), so it
can be undone with :meth:`Timeline.redo`. In ``mount`` mode the workspace is the user's
real folder: files whose state differs from the end of the last turn were edited by the
user since, and a rewind leaves them as they are and lists them (``kept``).

The records are kept in a small JSON-lines file beside the conversation's history file
(``<history>.timeline.jsonl``): a line a turn, rewritten atomically by a rewind; the redo
points live in memory only (a redo is offered until the next turn or the process ends).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pygent.checkpoints import CheckpointError, Checkpoints, same_entry
from pygent.errors import PygentError, SessionBusyError

if TYPE_CHECKING:
    from pygent.runtime import Runtime

log = logging.getLogger(__name__)


class TimelineError(PygentError):
    """A rewind, redo or fork that cannot be done (unknown turn, nothing saved...)."""


@dataclass(frozen=True)
class TurnRecord:
    """One turn as saved: its number in the session, prompt, start time, how many
    messages came before it, and the checkpoints taken as it started and ended
    (None: none could be taken, see ``note``)."""

    turn: int
    prompt: str
    started: float
    history_len: int
    before: str | None = None
    after: str | None = None
    note: str = ""
    ran_tools: bool = False  # False: no tool that can change files ran (no checkpoint)


@dataclass(frozen=True)
class FileChange:
    """A file a turn changed (or a rewind would restore): its path and how."""

    path: str
    kind: str  # added | modified | deleted


@dataclass(frozen=True)
class TimelineTurn:
    """A turn as front ends list it: ``id`` is ``<session id>:<turn>``; ``files`` what the
    turn changed; ``can_restore_files`` whether its files can be rewound (else ``note``
    says why)."""

    id: str
    turn: int
    prompt: str
    started: float
    files: tuple[FileChange, ...]
    can_restore_files: bool
    note: str = ""


@dataclass(frozen=True)
class RewindResult:
    """What a rewind (or a redo) did.

    ``restored``/``removed``: files written back / removed; ``kept``: files the user
    edited since the last turn, left as they are; ``failed``: files that could not be
    restored; ``messages_removed``: messages taken off the conversation (a redo: put
    back, negative); ``can_redo``: whether :meth:`Timeline.redo` would undo this.
    """

    turn: int
    files: bool
    conversation: bool
    restored: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    messages_removed: int = 0
    can_redo: bool = False


@dataclass
class _RedoPoint:
    turn: int
    checkpoint: str | None  # the workspace before the rewind (None: files were not rewound)
    history: list[dict[str, Any]] | None  # the conversation before (None: not rewound)
    records: list[TurnRecord]


@dataclass
class Timeline:
    """The turns of one session and the rewinds done on them.

    Args:
        session_id: the session the turns belong to (turn ids are ``<session>:<n>``).
        checkpoints: the workspace's checkpoints (None: files cannot be rewound).
        path: where the records are saved (None: in memory only).
        guard_user_edits: the workspace is the user's folder (``mount`` mode): a
            rewind keeps files edited since the last turn ended.
    """

    session_id: str
    checkpoints: Checkpoints | None = None
    path: Path | None = None
    guard_user_edits: bool = False
    records: list[TurnRecord] = field(default_factory=list)
    _redo: list[_RedoPoint] = field(default_factory=list, repr=False)
    # Turn numbers are never reused (a client may still hold the id of a rewound turn).
    _next: int = field(default=1, repr=False)

    def __post_init__(self) -> None:
        if self.path is not None:
            self.records = self._load(self.path)
        self._next = max([self._next, *(r.turn + 1 for r in self.records)])

    # --- recording ------------------------------------------------------------------

    def begin(self, prompt: str, history_len: int, before: str | None, note: str = "") -> TurnRecord:
        """Record a turn that starts now (``before``: its checkpoint, when already taken)."""
        number = self._next
        self._next += 1
        record = TurnRecord(number, prompt[:500], time.time(), history_len, before, None, note)
        self.records.append(record)
        self._redo.clear()  # a new turn ends what a redo could put back
        self._append({"begin": asdict(record)})
        return record

    def set_before(self, before: str | None, note: str = "") -> None:
        """Record the checkpoint taken before the last turn's first tool call (None: it
        failed, ``note`` says why)."""
        if self.records:
            self.records[-1] = dataclasses.replace(self.records[-1], before=before, note=note,
                                                   ran_tools=True)
            self._append({"before": self.records[-1].turn, "id": before, "note": note})

    def end(self, after: str | None) -> None:
        """Record the checkpoint taken as the last turn ended."""
        if self.records:
            last = self.records[-1]
            self.records[-1] = dataclasses.replace(last, after=after)
            self._append({"end": last.turn, "after": after})

    def trim(self, history_len: int) -> None:
        """Forget turns whose messages are gone (the conversation was reset or compacted)."""
        kept = [r for r in self.records if r.history_len < history_len]
        if len(kept) != len(self.records):
            self.records = kept
            self._save()

    # --- reading --------------------------------------------------------------------

    def turn_id(self, record: TurnRecord) -> str:
        return f"{self.session_id}:{record.turn}"

    def find(self, turn: int | str) -> TurnRecord:
        """The record of ``turn`` (its number, or an id ``<session>:<n>``)."""
        number: int | None = None
        if isinstance(turn, bool):
            raise TimelineError(f"{turn!r} is not a turn")
        if isinstance(turn, int):
            number = turn
        elif isinstance(turn, str):
            session, sep, tail = turn.rpartition(":")
            if sep and session != self.session_id:
                raise TimelineError(
                    f"turn {turn} belongs to session {session}, not to this session ({self.session_id})"
                )
            with contextlib.suppress(ValueError):
                number = int(tail)
        if number is None:
            raise TimelineError(f"{turn!r} is not a turn (a number or <session>:<number>)")
        for record in self.records:
            if record.turn == number:
                return record
        known = ", ".join(str(r.turn) for r in self.records) or "none yet"
        raise TimelineError(f"no turn {number} in session {self.session_id} (turns: {known})")

    def changed_by(self, record: TurnRecord) -> tuple[FileChange, ...]:
        """What ``record``'s turn changed: its two checkpoints compared (no file read)."""
        cps = self.checkpoints
        if cps is None or record.before is None or not record.ran_tools:
            return ()
        try:
            before = cps.entries(record.before)
            if record.after is not None:
                after = cps.entries(record.after)
            elif record is self.records[-1]:
                after = cps.current_entries()
            else:
                return ()
        except CheckpointError:
            return ()
        return tuple(FileChange(p, k) for p, k in cps.diff(before, after))

    def turns(self) -> list[TimelineTurn]:
        """Every turn, oldest first, with what it changed."""
        out = []
        for record in self.records:
            ok, note = self._restorable(record)
            out.append(TimelineTurn(self.turn_id(record), record.turn, record.prompt,
                                    record.started, self.changed_by(record), ok, note))
        return out

    def _restorable(self, record: TurnRecord) -> tuple[bool, str]:
        ok, note, _ident = self._restore_point(record)
        return ok, note

    def _restore_point(self, record: TurnRecord) -> tuple[bool, str, str | None]:
        """Whether the files of before ``record``'s turn can be restored, why not, and
        the checkpoint that holds them: the turn's own, or (a turn that ran no tool)
        that of the first later turn that did. (True, "", None): no turn since changed
        the files, there is nothing to restore."""
        if self.checkpoints is None:
            return False, "this session keeps no workspace checkpoints", None
        for later in self.records:
            if later.turn < record.turn or not later.ran_tools:
                continue
            if later.before is None:
                why = later.note or "no checkpoint was taken"
                if later is not record:
                    why = f"turn {later.turn} could not be checkpointed ({why})"
                return False, why, None
            if not self.checkpoints.has(later.before):
                return False, (f"its checkpoint is no longer kept (the newest "
                               f"{self.checkpoints.keep} are)"), None
            return True, "", later.before
        return True, "", None

    def preview(self, turn: int | str) -> tuple[list[FileChange], list[str]]:
        """What rewinding the files to before ``turn`` would do: the files it would
        restore, and (``mount`` mode) those it would keep because the user edited them."""
        record = self.find(turn)
        cps, ident = self._need_files(record)
        if ident is None:
            return [], []
        try:
            target = cps.entries(ident)
            now = cps.current_entries()
        except CheckpointError as exc:
            raise self._damaged(record, exc) from None
        changes = [FileChange(p, k) for p, k in cps.diff(now, target)]
        kept = self._user_edited(now, {c.path for c in changes})
        return [c for c in changes if c.path not in kept], sorted(kept)

    def _user_edited(self, now: dict[str, Any], paths: set[str]) -> set[str]:
        """Of ``paths``, those whose state differs from the end of the last turn."""
        if not self.guard_user_edits or self.checkpoints is None:
            return set()
        # The files as the agent last left them: the end of the last turn that ran tools.
        last = next((r.after for r in reversed(self.records) if r.ran_tools), None)
        if last is None:
            return set()
        try:
            ended = self.checkpoints.entries(last)
        except CheckpointError:
            return set()
        return {p for p in paths if not same_entry(ended.get(p), now.get(p))}

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # --- rewinding ------------------------------------------------------------------

    def _need_files(self, record: TurnRecord) -> tuple[Checkpoints, str | None]:
        ok, note, ident = self._restore_point(record)
        if not ok or self.checkpoints is None:
            raise TimelineError(f"the files of turn {record.turn} cannot be restored: {note}")
        return self.checkpoints, ident

    def fork_point(self, record: TurnRecord) -> str:
        """A checkpoint of the files as they were before ``record``'s turn (taken now
        when no turn since changed them)."""
        cps, ident = self._need_files(record)
        if ident is None:
            try:
                ident = cps.checkpoint(f"fork at turn {record.turn}")
            except (OSError, PygentError) as exc:
                raise TimelineError(f"cannot save the workspace to fork it ({exc})") from None
            if ident is None:
                raise TimelineError(f"cannot save the workspace to fork it "
                                    f"({cps.last_skip_reason})")
        return ident

    def _damaged(self, record: TurnRecord, exc: Exception) -> TimelineError:
        return TimelineError(
            f"cannot rewind to before turn {record.turn}: its checkpoint is unusable ({exc}); "
            "nothing was changed"
        )

    def rewind(
        self,
        turn: int | str,
        history: list[dict[str, Any]],
        *,
        files: bool = True,
        conversation: bool = True,
    ) -> tuple[RewindResult, list[dict[str, Any]] | None]:
        """Rewind to before ``turn``. ``history`` is the conversation now (the system
        message first); returns the result and the conversation to use from now on
        (None: unchanged). Blocking (reads and writes files): run it in a thread."""
        if not files and not conversation:
            raise TimelineError("nothing to rewind: choose files, conversation or both")
        record = self.find(turn)
        kept: set[str] = set()
        redo_point: str | None = None
        cps, ident = self._need_files(record) if files else (None, None)
        if cps is not None and ident is not None:
            try:
                # restore() checks every saved copy it needs before writing anything.
                target = cps.entries(ident)
                if self.guard_user_edits:
                    now = cps.current_entries()
                    kept = self._user_edited(now, {p for p, _ in cps.diff(now, target)})
            except CheckpointError as exc:
                raise self._damaged(record, exc) from None
            # Where we are, so the rewind can be undone; without it there is no rewind.
            try:
                redo_point = cps.checkpoint(f"before rewinding to turn {record.turn}")
            except (OSError, PygentError) as exc:
                raise TimelineError(f"cannot save the workspace before rewinding ({exc}); "
                                    "nothing was changed") from None
            if redo_point is None:
                raise TimelineError(f"cannot save the workspace before rewinding "
                                    f"({cps.last_skip_reason}); nothing was changed")
        point = _RedoPoint(record.turn, redo_point,
                           copy.deepcopy(history) if conversation else None, list(self.records))
        report = None
        if cps is not None and ident is not None:
            try:
                report = cps.restore(ident, delete_new=True, keep=kept)
            except CheckpointError as exc:
                raise self._damaged(record, exc) from None
        new_history = None
        if conversation:
            new_history = history[: record.history_len]
            self.records = [r for r in self.records if r.turn < record.turn]
        self._redo.append(point)
        self._save()
        return RewindResult(
            record.turn, files, conversation,
            restored=tuple(report.restored) if report else (),
            removed=tuple(report.removed) if report else (),
            kept=tuple(sorted(kept)),
            failed=tuple(report.failed) if report else (),
            messages_removed=len(history) - record.history_len if conversation else 0,
            can_redo=True,
        ), new_history

    def redo(self, history: list[dict[str, Any]]) -> tuple[RewindResult, list[dict[str, Any]] | None]:
        """Undo the last rewind: the files and/or conversation it changed come back."""
        if not self._redo:
            raise TimelineError("nothing to redo: no rewind since the last turn")
        point = self._redo[-1]
        report = None
        if point.checkpoint is not None:
            assert self.checkpoints is not None
            try:
                report = self.checkpoints.restore(point.checkpoint, delete_new=True)
            except CheckpointError as exc:
                raise TimelineError(f"cannot redo: the saved workspace is unusable ({exc})") from None
        self._redo.pop()
        new_history = copy.deepcopy(point.history) if point.history is not None else None
        self.records = point.records
        self._save()
        return RewindResult(
            point.turn, point.checkpoint is not None, point.history is not None,
            restored=tuple(report.restored) if report else (),
            removed=tuple(report.removed) if report else (),
            failed=tuple(report.failed) if report else (),
            messages_removed=(len(history) - len(new_history)) if new_history is not None else 0,
            can_redo=bool(self._redo),
        ), new_history

    # --- persistence ----------------------------------------------------------------

    # The file is JSON lines: a snapshot ({"turns": [...], "next": n}) then one line per
    # turn begun ({"begin": record}) or ended ({"end": n, "after": id}). A turn appends
    # (a rename over the file would make ext4 flush it: milliseconds a turn); a rewind
    # rewrites the snapshot.

    def _load(self, path: Path) -> list[TurnRecord]:
        records: list[TurnRecord] = []
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("the timeline %s cannot be read (%s): starting a new one", path, exc)
            return []
        for number, line in enumerate(lines):
            try:
                item = json.loads(line)
                if "turns" in item:
                    records = [TurnRecord(**r) for r in item["turns"]]
                    self._next = int(item.get("next", 1))
                elif "begin" in item:
                    records.append(TurnRecord(**item["begin"]))
                elif "before" in item and records and records[-1].turn == item["before"]:
                    records[-1] = dataclasses.replace(records[-1], before=item["id"],
                                                      note=item.get("note", ""), ran_tools=True)
                elif "end" in item and records and records[-1].turn == item["end"]:
                    records[-1] = dataclasses.replace(records[-1], after=item["after"])
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                # A torn last line (a crash mid-append) is expected; anything else is said.
                if number != len(lines) - 1:
                    log.warning("the timeline %s has a damaged line %d (%s): skipped",
                                path, number + 1, exc)
        return records

    def _append(self, item: dict[str, Any]) -> None:
        if self.path is None:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, json.dumps(item).encode() + b"\n")
            finally:
                os.close(fd)
        except OSError as exc:
            # The conversation is intact without it; only rewinding this turn is lost.
            log.warning("the timeline %s could not be saved: %s", self.path, exc)

    def _save(self) -> None:
        if self.path is None:
            return
        data = json.dumps({"session": self.session_id, "next": self._next,
                           "turns": [asdict(r) for r in self.records]}).encode() + b"\n"
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning("the timeline %s could not be saved: %s", self.path, exc)


def fork_runtime(runtime: Runtime, timeline: Timeline, record: TurnRecord) -> Runtime:
    """A new sandbox like ``runtime`` whose workspace is as it was before ``record``'s
    turn. A copy-on-write workspace's fork is a new upper layer over the same folder
    (the folder is shared, never copied); any other gets a scratch folder with the
    checkpoint's files. Blocking; the caller owns the new runtime."""
    from pygent.layer_checkpoints import LayerCheckpoints
    from pygent.runtime import Runtime

    try:
        ident = timeline.fork_point(record)
    except TimelineError as exc:
        raise TimelineError(f"cannot fork at turn {record.turn}: {exc}") from None
    checkpoints = timeline.checkpoints
    assert checkpoints is not None
    try:
        checkpoints.verify(ident)
    except CheckpointError as exc:
        raise TimelineError(f"cannot fork at turn {record.turn}: its checkpoint is unusable "
                            f"({exc})") from None
    # Never the parent's folder: the fork gets its own workspace.
    settings = dataclasses.replace(runtime.settings, workspace=None)
    lower = runtime.overlay.lower if runtime.overlay is not None else None
    child = Runtime(use_docker=runtime.use_docker, settings=settings, cow_lower=lower)
    try:
        if child.overlay is not None:
            child.wait_ready()
            LayerCheckpoints(checkpoints.store, child.files).restore(ident, delete_new=True)
        elif lower is not None:
            raise TimelineError(f"cannot fork: the new sandbox has no copy-on-write workspace "
                                f"({child.cow_fallback})")
        else:
            Checkpoints(checkpoints.store, child.files).restore(ident)
    except BaseException:
        child.cleanup()
        raise
    return child


def busy_error() -> SessionBusyError:
    """The refusal of a rewind, redo or fork while a turn runs."""
    return SessionBusyError("a turn is running in this session: cancel it first, then rewind")


__all__ = [
    "FileChange",
    "RewindResult",
    "Timeline",
    "TimelineError",
    "TimelineTurn",
    "TurnRecord",
    "busy_error",
    "fork_runtime",
]
