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

import builtins
import contextlib
import hashlib
import logging
import os
import stat
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from pygent.checkpoints import (
    SKIP_DIRS,
    CheckpointError,
    Checkpoints,
    Entry,
    RestoreReport,
    walk_tree,
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
    for rel, path, st in walk_tree(upper):
        if is_whiteout(st):
            state.gone.add(rel)
        elif stat.S_ISDIR(st.st_mode):
            if rel.rsplit("/", 1)[-1] not in SKIP_DIRS and is_opaque(path):
                state.opaque.add(rel)
        elif stat.S_ISREG(st.st_mode):
            state.files[rel] = st
        elif stat.S_ISLNK(st.st_mode):
            with contextlib.suppress(OSError):
                state.links[rel] = os.readlink(path)
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
            newest = self._latest_record()
            previous = newest.get("files", {})
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
            ident = self._save_record(
                newest, label, {"workspace": str(self._view.layers.lower), "layer": "upper"},
                {"files": manifest, "links": state.links, "gone": sorted(state.gone),
                 "opaque": sorted(state.opaque)},
            )
        self.last_skip_reason = ""
        log.debug("layer checkpoint %s: %d entries in %.1f ms", ident, len(manifest),
                  (time.monotonic() - started) * 1000)
        return ident

    def restore(
        self, ident: str, *, delete_new: bool = False, keep: Collection[str] = ()
    ) -> RestoreReport:
        """Make the merged view what it was at checkpoint ``ident``: O(entries of the
        upper layer then and now). Files made since are listed in ``extra`` and
        removed only with ``delete_new=True``; paths in ``keep`` are left alone. A
        damaged saved copy raises :class:`CheckpointError` before anything is written."""
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
        for rel in sorted(paths):
            if rel in keep or any(part in SKIP_DIRS for part in rel.split("/")[:-1]):
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
                        self.object_bytes(ident, rel, str(payload))
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
            except CheckpointError:
                raise  # a damaged store: nothing has been written yet
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

    def entries(self, ident: str) -> dict[str, Entry]:
        """The upper layer at checkpoint ``ident``: files, links and whiteouts."""
        record = self._load(ident)
        out: dict[str, Entry] = {
            rel: ("file", int(v[0]), int(v[1]), int(v[2]), str(v[3]))
            for rel, v in record["files"].items()
        }
        out.update((rel, ("link", target)) for rel, target in (record.get("links") or {}).items())
        out.update((rel, ("gone",)) for rel in record.get("gone") or ())
        return out

    def current_entries(self) -> dict[str, Entry]:
        """The upper layer now (no digests), in the form of :meth:`entries`."""
        state = scan_layer(self._view.layers.upper)
        out: dict[str, Entry] = {
            rel: ("file", st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode), "")
            for rel, st in state.files.items()
        }
        out.update((rel, ("link", target)) for rel, target in state.links.items())
        out.update((rel, ("gone",)) for rel in state.gone)
        return out

    def change_kind(self, rel: str, before: Entry | None, after: Entry | None) -> str:
        """An upper-layer entry absent on one side means the folder's file shows there."""
        in_lower = lstat_or_none(self._view.layers.lower / rel) is not None
        gone_before = before is not None and before[0] == "gone"
        gone_after = after is not None and after[0] == "gone"
        if gone_after or (after is None and not in_lower):
            return "deleted"
        if gone_before or (before is None and not in_lower):
            return "added"
        return "modified"

    def diff(
        self, before: dict[str, Entry], after: dict[str, Entry]
    ) -> builtins.list[tuple[str, str]]:
        """As :meth:`Checkpoints.diff`, a whiteout over a folder's directory shown as the
        files it hides (or shows again), as the change set shows them."""
        out: builtins.list[tuple[str, str]] = []
        lower = self._view.layers.lower
        for rel, kind in super().diff(before, after):
            gone = "gone" in ((after.get(rel) or ("",))[0], (before.get(rel) or ("",))[0])
            st = lstat_or_none(lower / rel) if gone else None
            if st is not None and stat.S_ISDIR(st.st_mode) and kind in ("added", "deleted"):
                out.extend((sub, kind) for sub, _ in lower_files(lower, rel))
            else:
                out.append((rel, kind))
        return sorted(out)

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
