"""Checkpoints of a copy-on-write workspace: its upper layer only, so a turn's costs what it changed.

A :class:`LayerCheckpoints` is a :class:`~pygent.checkpoints.Checkpoints` whose manifest
lists the entries of the session's upper layer (see :mod:`pygent.runtime.overlay`): its
files (size, mtime, mode, SHA-256, with one content-addressed copy each in ``objects/``),
links, whiteouts and opaque folders. A file whose size and mtime match the previous
manifest is not read again, and nothing of the folder below is read at all: no
file-count cut-off. Restoring makes the merged view what it was, writing through the
sandbox (the layers of a mounted overlay must not be changed underneath it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from pygent.checkpoints import (
    SKIP_DIRS,
    CheckpointError,
    Checkpoints,
    RestoreReport,
    _new_id,
    _write_atomic,
)
from pygent.errors import PygentError
from pygent.runtime.overlay import (
    OverlayWorkspace,
    entry_kind,
    is_opaque,
    is_whiteout,
    lower_files,
    lstat_or_none,
    read_layer_file,
)

log = logging.getLogger(__name__)


@dataclass
class _LayerState:
    files: dict[str, os.stat_result] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    opaque: set[str] = field(default_factory=set)


def scan_layer(upper: Path) -> _LayerState:
    """Every entry of an upper layer (leaving out SKIP_DIRS): O(what changed)."""
    state = _LayerState()
    stack = [""]
    while stack:
        rel_dir = stack.pop()
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
            if is_whiteout(st):
                state.gone.add(rel)
            elif stat.S_ISDIR(st.st_mode):
                if entry.name in SKIP_DIRS:
                    continue
                if is_opaque(entry.path):
                    state.opaque.add(rel)
                stack.append(rel)
            elif stat.S_ISREG(st.st_mode):
                state.files[rel] = st
            elif stat.S_ISLNK(st.st_mode):
                with contextlib.suppress(OSError):
                    state.links[rel] = os.readlink(entry.path)
    return state


def _hidden(rel: str, gone: set[str] | list[str], opaque: set[str] | list[str]) -> bool:
    """Whether the folder's ``rel`` is hidden by a whiteout or an opaque folder."""
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if prefix in gone or (i < len(parts) and prefix in opaque):
            return True
    return False


@dataclass
class LayerCheckpoints(Checkpoints):
    """Checkpoints of a copy-on-write workspace: its upper layer only.

    A manifest lists the upper layer's files (size, mtime, mode, SHA-256), links,
    whiteouts and opaque folders; a file whose size and mtime match the previous
    manifest is not read again. Restoring writes through the sandbox.
    """

    @property
    def _view(self) -> OverlayWorkspace:
        assert isinstance(self.workspace, OverlayWorkspace)
        return self.workspace

    def checkpoint(self, label: str = "") -> str | None:
        started = time.monotonic()
        state = scan_layer(self._view.layers.upper)
        objects = self.store / "objects"
        objects.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked():
            previous = self._latest_manifest()
            manifest: dict[str, list[int | str]] = {}
            self.skipped = []
            for rel, st in state.files.items():
                if st.st_size > self.max_file_bytes:
                    self.skipped.append(rel)
                    continue
                known = previous.get(rel)
                if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
                    manifest[rel] = [st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode), known[3]]
                    continue
                data = self._view.upper_bytes(rel)
                if data is None:
                    continue  # replaced while we looked
                sha = hashlib.sha256(data).hexdigest()
                self._store_object(objects, sha, data)
                manifest[rel] = [len(data), st.st_mtime_ns, stat.S_IMODE(st.st_mode), sha]
            ident = _new_id(self._manifests())
            record = {
                "id": ident,
                "created": time.time(),
                "label": label,
                "workspace": str(self._view.layers.lower),
                "layer": "upper",
                "files": manifest,
                "links": state.links,
                "gone": sorted(state.gone),
                "opaque": sorted(state.opaque),
            }
            _write_atomic(self.store / f"{ident}.json", json.dumps(record).encode())
            self._newest = (ident, manifest)
            self._prune()
        self.last_skip_reason = ""
        log.debug("layer checkpoint %s: %d entries in %.1f ms", ident, len(manifest),
                  (time.monotonic() - started) * 1000)
        return ident

    def restore(self, ident: str, *, delete_new: bool = False) -> RestoreReport:
        """Make the merged view what it was at checkpoint ``ident``: O(entries of the
        upper layer then and now). Files made since are listed in ``extra`` and
        removed only with ``delete_new=True``."""
        record = self._load(ident)
        files: dict[str, list] = record["files"]
        links: dict[str, str] = dict(record.get("links") or {})
        gone = set(record.get("gone") or ())
        opaque = set(record.get("opaque") or ())
        view = self._view
        lower = view.layers.lower
        now = scan_layer(view.layers.upper)
        paths = set(files) | set(links) | gone | set(now.files) | set(now.links) | now.gone
        for rel in gone | opaque | now.gone | now.opaque:
            paths.update(sub for sub, _ in lower_files(lower, rel))
        puts: list[tuple[str, bytes, int]] = []
        new_links: list[tuple[str, str]] = []
        removes: list[str] = []
        dirs: set[str] = set()
        restored: list[str] = []
        extra: list[str] = []
        failed: list[str] = []
        unchanged = 0
        objects = self.store / "objects"
        for rel in sorted(paths):
            if any(part in SKIP_DIRS for part in rel.split("/")[:-1]):
                continue
            want = self._wanted(rel, files, links, gone, opaque)
            have = view.lstat(rel)
            if want is None:
                if have is not None and entry_kind(have):
                    extra.append(rel)
                continue
            kind, payload, mode = want
            try:
                if kind == "link":
                    if have is not None and stat.S_ISLNK(have.st_mode) and view.readlink(rel) == payload:
                        unchanged += 1
                        continue
                    new_links.append((rel, str(payload)))
                else:
                    data = (
                        (objects / str(payload)[:2] / str(payload)).read_bytes()
                        if kind == "object"
                        else read_layer_file(lower / rel)
                    )
                    if data is None:
                        raise CheckpointError(f"{rel}: the folder's file cannot be read")
                    if (
                        have is not None
                        and stat.S_ISREG(have.st_mode)
                        and stat.S_IMODE(have.st_mode) == mode
                        and have.st_size == len(data)
                        and view.read_bytes(rel) == data
                    ):
                        unchanged += 1
                        continue
                    if have is not None and stat.S_ISLNK(have.st_mode):
                        removes.append(rel)
                    puts.append((rel, data, int(mode)))
            except (OSError, PygentError) as exc:
                log.warning("could not restore %s: %s", rel, exc)
                failed.append(rel)
                continue
            parent = os.path.dirname(rel)
            if parent and view.lstat(parent) is None:
                dirs.add(parent)
            restored.append(rel)
        removed = extra if delete_new else []
        if puts or new_links or removes or removed:
            writer = view.writer
            if writer is None:
                raise CheckpointError("this workspace has no sandbox to restore through")
            try:
                writer.apply(puts, new_links, removes + removed, sorted(dirs))
            except (OSError, PygentError) as exc:
                raise CheckpointError(f"checkpoint {ident} could not be restored: {exc}") from exc
        return RestoreReport(
            tuple(restored), unchanged, tuple(extra), tuple(removed), tuple(failed)
        )

    def _wanted(
        self,
        rel: str,
        files: dict[str, list],
        links: dict[str, str],
        gone: set[str],
        opaque: set[str],
    ) -> tuple[str, str, int] | None:
        """What ``rel`` was at the checkpoint: ("object", digest, mode), ("lower", "",
        mode), ("link", target, 0), or None (it did not exist)."""
        if rel in files:
            return "object", str(files[rel][3]), int(files[rel][2])
        if rel in links:
            return "link", links[rel], 0
        if _hidden(rel, gone, opaque):
            return None
        st = lstat_or_none(self._view.layers.lower / rel)
        if st is None:
            return None
        if stat.S_ISLNK(st.st_mode):
            return "link", os.readlink(self._view.layers.lower / rel), 0
        if stat.S_ISREG(st.st_mode):
            return "lower", "", stat.S_IMODE(st.st_mode)
        return None


__all__ = ["LayerCheckpoints", "scan_layer"]
