"""Workspace checkpoints: content-addressed snapshots of the workspace's files, to undo an agent's damage.

The agent takes one at the start of each turn (ADVERSARIAL G10), so an approved
``rm -rf *`` or ``git reset --hard`` can be undone with :meth:`Checkpoints.restore`.
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
from collections.abc import Iterator
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
    _newest: tuple[str, dict[str, list[int | str]]] | None = field(
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

            return LayerCheckpoints(workspace.layers.checkpoints, workspace, **limits)
        ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        key = hashlib.sha256(str(ws.root).encode()).hexdigest()[:16]
        return cls(Path(data_dir) / "checkpoints" / key, ws, **limits)

    @property
    def _ws(self) -> Workspace:
        assert isinstance(self.workspace, Workspace)
        return self.workspace

    # --- taking ---------------------------------------------------------------------

    def _walk(self) -> Iterator[tuple[str, os.stat_result]]:
        """Regular files of the workspace, skipping SKIP_DIRS; links are not followed."""
        stack = [""]
        root = self._ws.root
        while stack:
            rel = stack.pop()
            try:
                entries = list(os.scandir(root / rel if rel else root))
            except OSError:
                continue
            for entry in entries:
                sub = f"{rel}/{entry.name}" if rel else entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if entry.name not in SKIP_DIRS:
                        stack.append(sub)
                elif stat.S_ISREG(st.st_mode):
                    yield sub, st

    def checkpoint(self, label: str = "") -> str | None:
        """Save the workspace's files; returns the checkpoint id, or None when it was
        skipped (too many files or bytes; see :attr:`last_skip_reason`)."""
        started = time.monotonic()
        files: list[tuple[str, os.stat_result]] = []
        total = 0
        for rel, st in self._walk():
            files.append((rel, st))
            total += st.st_size
            if len(files) > self.max_files:
                self._skip(f"the workspace has more than {self.max_files} files")
                return None
        if total > self.max_bytes:
            self._skip(f"the workspace holds {total >> 20} MiB (limit {self.max_bytes >> 20} MiB)")
            return None
        objects = self.store / "objects"
        objects.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked():
            previous = self._latest_manifest()
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
            ident = _new_id(self._manifests())
            record = {
                "id": ident,
                "created": time.time(),
                "label": label,
                "workspace": str(self._ws.root),
                "files": manifest,
            }
            _write_atomic(self.store / f"{ident}.json", json.dumps(record).encode())
            self._newest = (ident, manifest)
            self._prune()
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

    def _latest_manifest(self) -> dict[str, list[int | str]]:
        manifests = self._manifests()
        cached = self._newest
        if cached is not None and manifests and manifests[-1].stem == cached[0]:
            return cached[1]  # ours, and no other process wrote one since
        for path in reversed(manifests):
            try:
                return self._load(path.stem)["files"]
            except CheckpointError:
                continue
        return {}

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

    def restore(self, ident: str, *, delete_new: bool = False) -> RestoreReport:
        """Put the workspace's files back as they were at checkpoint ``ident``.

        Files deleted or changed since are rewritten (atomically, never through a
        link); files that did not exist then are listed in ``extra`` and removed only
        with ``delete_new=True``.
        """
        files = self._load(ident)["files"]
        restored, failed = [], []
        unchanged = 0
        objects = self.store / "objects"
        for rel, (size, mtime, mode, digest) in sorted(files.items()):
            st = self._ws.lstat(rel)
            if (
                st is not None
                and stat.S_ISREG(st.st_mode)
                and st.st_size == size
                and (st.st_mtime_ns == mtime or self._digest(rel) == digest)
            ):
                unchanged += 1
                continue
            try:
                data = (objects / str(digest)[:2] / str(digest)).read_bytes()
                if st is not None and not stat.S_ISREG(st.st_mode):
                    self._ws.remove(rel)  # a link or fifo put where the file was
                self._ws.write(rel, data, mode=int(mode))
                os.utime(
                    self._ws.host_path(rel), ns=(int(mtime), int(mtime)), follow_symlinks=False
                )
                restored.append(rel)
            except (OSError, PygentError) as exc:
                log.warning("could not restore %s: %s", rel, exc)
                failed.append(rel)
        extra = sorted(rel for rel, _ in self._walk() if rel not in files)
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
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)


__all__ = ["CheckpointError", "CheckpointInfo", "Checkpoints", "RestoreReport", "SKIP_DIRS"]
