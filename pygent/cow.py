"""Copy-on-write sessions: the change set, apply and discard, read from the upper layer.

A copy-on-write session sees the user's folder through an overlay (see
:mod:`pygent.runtime.overlay`): whatever the agent changed is an entry of the session's
upper layer, so everything here costs O(changed files), never a walk of the folder.

:class:`CowSync` is the :class:`~pygent.changes.WorkspaceSync` of such a session. A
change is an upper entry that differs from the folder's file (content, mode, link
target, type) or a whiteout/opaque folder hiding folder files. The conflict check is
the folder file's ``ctime``: a file the user changed since the session started (or
since Pygent last wrote it) is a conflict (``ctime`` cannot be set back by a program).
Discard writes the folder's version back through the sandbox (the layers of a mounted
overlay must not be changed underneath it).

The per-turn checkpoints of such a session are in :mod:`pygent.layer_checkpoints`.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pygent.changes import (
    COW,
    MAX_FILE_BYTES,
    ApplyReport,
    FileChange,
    FileEdit,
    SyncReport,
    WorkspaceSync,
    digest,
    edits_for,
    is_binary,
)
from pygent.errors import PathError, PygentError
from pygent.protected_paths import is_protected
from pygent.runtime.overlay import (
    OverlayWorkspace,
    entry_kind,
    is_opaque,
    is_whiteout,
    lower_files,
    lstat_or_none,
    read_layer_file,
)
from pygent.runtime.workspace import Workspace
from pygent.tools.preview import unified_diff

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Delta:
    path: str
    status: str  # added | modified | deleted
    kind: str  # file | symlink (the sandbox side; the folder side for a deletion)
    old_mode: int | None = None  # set when only/also the permission bits changed
    new_mode: int | None = None


# --- the change set --------------------------------------------------------------------------


class CowSync(WorkspaceSync):
    """The link between a folder and its copy-on-write session.

    Args:
        folder: the user's folder (the overlay's lower layer).
        sandbox: the merged view (:attr:`pygent.runtime.Runtime.files` of the session).
    """

    def __init__(self, folder: Path, sandbox: OverlayWorkspace) -> None:
        super().__init__(folder, sandbox, COW)
        self.view = sandbox
        self.layers = sandbox.layers
        self.started_ns = time.time_ns()
        self._baseline: dict[str, int] = {}  # path -> ctime of the folder file we wrote
        self._applied: dict[str, str] = {}  # path -> digest an editor applied (unsaved yet)
        self._buffers: dict[str, str] = {}  # path -> digest of an unsaved buffer synced in
        self._gitignores: set[str] = set()

    # --- sync in: the folder IS the lower layer ---------------------------------------------

    def initial_sync(self) -> SyncReport:
        """Nothing to copy: the sandbox already sees the folder. O(1)."""
        return SyncReport()

    def sync(self, *, full: bool = False, overlay: dict[str, bytes] | None = None) -> SyncReport:
        """Saved files need nothing (the sandbox sees the folder); unsaved buffers are
        written into the sandbox, unless the agent changed that file (a conflict)."""
        started = time.perf_counter()
        copied: list[str] = []
        conflicts: list[str] = []
        with self._lock:
            self._dirty.clear()
            if overlay:
                mine = {d.path for d in self._scan()}
                for rel, data in sorted(overlay.items()):
                    try:
                        rel = self.folder.relpath(rel)
                        current = self.view.read_bytes(rel) if self.view.lstat(rel) else None
                    except PathError as exc:
                        log.debug("buffer %s not synced: %s", rel, exc)
                        continue
                    if current == data:
                        continue
                    if rel in mine and rel not in self._buffers:
                        conflicts.append(rel)
                        continue
                    try:
                        self.view.write(rel, data)
                    except (PathError, OSError, PygentError) as exc:
                        log.warning("cannot write buffer %s into the sandbox: %s", rel, exc)
                        continue
                    self._buffers[rel] = digest(data)
                    copied.append(rel)
        return SyncReport(
            tuple(copied),
            (),
            tuple(conflicts),
            (),
            len(overlay or {}),
            (time.perf_counter() - started) * 1000,
        )

    # --- reading the upper layer --------------------------------------------------------------

    def _ignored(self, rel: str, is_dir: bool) -> bool:
        """``.gitignore`` rules and ALWAYS_SKIP_DIRS: build output is not a change. The
        folders' ``.gitignore`` files are read lazily, root first."""
        parts = rel.split("/")
        for i in range(len(parts)):
            base = "/".join(parts[:i])
            if base not in self._gitignores:
                self._gitignores.add(base)
                path = self.layers.lower / base / ".gitignore"
                try:
                    self.rules.add_file(base, path.read_text("utf-8", "replace"))
                except OSError:
                    pass
        for i in range(1, len(parts)):
            if self.rules.ignored("/".join(parts[:i]), True):
                return True
        return self.rules.ignored(rel, is_dir)

    def _gone(self, rel: str) -> list[_Delta]:
        out = []
        for sub, st in lower_files(self.layers.lower, rel):
            kind = entry_kind(st)
            if kind and not self._ignored(sub, False):
                out.append(_Delta(sub, "deleted", kind))
        return out

    def _scan(self) -> list[_Delta]:
        """The changes, from the upper layer (and the folder entries it hides)."""
        upper, lower = self.layers.upper, self.layers.lower
        found: dict[str, _Delta] = {}

        def add(items: Iterable[_Delta]) -> None:
            for item in items:
                found.setdefault(item.path, item)

        stack: list[tuple[str, bool]] = [("", True)]
        while stack:
            rel_dir, lower_dir = stack.pop()
            try:
                entries = list(os.scandir(upper / rel_dir if rel_dir else upper))
            except OSError:
                continue
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                lst = lstat_or_none(lower / rel) if lower_dir else None
                if is_whiteout(st):
                    if lst is not None:
                        add(self._gone(rel))
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if self._ignored(rel, True):
                        continue
                    lower_is_dir = lst is not None and stat.S_ISDIR(lst.st_mode)
                    if lst is not None and not lower_is_dir:
                        add(self._gone(rel))  # a file replaced by a folder
                    if lower_is_dir and is_opaque(entry.path):
                        # Removed and made again: what the upper folder lacks is gone.
                        add(
                            d
                            for d in self._gone(rel)
                            if _upper_kind(upper / d.path) is None
                        )
                    stack.append((rel, lower_is_dir))
                    continue
                kind = entry_kind(st)
                if kind is None or self._ignored(rel, False):
                    continue
                if lst is None:
                    add([_Delta(rel, "added", kind)])
                elif stat.S_ISDIR(lst.st_mode):
                    add(self._gone(rel))  # a folder replaced by a file
                    add([_Delta(rel, "added", kind)])
                else:
                    delta = _compare(self.view, rel, st, lower / rel, lst)
                    if delta is not None:
                        add([delta])
        out = []
        for delta in found.values():
            wanted = self._buffers.get(delta.path)
            if wanted is not None and delta.kind == "file" and delta.status == "modified":
                try:
                    if digest(self.view.read_bytes(delta.path)) == wanted:
                        continue  # an editor buffer synced in, not the agent's change
                except PathError:
                    pass
            out.append(delta)
        return sorted(out, key=lambda d: d.path)

    def _conflict(self, rel: str) -> bool:
        """The folder file changed since the session started (or since we wrote it)."""
        st = lstat_or_none(self.layers.lower / rel)
        if st is None or st.st_ctime_ns <= self._baseline.get(rel, self.started_ns):
            return False
        applied = self._applied.get(rel)
        if applied is not None and stat.S_ISREG(st.st_mode):
            data = read_layer_file(self.layers.lower / rel)
            return data is None or digest(data) != applied
        return True

    def changes(self, *, diffs: bool = True) -> list[FileChange]:
        """What the agent changed: O(entries of the upper layer)."""
        with self._lock:
            return [self._describe_delta(d, diffs) for d in self._scan()]

    def _side(self, rel: str, kind: str, in_sandbox: bool) -> bytes | None:
        if in_sandbox:  # an added or modified entry: it is in the upper layer
            if kind == "symlink":
                target = self.view.upper_readlink(rel)
                return None if target is None else target.encode()
            return self.view.upper_bytes(rel, MAX_FILE_BYTES)
        path = self.layers.lower / rel
        st = lstat_or_none(path)
        if st is None:
            return None
        if stat.S_ISLNK(st.st_mode):
            return os.readlink(path).encode()
        return read_layer_file(path) if st.st_size <= MAX_FILE_BYTES else b""

    def _describe_delta(self, d: _Delta, diffs: bool) -> FileChange:
        before = self._side(d.path, d.kind, False) if d.status != "added" else None
        after = self._side(d.path, d.kind, True) if d.status != "deleted" else None
        binary = d.kind == "file" and (is_binary(before or b"") or is_binary(after or b""))
        text = ""
        if diffs:
            if d.old_mode is not None and d.new_mode is not None and d.old_mode != d.new_mode:
                text = f"old mode {d.old_mode:o}\nnew mode {d.new_mode:o}\n"
            if d.kind == "symlink":
                old = f"-> {before.decode('utf-8', 'replace')}\n" if before is not None else ""
                new = f"-> {after.decode('utf-8', 'replace')}\n" if after is not None else ""
                text += unified_diff(d.path, old, new)
            elif binary:
                text += f"Binary file {d.path} differs\n"
            elif (before or b"") != (after or b""):
                text += unified_diff(
                    d.path, (before or b"").decode("utf-8"), (after or b"").decode("utf-8")
                )
        return FileChange(
            d.path,
            d.status,
            text,
            binary,
            self._conflict(d.path),
            is_protected(d.path),
            d.kind,
        )

    # --- apply / discard -------------------------------------------------------------------

    def plan_edits(
        self, paths: Iterable[str] | None = None
    ) -> tuple[list[FileEdit], list[tuple[str, str]]]:
        with self._lock:
            chosen, failed = self._select(paths)
            edits, unplanned = edits_for(
                chosen,
                lambda rel, after: self._side(rel, "file", after),
                lambda change: (
                    "symbolic link: apply it with method 'write'" if change.kind == "symlink" else None
                ),
            )
            return edits, failed + unplanned

    def mark_applied(self, edits: Iterable[FileEdit]) -> None:
        """An editor applied these: the folder file changes when it saves, and that
        change is ours, not a conflict."""
        with self._lock:
            for edit in edits:
                self._applied[edit.path] = digest(edit.new_text.encode("utf-8"))

    def write_to_folder(self, paths: Iterable[str] | None = None) -> ApplyReport:
        """Write the chosen changes into the folder. Applying everything leaves out
        conflicts (the folder file changed since): name a path to overwrite it."""
        report = ApplyReport()
        with self._lock:
            chosen, failed = self._select(paths)
            report.failed.extend(failed)
            for change in chosen:
                rel = change.path
                if paths is None and change.conflict:
                    report.failed.append(
                        (rel, "changed in the folder since the session started: name it to "
                         "overwrite it")
                    )
                    continue
                try:
                    self._write_one(change)
                except (PathError, OSError) as exc:
                    report.failed.append((rel, str(exc)))
                    continue
                st = lstat_or_none(self.layers.lower / rel)
                self._baseline[rel] = st.st_ctime_ns if st is not None else time.time_ns()
                self._applied.pop(rel, None)
                report.applied.append(rel)
        return report

    def _write_one(self, change: FileChange) -> None:
        rel = change.path
        if change.status == "deleted":
            self.folder.remove(rel)
            # Folders the sandbox removed go too, once empty (never a folder it still has).
            parent = os.path.dirname(rel)
            while parent and self.view.lstat(parent) is None:
                try:
                    os.rmdir(self.folder.host_path(parent))
                except (OSError, PathError):
                    break
                parent = os.path.dirname(parent)
            return
        if change.kind == "symlink":
            target = self.view.readlink(rel)
            if target is None:
                raise PathError(f"{rel!r} is no longer a link in the sandbox")
            self._check_link(rel, target)
            with self.folder._parent(rel, create=True, follow_last=False) as (dir_fd, name, _):
                st = _stat_at(name, dir_fd)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    raise PathError(f"{rel!r} is a directory in the folder")
                tmp = f".{name[:100]}.pygent-link.tmp"
                if _stat_at(tmp, dir_fd) is not None:
                    os.unlink(tmp, dir_fd=dir_fd)
                os.symlink(target, tmp, dir_fd=dir_fd)
                os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return
        data = self.view.read_bytes(rel)
        st_s = self.view.lstat(rel)
        mode = stat.S_IMODE(st_s.st_mode) & 0o777 if st_s is not None else None
        st_f = self.folder.lstat(rel)
        if st_f is not None and stat.S_ISLNK(st_f.st_mode):
            self.folder.remove(rel)  # a link replaced by a file
        self.folder.write(rel, data, mode=mode)

    def _check_link(self, rel: str, target: str) -> None:
        parent = rel.rsplit("/", 1)[0].split("/") if "/" in rel else []
        if os.path.isabs(target):
            raise PathError(f"{rel!r} links to {target}, outside the folder")
        Workspace._normalise(parent, target.split("/"), shown=rel)  # raises if it escapes

    def discard(self, paths: Iterable[str] | None = None) -> list[str]:
        """Undo the agent's changes: the folder's version is written back through the
        sandbox (one round trip), files the folder lacks are removed."""
        with self._lock:
            chosen = self._select(paths)[0] if paths is not None else self.changes(diffs=False)
            puts: list[tuple[str, bytes, int]] = []
            links: list[tuple[str, str]] = []
            removes: list[str] = []
            dirs: set[str] = set()
            for change in chosen:
                rel = change.path
                path = self.layers.lower / rel
                st = lstat_or_none(path)
                if st is None:
                    removes.append(rel)
                    continue
                parent = os.path.dirname(rel)
                if parent and self.view.lstat(parent) is None:
                    dirs.add(parent)
                if stat.S_ISLNK(st.st_mode):
                    links.append((rel, os.readlink(path)))
                    continue
                data = read_layer_file(path)
                if data is None:
                    continue
                if self.view.lstat(rel) is not None and change.kind == "symlink":
                    removes.append(rel)
                puts.append((rel, data, stat.S_IMODE(st.st_mode)))
            if not (puts or links or removes):
                return []
            writer = self.view.writer
            if writer is None:
                raise PathError("this session has no sandbox to write through")
            try:
                writer.apply(puts, links, removes, sorted(dirs))
            except (OSError, PygentError) as exc:
                log.warning("cannot restore files in the sandbox: %s", exc)
                return []
            for rel in [p[0] for p in puts] + [lk[0] for lk in links]:
                self._buffers.pop(rel, None)
            return [c.path for c in chosen]


def _upper_kind(path: Path) -> str | None:
    st = lstat_or_none(path)
    if st is None or is_whiteout(st):
        return None
    return entry_kind(st) or "dir"


def _stat_at(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _compare(
    view: OverlayWorkspace, rel: str, ust: os.stat_result, lpath: Path, lst: os.stat_result
) -> _Delta | None:
    """How an upper entry differs from the folder's entry of the same path, if at all."""
    ukind, lkind = entry_kind(ust), entry_kind(lst)
    assert ukind is not None
    if lkind != ukind:
        return _Delta(rel, "modified", ukind)
    if ukind == "symlink":
        if view.upper_readlink(rel) != os.readlink(lpath):
            return _Delta(rel, "modified", ukind)
        return None
    old, new = stat.S_IMODE(lst.st_mode), stat.S_IMODE(ust.st_mode)
    same = ust.st_size == lst.st_size and view.upper_bytes(rel) == read_layer_file(lpath)
    if same and old == new:
        return None
    return _Delta(rel, "modified", ukind, old, new)


__all__ = ["CowSync"]
