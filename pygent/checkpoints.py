"""Workspace checkpoints: content-addressed snapshots of the workspace's files, to undo an agent's damage.

The agent takes one before a turn's first tool call that may change files, and one as
that turn ends (ADVERSARIAL G10; :mod:`pygent.timeline` keeps which are whose), so an
approved ``rm -rf *`` or ``git reset --hard`` can be undone. A checkpoint that finds
nothing changed since the newest one reuses it (no manifest written).
A checkpoint is a manifest (path -> size, mtime, mode, SHA-256) plus one copy of each
distinct content in ``objects/``; files whose size and mtime did not change since the
previous checkpoint are not read again, so an unchanged workspace costs one ``lstat``
per file. Everything lives under Pygent's data directory, never in the workspace
(the agent can delete the workspace, not the checkpoints). Files are read through
:class:`~pygent.runtime.workspace.Workspace` (links are never followed) and copied,
not hard-linked (a hard link would change with the file). Disk use is bounded: huge
workspaces are skipped (and say so), regenerable folders (``node_modules``,
``.venv``...) are left out, and only the newest checkpoints are kept. A copy-on-write
workspace's checkpoints save its upper layer only, with no size cut-off
(:class:`pygent.layer_checkpoints.LayerCheckpoints`).
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pygent.errors import PathError, PygentError
from pygent.runtime.workspace import Workspace

log = logging.getLogger(__name__)

#: Folders not saved: caches and environments a command can rebuild.
SKIP_DIRS = frozenset(
    "node_modules .venv venv __pycache__ .mypy_cache .pytest_cache .ruff_cache .tox".split()
)
_ID = re.compile(r"^[0-9]{8}T[0-9]{6}\.[0-9]{6}-[0-9a-f]{4}$")
#: Manifests beyond ``keep`` collected before old ones (and unused objects) are removed.
PRUNE_SLACK = 5
_STAMP = "%Y%m%dT%H%M%S.%f"
#: A folder changed this recently (ns) before a walk may change again within the same
#: tick of its file system's clock without its mtime moving: it is not trusted.
RACY_NS = 2_000_000_000
#: One saved or present entry: ("file", size, mtime_ns, mode, sha256 or "" when not
#: read), ("link", target) or ("gone",) (a copy-on-write whiteout).
Entry = tuple[Any, ...]


class CheckpointError(PygentError):
    """A checkpoint could not be found, read or restored."""


@dataclass(frozen=True)
class CheckpointInfo:
    """One saved checkpoint."""

    id: str
    created: float
    files: int
    bytes: int
    label: str = ""


@dataclass(frozen=True)
class RestoreReport:
    """What :meth:`Checkpoints.restore` did: files rewritten, files already as saved,
    files that exist now but not in the checkpoint (left alone unless asked), failures."""

    restored: tuple[str, ...] = ()
    unchanged: int = 0
    extra: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


@dataclass
class Checkpoints:
    """The checkpoints of one workspace.

    Args:
        store: a directory of Pygent's data (one per workspace; created when needed).
        workspace: the workspace (a folder or its :class:`Workspace`).
        keep: how many checkpoints are kept (oldest removed first).
        max_files: workspaces with more regular files are not checkpointed.
        max_bytes: nor are those whose files add up to more than this.
        max_file_bytes: larger single files are left out (listed in ``skipped``).
    """

    store: Path
    workspace: Workspace | Path
    keep: int = 20
    max_files: int = 20_000
    max_bytes: int = 256 * 1024 * 1024
    max_file_bytes: int = 32 * 1024 * 1024
    skipped: list[str] = field(default_factory=list)  # paths left out of the last checkpoint
    last_skip_reason: str = ""  # why the last checkpoint() returned None
    _newest: tuple[str, dict[str, Any]] | None = field(
        default=None, init=False, repr=False
    )
    #: The folders whose files the last walk counted past ``max_files``: path ->
    #: (device, inode, mtime_ns). While none of them changed, none gained or lost an
    #: entry, so they still hold too many files: the next checkpoint skips without a walk.
    _too_many: dict[str, tuple[int, int, int]] | None = field(
        default=None, init=False, repr=False
    )

    def __post_init__(self) -> None:
        self.store = Path(self.store)
        if not isinstance(self.workspace, Workspace):
            self.workspace = Workspace(self.workspace)

    @classmethod
    def for_workspace(
        cls, data_dir: Path, workspace: Workspace | Path, **limits: Any
    ) -> Checkpoints:
        """The checkpoints of ``workspace`` under ``data_dir/checkpoints/<hash of its path>``;
        those of a copy-on-write workspace snapshot its upper layer only, and live beside
        it (removed with the session): :class:`pygent.layer_checkpoints.LayerCheckpoints`."""
        from pygent.runtime.overlay import OverlayWorkspace

        if isinstance(workspace, OverlayWorkspace):
            from pygent.layer_checkpoints import LayerCheckpoints

            # Its manifests list the upper layer only (small): keep many more turns.
            return LayerCheckpoints(
                workspace.layers.checkpoints, workspace, **{"keep": 200, **limits}
            )
        ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        key = hashlib.sha256(str(ws.root).encode()).hexdigest()[:16]
        return cls(Path(data_dir) / "checkpoints" / key, ws, **limits)

    @property
    def _ws(self) -> Workspace:
        assert isinstance(self.workspace, Workspace)
        return self.workspace

    # --- taking ---------------------------------------------------------------------

    def _walk(
        self, folders: dict[str, os.stat_result] | None = None
    ) -> Iterator[tuple[str, os.stat_result]]:
        """Regular files of the workspace, skipping SKIP_DIRS; links are not followed.
        ``folders`` receives each folder's lstat as it was before its listing."""
        if folders is not None:
            with contextlib.suppress(OSError):
                folders[""] = os.lstat(self._ws.root)
        for rel, _path, st in walk_tree(self._ws.root):
            if stat.S_ISREG(st.st_mode):
                yield rel, st
            elif folders is not None and stat.S_ISDIR(st.st_mode):
                folders[rel] = st

    def _remember_too_many(self, files: list[tuple[str, os.stat_result]],
                           folders: dict[str, os.stat_result], walk_ns: int) -> None:
        """Keep the folders holding the files counted (their stat from before they were
        listed), unless one changed too recently to be sure of (RACY_NS)."""
        kept: dict[str, tuple[int, int, int]] = {}
        for rel, _st in files:
            parent = rel.rpartition("/")[0]
            if parent in kept:
                continue
            st = folders.get(parent)
            if st is None or st.st_mtime_ns >= walk_ns - RACY_NS:
                self._too_many = None
                return
            kept[parent] = (st.st_dev, st.st_ino, st.st_mtime_ns)
        self._too_many = kept

    def _still_too_many(self) -> bool:
        """Whether the folders of the last over-the-limit walk are all as they were (one
        lstat a folder, not one a file; a content change cannot add a file)."""
        known = self._too_many
        if not known:
            return False
        root = self._ws.root
        for rel, (dev, ino, mtime) in known.items():
            try:
                st = os.lstat(root / rel if rel else root)
            except OSError:
                self._too_many = None
                return False
            if (st.st_dev, st.st_ino, st.st_mtime_ns) != (dev, ino, mtime) or not stat.S_ISDIR(
                st.st_mode
            ):
                self._too_many = None
                return False
        return True

    def checkpoint(self, label: str = "") -> str | None:
        """Save the workspace's files; returns the checkpoint id, or None when it was
        skipped (too many files or bytes; see :attr:`last_skip_reason`)."""
        started = time.monotonic()
        too_many = f"the workspace has more than {self.max_files} files"
        if self._still_too_many():
            self._skip(too_many)
            return None
        walk_ns = time.time_ns()
        files: list[tuple[str, os.stat_result]] = []
        folders: dict[str, os.stat_result] = {}
        total = 0
        for rel, st in self._walk(folders):
            files.append((rel, st))
            total += st.st_size
            if len(files) > self.max_files:
                self._remember_too_many(files, folders, walk_ns)
                self._skip(too_many)
                return None
        self._too_many = None
        if total > self.max_bytes:
            self._skip(f"the workspace holds {total >> 20} MiB (limit {self.max_bytes >> 20} MiB)")
            return None
        objects = self.store / "objects"
        objects.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked():
            newest = self._latest_record()
            previous = newest.get("files", {})
            manifest: dict[str, list[int | str]] = {}
            self.skipped = []
            for rel, st in files:
                if st.st_size > self.max_file_bytes:
                    self.skipped.append(rel)
                    continue
                known = previous.get(rel)
                if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
                    # Unchanged since the newest checkpoint, whose objects are never pruned.
                    manifest[rel] = [st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode), known[3]]
                    continue
                try:
                    data = self._ws.read_bytes(rel)
                except (PathError, OSError):
                    continue  # removed or replaced while we walked: not ours to save
                digest = hashlib.sha256(data).hexdigest()
                self._store_object(objects, digest, data)
                manifest[rel] = [len(data), st.st_mtime_ns, stat.S_IMODE(st.st_mode), digest]
            ident = self._save_record(newest, label, {"workspace": str(self._ws.root)},
                                      {"files": manifest})
        self.last_skip_reason = ""
        log.debug(
            "checkpoint %s: %d files in %.1f ms",
            ident,
            len(manifest),
            (time.monotonic() - started) * 1000,
        )
        return ident

    def _skip(self, why: str) -> None:
        self.last_skip_reason = f"no checkpoint: {why}"

    @staticmethod
    def _store_object(objects: Path, digest: str, data: bytes) -> None:
        target = objects / digest[:2] / digest
        if target.exists():
            return
        target.parent.mkdir(exist_ok=True, mode=0o700)
        _write_atomic(target, data)

    # --- reading --------------------------------------------------------------------

    def _manifests(self) -> list[Path]:
        if not self.store.is_dir():
            return []
        return sorted(p for p in self.store.glob("*.json") if _ID.match(p.stem))

    def _load(self, ident: str) -> dict:
        if not _ID.match(ident):
            raise CheckpointError(f"{ident!r} is not a checkpoint id")
        try:
            record = json.loads((self.store / f"{ident}.json").read_bytes())
        except FileNotFoundError:
            raise CheckpointError(
                f"no checkpoint {ident} for {self._ws.root}",
                hint="list them with Checkpoints.list()",
            ) from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {ident} cannot be read: {exc}") from None
        if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
            raise CheckpointError(f"checkpoint {ident} is damaged")
        return record

    def has(self, ident: str) -> bool:
        """Whether checkpoint ``ident`` is still kept (old ones are pruned)."""
        return bool(_ID.match(ident)) and (self.store / f"{ident}.json").is_file()

    def _latest_record(self) -> dict[str, Any]:
        """The newest readable checkpoint's record ({} when there is none)."""
        manifests = self._manifests()
        cached = self._newest
        if cached is not None and manifests and manifests[-1].stem == cached[0]:
            return cached[1]  # ours, and no other process wrote one since
        for path in reversed(manifests):
            try:
                return self._load(path.stem)
            except CheckpointError:
                continue
        return {}

    def _latest_manifest(self) -> dict[str, list[int | str]]:
        return dict(self._latest_record().get("files", {}))

    def _save_record(
        self, newest: dict[str, Any], label: str, about: dict[str, Any], content: dict[str, Any]
    ) -> str:
        """Write a checkpoint of ``content`` (files, and a layer's links...) and return its
        id; when nothing changed since the newest checkpoint, that one's id instead: a
        turn that changed nothing costs the walk, not a manifest (called locked)."""
        if newest.get("id") and all(newest.get(k) == v for k, v in content.items()):
            ident = str(newest["id"])
            self._newest = (ident, newest)
            return ident
        ident = _new_id(self._manifests())
        record = {"id": ident, "created": time.time(), "label": label, **about, **content}
        _write_atomic(self.store / f"{ident}.json", json.dumps(record).encode())
        self._newest = (ident, record)
        self._prune()
        return ident

    def list(self) -> list[CheckpointInfo]:
        """The checkpoints, oldest first."""
        out = []
        for path in self._manifests():
            try:
                record = self._load(path.stem)
            except CheckpointError:
                continue
            files = record["files"]
            out.append(
                CheckpointInfo(
                    record["id"],
                    float(record.get("created", 0)),
                    len(files),
                    sum(int(v[0]) for v in files.values()),
                    str(record.get("label", "")),
                )
            )
        return out

    # --- restoring ------------------------------------------------------------------

    def restore(
        self, ident: str, *, delete_new: bool = False, keep: Collection[str] = ()
    ) -> RestoreReport:
        """Put the workspace's files back as they were at checkpoint ``ident``.

        Files deleted or changed since are rewritten (atomically, never through a
        link); files that did not exist then are listed in ``extra`` and removed only
        with ``delete_new=True``. Paths in ``keep`` are left as they are (a rewind
        keeps what the user edited). Every saved copy needed is read and checked
        against its digest before the first file is written: a damaged store raises
        :class:`CheckpointError` and leaves the workspace untouched.
        """
        files = self._load(ident)["files"]
        unchanged = 0
        plan: list[tuple[str, bytes, int, int, bool]] = []
        # One walk (scandir, links not followed) says what is there now; only files that
        # differ go through the workspace's careful (per-component) path handling.
        now = dict(self._walk())
        for rel, (size, mtime, mode, digest) in sorted(files.items()):
            if rel in keep:
                continue
            st = now.get(rel) or self._ws.lstat(rel)
            if (
                st is not None
                and stat.S_ISREG(st.st_mode)
                and st.st_size == size
                and (st.st_mtime_ns == mtime or self._digest(rel) == digest)
            ):
                unchanged += 1
                continue
            data = self.object_bytes(ident, rel, str(digest))
            plan.append((rel, data, int(mode), int(mtime), st is not None))
        restored, failed = [], []
        for rel, data, mode, mtime, present in plan:
            try:
                if present:
                    # Removed first (a link or fifo put where the file was, or the changed
                    # file): ext4 flushes a file renamed OVER another (auto_da_alloc), ~2 ms
                    # each; the saved copy stays in the store if we stop in between.
                    self._ws.remove(rel)
                self._ws.write(rel, data, mode=mode)
                os.utime(self._ws.host_path(rel), ns=(mtime, mtime), follow_symlinks=False)
                restored.append(rel)
            except (OSError, PygentError) as exc:
                log.warning("could not restore %s: %s", rel, exc)
                failed.append(rel)
        extra = sorted(rel for rel in now if rel not in files and rel not in keep)
        removed = []
        if delete_new:
            for rel in extra:
                try:
                    self._ws.remove(rel)
                except (PathError, OSError) as exc:
                    log.warning("could not remove %s: %s", rel, exc)
                    failed.append(rel)
                else:
                    removed.append(rel)
        return RestoreReport(
            tuple(restored), unchanged, tuple(extra), tuple(removed), tuple(failed)
        )

    def object_bytes(self, ident: str, rel: str, digest: str) -> bytes:
        """The saved content of ``rel`` in checkpoint ``ident``, checked against its digest."""
        path = self.store / "objects" / digest[:2] / digest
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CheckpointError(
                f"checkpoint {ident} is damaged: the saved copy of {rel} cannot be read ({exc.strerror})"
            ) from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise CheckpointError(f"checkpoint {ident} is damaged: the saved copy of {rel} was altered")
        return data

    def verify(self, ident: str) -> None:
        """Check that checkpoint ``ident`` can be restored: its manifest reads and every
        saved copy it needs is there with the right size (a cheap check before anything
        is changed); raises :class:`CheckpointError` naming what is wrong."""
        record = self._load(ident)
        objects = self.store / "objects"
        for rel, entry in record["files"].items():
            try:
                size, digest = int(entry[0]), str(entry[3])
                ok = os.stat(objects / digest[:2] / digest).st_size == size
            except (OSError, ValueError, TypeError, IndexError):
                ok = False
            if not ok:
                raise CheckpointError(
                    f"checkpoint {ident} is damaged: the saved copy of {rel} is missing or cut short"
                )

    # --- comparing ------------------------------------------------------------------

    def entries(self, ident: str) -> dict[str, Entry]:
        """What checkpoint ``ident`` saved: path -> ("file", size, mtime, mode, digest)."""
        return {
            rel: ("file", int(v[0]), int(v[1]), int(v[2]), str(v[3]))
            for rel, v in self._load(ident)["files"].items()
        }

    def current_entries(self) -> dict[str, Entry]:
        """The workspace now, in the form of :meth:`entries` (no digests: one lstat a file)."""
        return {
            rel: ("file", st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode), "")
            for rel, st in self._walk()
        }

    def change_kind(self, rel: str, before: Entry | None, after: Entry | None) -> str:
        """How ``rel`` changed between two entries: added, deleted or modified."""
        if before is None:
            return "added"
        if after is None:
            return "deleted"
        return "modified"

    def diff(
        self, before: dict[str, Entry], after: dict[str, Entry]
    ) -> builtins.list[tuple[str, str]]:
        """(path, added|modified|deleted) for every path that differs, sorted."""
        out = []
        for rel in sorted(set(before) | set(after)):
            a, b = before.get(rel), after.get(rel)
            if not same_entry(a, b):
                out.append((rel, self.change_kind(rel, a, b)))
        return out

    def _digest(self, rel: str) -> str:
        try:
            return hashlib.sha256(self._ws.read_bytes(rel)).hexdigest()
        except (PathError, OSError):
            return ""

    # --- bookkeeping ----------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer (checkpoint or prune) at a time per store, across processes."""
        self.store.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.store / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _prune(self) -> None:
        """Keep the newest ``keep`` checkpoints and the objects they use (in batches:
        collecting unused objects reads every manifest)."""
        manifests = self._manifests()
        if len(manifests) <= self.keep + PRUNE_SLACK:
            return
        for old in manifests[: max(0, len(manifests) - self.keep)]:
            with contextlib.suppress(OSError):
                old.unlink()
        used: set[str] = set()
        for path in self._manifests():
            with contextlib.suppress(CheckpointError):
                used.update(str(v[3]) for v in self._load(path.stem)["files"].values())
        objects = self.store / "objects"
        for sub in objects.iterdir() if objects.is_dir() else ():
            for obj in sub.iterdir():
                if obj.name not in used:
                    with contextlib.suppress(OSError):
                        obj.unlink()

    def disk_usage(self) -> int:
        """Bytes the store takes (manifests and objects)."""
        total = 0
        for dirpath, _dirs, names in os.walk(self.store):
            for name in names:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_size
        return total


def same_entry(a: Entry | None, b: Entry | None) -> bool:
    """Whether two entries are the same content: by digest when both have one, else by
    size, mtime and mode (what an unread file can be compared by)."""
    if a is None or b is None or a[0] != b[0]:
        return a is None and b is None
    if a[0] != "file":
        return a == b
    if a[4] and b[4]:
        return bool(a[4] == b[4] and a[3] == b[3])
    return bool(a[1] == b[1] and a[2] == b[2] and a[3] == b[3])


def walk_tree(root: Path) -> Iterator[tuple[str, str, os.stat_result]]:
    """Every entry under ``root`` as (relative path, host path, lstat), folders included
    (before their contents), never descending into SKIP_DIRS or following links: the one
    tree walk of both checkpoint kinds (a workspace, or an upper layer)."""
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(root / rel if rel else root))
        except OSError:
            continue  # removed while we walked, or unreadable: nothing of ours to save
        for entry in entries:
            sub = f"{rel}/{entry.name}" if rel else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            yield sub, entry.path, st
            if stat.S_ISDIR(st.st_mode) and entry.name not in SKIP_DIRS:
                stack.append(sub)


def _new_id(existing: list[Path]) -> str:
    """A sortable id: UTC time to the microsecond, always after the newest existing one."""
    now = datetime.now(timezone.utc)
    if existing:  # the clock went back, or two checkpoints in one microsecond
        last = datetime.strptime(existing[-1].stem[:22], _STAMP).replace(tzinfo=timezone.utc)
        now = max(now, last + timedelta(microseconds=1))
    return f"{now.strftime(_STAMP)}-{secrets.token_hex(2)}"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        # A full disk must not leave half-written temp files behind in the store.
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "Checkpoints",
    "RestoreReport",
    "SKIP_DIRS",
    "Entry",
    "same_entry",
    "walk_tree",
]
