"""Workspace sync between an editor's folder and a session's sandbox, and the agent's change sets.

In **copy** mode the folder is copied into the sandbox workspace (respecting
``.gitignore`` and always skipping VCS folders, ``node_modules``, virtualenvs and
caches); later syncs copy only what changed. A manifest records, per file, the content
both sides had at the last sync (SHA-256) and each side's size and mtime, so a sync
hashes only files whose stat changed and copies only files whose content changed. What
the agent changed in the sandbox comes back as a :class:`ChangeSet` (path, status,
unified diff) that a front end applies to the folder (itself, or as an editor edit,
then :meth:`WorkspaceSync.mark_applied`) or discards (the sandbox copy is restored).

In **cow** (copy-on-write) mode the sandbox sees the folder through an overlay and the
change set is read from the session's upper layer: see :class:`pygent.cow.CowSync`.

In **mount** mode the sandbox workspace IS the folder: the manifest is a snapshot taken
when the session started, and the change set is informational (statuses, no diffs).

Every read and write goes through :class:`~pygent.runtime.workspace.Workspace`, so links
are never followed: a link in the folder pointing at ``~/.ssh`` is not copied in, and a
link the agent made in the sandbox never reaches a host file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pygent.errors import PathError
from pygent.protected_paths import is_protected
from pygent.runtime.workspace import Workspace
from pygent.sync_modes import COPY, COW, MOUNT  # re-exported: the names live apart
from pygent.tools.preview import unified_diff

log = logging.getLogger(__name__)

#: Directories never synced, at any depth (VCS data, dependencies, caches).
ALWAYS_SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".cache",
        ".eggs",
    }
)
#: Files bigger than this are not copied into the sandbox (reported as skipped).
MAX_FILE_BYTES = 50 * 1024 * 1024
#: A folder with more files than this is synced partially (with a warning).
MAX_FILES = 100_000
#: How much of a file decides whether it is text (a NUL byte means binary).
_SNIFF = 8192



# --- .gitignore -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    base: str  # the folder holding the .gitignore ('' for the root)
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _glob_to_regex(pattern: str) -> str:
    """A gitignore glob as a regex over a ``/``-separated relative path."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == n:
            out.append("(?:/.*)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


class IgnoreRules:
    """A simple ``.gitignore`` matcher: globs, ``**``, ``!`` negation, trailing ``/``,
    anchored patterns, nested ``.gitignore`` files; plus :data:`ALWAYS_SKIP_DIRS`.

    Like git, a file inside an ignored directory cannot be re-included.
    """

    def __init__(self) -> None:
        self._rules: list[_Rule] = []

    def add_file(self, base: str, text: str) -> None:
        """Add the rules of the ``.gitignore`` found in folder ``base`` ('' = root)."""
        for raw in text.splitlines():
            line = raw.rstrip("\n\r")
            if not line.strip() or line.startswith("#"):
                continue
            line = line.rstrip() if not line.endswith("\\ ") else line
            negate = line.startswith("!")
            if negate:
                line = line[1:]
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            if not line:
                continue
            anchored = "/" in line
            line = line.lstrip("/")
            body = _glob_to_regex(line)
            regex = re.compile(("" if anchored else "(?:.*/)?") + body + r"\Z", re.DOTALL)
            self._rules.append(_Rule(base, regex, negate, dir_only))

    def ignored(self, rel: str, is_dir: bool) -> bool:
        """Whether ``rel`` (this entry only, not its parents) is ignored."""
        name = rel.rsplit("/", 1)[-1]
        if is_dir and name in ALWAYS_SKIP_DIRS:
            return True
        verdict = False
        for rule in self._rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.base:
                if not rel.startswith(rule.base + "/"):
                    continue
                sub = rel[len(rule.base) + 1 :]
            else:
                sub = rel
            if rule.regex.match(sub):
                verdict = not rule.negate
        return verdict

    def path_ignored(self, rel: str) -> bool:
        """Whether a file path is ignored, counting its parent directories."""
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if self.ignored("/".join(parts[:i]), True):
                return True
        return self.ignored(rel, False)


def walk(
    root: Path, rules: IgnoreRules, *, load_gitignores: bool = True, max_files: int = MAX_FILES
) -> Iterator[tuple[str, os.stat_result]]:
    """Regular files under ``root`` that are not ignored, as (relpath, lstat); links are
    not followed. Nested ``.gitignore`` files are added to ``rules`` as they are met."""
    count = 0
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        folder = root / rel_dir if rel_dir else root
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            log.debug("cannot list %s: %s", folder, exc)
            continue
        if load_gitignores:
            for entry in entries:
                if entry.name == ".gitignore" and entry.is_file(follow_symlinks=False):
                    try:
                        rules.add_file(rel_dir, Path(entry.path).read_text("utf-8", "replace"))
                    except OSError as exc:
                        log.debug("cannot read %s: %s", entry.path, exc)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if not rules.ignored(rel, True):
                    stack.append(rel)
            elif stat.S_ISREG(st.st_mode) and not rules.ignored(rel, False):
                yield rel, st
                count += 1
                if count >= max_files:
                    log.warning(
                        "%s has more than %d files: the rest is not synced", root, max_files
                    )
                    return


# --- the manifest ----------------------------------------------------------------------------------


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stamp(st: os.stat_result | None) -> tuple[int, int] | None:
    return None if st is None else (st.st_size, st.st_mtime_ns)


@dataclass
class Entry:
    """What one file was at the last sync: its content hash and each side's stat."""

    sha: str
    host: tuple[int, int] | None  # (size, mtime_ns) of the folder's file; None: unknown
    sandbox: tuple[int, int] | None


@dataclass(frozen=True)
class FileChange:
    """One file the agent changed (copy mode) or that changed (mount mode)."""

    path: str
    status: str  # added | modified | deleted
    diff: str = ""
    binary: bool = False
    conflict: bool = False
    protected: str | None = None
    kind: str = "file"  # file | symlink (cow mode; copy and mount modes see files only)


@dataclass(frozen=True)
class SyncReport:
    copied: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    scanned: int = 0
    duration_ms: float = 0.0


@dataclass(frozen=True)
class FileEdit:
    """How to bring one change into the folder: ``kind`` create | replace | delete;
    ``old_text`` is the folder's current text (to size a full-document edit)."""

    path: str
    kind: str
    new_text: str = ""
    old_text: str = ""


@dataclass
class ApplyReport:
    applied: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def is_binary(data: bytes) -> bool:
    if b"\x00" in data[:_SNIFF]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def edits_for(
    changes: Iterable[FileChange],
    read: Callable[[str, bool], bytes | None],
    refuse: Callable[[FileChange], str | None] = lambda change: None,
) -> tuple[list[FileEdit], list[tuple[str, str]]]:
    """The editor edits that bring ``changes`` into the folder, and (path, why) for those
    that cannot be one: both change sets (copy and copy-on-write) plan edits here.

    Args:
        changes: the chosen changes.
        read: ``read(path, after)``: the sandbox's bytes (``after`` True) or the folder's.
        refuse: says why a change cannot be an edit (a link, a mount-mode change), or None.
    """
    edits: list[FileEdit] = []
    failed: list[tuple[str, str]] = []
    for change in changes:
        why = refuse(change)
        if why:
            failed.append((change.path, why))
            continue
        if change.status == "deleted":
            edits.append(FileEdit(change.path, "delete"))
            continue
        after, before = read(change.path, True), read(change.path, False)
        if after is None or is_binary(after) or (before is not None and is_binary(before)):
            failed.append((change.path, "binary file: apply it with method 'write'"))
        elif before is None:
            edits.append(FileEdit(change.path, "create", after.decode("utf-8")))
        else:
            edits.append(
                FileEdit(change.path, "replace", after.decode("utf-8"), before.decode("utf-8"))
            )
    return edits, failed


def _read(ws: Workspace, rel: str) -> bytes | None:
    try:
        return ws.read_bytes(rel)
    except PathError:
        return None


def _lstat(ws: Workspace, rel: str) -> os.stat_result | None:
    """``ws.lstat`` that also answers None for a missing final component."""
    try:
        return ws.lstat(rel)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _remove(ws: Workspace, rel: str) -> bool:
    """Delete a file in ``ws`` without following links; True if something was removed."""
    try:
        target = ws.host_path(rel)
    except PathError:
        return False
    try:
        os.unlink(target)
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        return False
    return True


class WorkspaceSync:
    """The link between one editor folder and one session's sandbox workspace.

    Args:
        folder: the editor's folder on the host.
        sandbox: the sandbox workspace (the runtime's ``files``); the folder itself in
            mount mode.
        mode: ``copy``, ``mount`` (or ``cow``, for :class:`pygent.cow.CowSync`).

    Methods do blocking file I/O: async callers run them in a worker thread. A lock
    keeps a sync, a change scan and an apply of the same session from interleaving.
    """

    def __init__(self, folder: Path, sandbox: Workspace, mode: str = COPY) -> None:
        if mode not in (COPY, MOUNT, COW):
            raise ValueError(f"unknown sync mode {mode!r}")
        self.folder = Workspace(folder)
        self.sandbox = sandbox
        self.mode = mode
        self.rules = IgnoreRules()
        self.manifest: dict[str, Entry] = {}
        self._dirty: set[str] = set()
        self._lock = threading.RLock()

    # --- notifications from the editor ---------------------------------------------------

    def mark_dirty(self, paths: Iterable[str]) -> None:
        """Remember paths the editor saved/created/deleted; the next sync handles only these."""
        with self._lock:
            for p in paths:
                try:
                    self._dirty.add(self.folder.relpath(p))
                except PathError as exc:
                    log.debug("ignoring a change outside the folder: %s", exc)

    def relpath_of(self, path: str) -> str | None:
        """The folder-relative form of a host path, or None when it is outside the folder."""
        try:
            rel = self.folder.relpath(path)
        except PathError:
            return None
        return rel or None

    # --- sync in -----------------------------------------------------------------------------

    def initial_sync(self) -> SyncReport:
        """Copy the folder into the sandbox (copy mode) or snapshot it (mount mode)."""
        return self.sync(full=True)

    def sync(self, *, full: bool = False, overlay: dict[str, bytes] | None = None) -> SyncReport:
        """Bring the sandbox up to date with the folder.

        Args:
            full: rescan the folder (stat every file); otherwise only the paths the
                editor reported since the last sync (plus ``overlay``).
            overlay: unsaved editor buffers, folder-relative path -> content; they win
                over the file on disk.
        """
        started = time.perf_counter()
        with self._lock:
            if self.mode == MOUNT:
                if full and not self.manifest:
                    self._snapshot()
                self._dirty.clear()
                return SyncReport(
                    scanned=len(self.manifest), duration_ms=(time.perf_counter() - started) * 1000
                )
            copied: list[str] = []
            removed: list[str] = []
            conflicts: list[str] = []
            skipped: list[str] = []
            overlay = dict(overlay or {})
            if full:
                self.rules = IgnoreRules()
                seen: dict[str, os.stat_result] = dict(walk(self.folder.root, self.rules))
                candidates = set(seen) | set(self.manifest)
            else:
                seen = {}
                candidates = set(self._dirty)
                for rel in list(candidates):
                    if rel.endswith(".gitignore") or rel.rsplit("/", 1)[-1] == ".gitignore":
                        self._reload_rules()
                        break
            self._dirty.clear()
            candidates |= set(overlay)
            for rel in sorted(candidates):
                if self.rules.path_ignored(rel):
                    continue
                if full:
                    host_st = seen.get(rel)
                else:
                    host_st = _lstat(self.folder, rel)
                    if host_st is not None and not stat.S_ISREG(host_st.st_mode):
                        host_st = None
                outcome = self._sync_one(rel, host_st, overlay.get(rel))
                {
                    "copied": copied,
                    "removed": removed,
                    "conflict": conflicts,
                    "skipped": skipped,
                }.get(outcome, []).append(rel)
            return SyncReport(
                tuple(copied),
                tuple(removed),
                tuple(conflicts),
                tuple(skipped),
                len(candidates),
                (time.perf_counter() - started) * 1000,
            )

    def _reload_rules(self) -> None:
        rules = IgnoreRules()
        for _rel, _st in walk(self.folder.root, rules):
            pass
        self.rules = rules

    def _sandbox_state(self, rel: str, entry: Entry | None) -> tuple[bool, bytes | None]:
        """(changed by the agent since the last sync, current sandbox bytes if read)."""
        st = _lstat(self.sandbox, rel)
        if st is None or not stat.S_ISREG(st.st_mode):
            return (entry is not None), None
        if entry is not None and _stamp(st) == entry.sandbox:
            return False, None
        data = _read(self.sandbox, rel)
        if data is None:
            return entry is not None, None
        if entry is not None and digest(data) == entry.sha:
            entry.sandbox = _stamp(st)
            return False, data
        return True, data

    def _sync_one(self, rel: str, host_st: os.stat_result | None, buffer: bytes | None) -> str:
        entry = self.manifest.get(rel)
        if buffer is None and host_st is None:
            if entry is None:
                return "none"
            changed, _ = self._sandbox_state(rel, entry)
            if changed:
                return "conflict"
            _remove(self.sandbox, rel)
            del self.manifest[rel]
            return "removed"
        if buffer is None:
            assert host_st is not None
            if entry is not None and entry.host == _stamp(host_st):
                return "none"
            if host_st.st_size > MAX_FILE_BYTES:
                return "skipped"
            data = _read(self.folder, rel)
            if data is None:
                return "none"
            host_stamp = _stamp(host_st)
        else:
            # The disk file as it was when its buffer was synced: a later sync copies it
            # only once it changes on disk (a save), not back over the buffer.
            data, host_stamp = buffer, _stamp(host_st)
        sha = digest(data)
        if entry is not None and entry.sha == sha:
            entry.host = host_stamp
            return "none"
        changed, current = self._sandbox_state(rel, entry)
        if entry is None and current is not None and not changed:
            changed = True  # the agent created a file the folder now has too
        if changed:
            if current is not None and digest(current) == sha:
                st = _lstat(self.sandbox, rel)
                self.manifest[rel] = Entry(sha, host_stamp, _stamp(st))
                return "none"
            return "conflict"
        mode = (host_st.st_mode & 0o777) if host_st is not None else None
        try:
            self.sandbox.write(rel, data, mode=mode)
        except (PathError, OSError) as exc:
            log.warning("cannot copy %s into the sandbox: %s", rel, exc)
            return "skipped"
        self.manifest[rel] = Entry(sha, host_stamp, _stamp(_lstat(self.sandbox, rel)))
        return "copied"

    def _snapshot(self) -> None:
        """Mount mode: remember every file's hash as the baseline of the change set."""
        self.rules = IgnoreRules()
        for rel, st in walk(self.folder.root, self.rules):
            if st.st_size > MAX_FILE_BYTES:
                continue
            data = _read(self.folder, rel)
            if data is not None:
                self.manifest[rel] = Entry(digest(data), _stamp(st), _stamp(st))

    # --- change sets ------------------------------------------------------------------------------

    def _sandbox_files(self) -> dict[str, os.stat_result]:
        if self.mode == MOUNT:
            return dict(walk(self.folder.root, self.rules, load_gitignores=False))
        return {
            rel: st
            for rel, st in walk(self.sandbox.root, self.rules, load_gitignores=False)
            if not self.rules.path_ignored(rel)
        }

    def changes(self, *, diffs: bool = True) -> list[FileChange]:
        """What changed in the sandbox since the last sync (or, mounted, since the start)."""
        with self._lock:
            out: list[FileChange] = []
            current = self._sandbox_files()
            for rel in sorted(set(current) | set(self.manifest)):
                entry = self.manifest.get(rel)
                st = current.get(rel)
                if st is None:
                    if entry is not None:
                        out.append(self._describe(rel, "deleted", None, diffs))
                    continue
                if entry is None:
                    data = _read(self.sandbox, rel) if st.st_size <= MAX_FILE_BYTES else b""
                    out.append(self._describe(rel, "added", data, diffs))
                    continue
                side = entry.sandbox if self.mode == COPY else entry.host
                if _stamp(st) == side:
                    continue
                data = _read(self.sandbox, rel)
                if data is None:
                    continue
                if digest(data) == entry.sha:
                    if self.mode == COPY:
                        entry.sandbox = _stamp(st)
                    else:
                        entry.host = _stamp(st)
                    continue
                out.append(self._describe(rel, "modified", data, diffs))
            return out

    def _host_conflict(self, rel: str, entry: Entry | None) -> bool:
        if entry is None:
            return _lstat(self.folder, rel) is not None
        st = _lstat(self.folder, rel)
        if st is None:
            return True
        if entry.host is not None and _stamp(st) == entry.host:
            return False
        data = _read(self.folder, rel)
        return data is None or digest(data) != entry.sha

    def _describe(self, rel: str, status: str, data: bytes | None, diffs: bool) -> FileChange:
        protected = is_protected(rel)
        if self.mode == MOUNT:
            return FileChange(
                rel, status, "", bool(data) and is_binary(data or b""), False, protected
            )
        entry = self.manifest.get(rel)
        conflict = self._host_conflict(rel, entry)
        before = _read(self.folder, rel) or b""
        after = data or b""
        binary = is_binary(before) or is_binary(after)
        diff = ""
        if diffs:
            if binary:
                diff = f"Binary file {rel} differs\n"
            else:
                diff = unified_diff(rel, before.decode("utf-8"), after.decode("utf-8"))
        return FileChange(rel, status, diff, binary, conflict, protected)

    # --- apply / discard -------------------------------------------------------------------------

    def _select(
        self, paths: Iterable[str] | None
    ) -> tuple[list[FileChange], list[tuple[str, str]]]:
        changes = {c.path: c for c in self.changes(diffs=False)}
        if paths is None:
            chosen = [c for c in changes.values() if c.protected is None]
            failed = [
                (c.path, f"protected path ({c.protected}): apply it by naming it")
                for c in changes.values()
                if c.protected is not None
            ]
            return chosen, failed
        chosen, failed = [], []
        for p in paths:
            try:
                rel = self.sandbox.relpath(p)
            except PathError as exc:
                failed.append((p, str(exc)))
                continue
            if rel in changes:
                chosen.append(changes[rel])
            else:
                failed.append((p, "no change to apply"))
        return chosen, failed

    def plan_edits(
        self, paths: Iterable[str] | None = None
    ) -> tuple[list[FileEdit], list[tuple[str, str]]]:
        """The edits that bring the chosen changes into the folder (for an editor's
        ``applyEdit``). Binary files cannot be sent as text: they fail with a reason."""
        with self._lock:
            chosen, failed = self._select(paths)
            edits, unplanned = edits_for(
                chosen,
                lambda rel, after: _read(self.sandbox if after else self.folder, rel),
                lambda _change: (
                    "mount mode: the change is already in the folder" if self.mode == MOUNT else None
                ),
            )
            return edits, failed + unplanned

    def mark_applied(self, edits: Iterable[FileEdit]) -> None:
        """The editor applied these edits: they count as synced. The folder's files change
        on disk only when the editor saves, so their stat is unknown until then."""
        with self._lock:
            for edit in edits:
                if edit.kind == "delete":
                    self.manifest.pop(edit.path, None)
                    continue
                st = _lstat(self.sandbox, edit.path)
                self.manifest[edit.path] = Entry(
                    digest(edit.new_text.encode("utf-8")), None, _stamp(st)
                )

    def write_to_folder(self, paths: Iterable[str] | None = None) -> ApplyReport:
        """Apply the chosen changes by writing the folder's files directly."""
        report = ApplyReport()
        with self._lock:
            chosen, failed = self._select(paths)
            report.failed.extend(failed)
            for change in chosen:
                rel = change.path
                if self.mode == MOUNT:
                    # Accepting a mounted change moves the baseline forward.
                    data = _read(self.folder, rel)
                    if data is None:
                        self.manifest.pop(rel, None)
                    else:
                        st = _lstat(self.folder, rel)
                        self.manifest[rel] = Entry(digest(data), _stamp(st), _stamp(st))
                    report.applied.append(rel)
                    continue
                try:
                    if change.status == "deleted":
                        _remove(self.folder, rel)
                        self.manifest.pop(rel, None)
                    else:
                        data = _read(self.sandbox, rel)
                        if data is None:
                            report.failed.append((rel, "the sandbox file cannot be read"))
                            continue
                        st_s = _lstat(self.sandbox, rel)
                        mode = (st_s.st_mode & 0o777) if st_s is not None else None
                        self.folder.write(rel, data, mode=mode)
                        self.manifest[rel] = Entry(
                            digest(data), _stamp(_lstat(self.folder, rel)), _stamp(st_s)
                        )
                except (PathError, OSError) as exc:
                    report.failed.append((rel, str(exc)))
                    continue
                report.applied.append(rel)
        return report

    def discard(self, paths: Iterable[str] | None = None) -> list[str]:
        """Undo the agent's changes in the sandbox: restore the folder's copies."""
        if self.mode == MOUNT:
            raise PathError(
                "mount mode: the agent wrote the folder directly; undo with your version control"
            )
        done: list[str] = []
        with self._lock:
            chosen, _failed = (
                self._select(paths) if paths is not None else (self.changes(diffs=False), [])
            )
            for change in chosen:
                rel = change.path
                data = _read(self.folder, rel)
                try:
                    if data is None:
                        _remove(self.sandbox, rel)
                        self.manifest.pop(rel, None)
                    else:
                        st = _lstat(self.folder, rel)
                        self.sandbox.write(rel, data, mode=(st.st_mode & 0o777) if st else None)
                        self.manifest[rel] = Entry(
                            digest(data), _stamp(st), _stamp(_lstat(self.sandbox, rel))
                        )
                except (PathError, OSError) as exc:
                    log.warning("cannot restore %s in the sandbox: %s", rel, exc)
                    continue
                done.append(rel)
        return done
