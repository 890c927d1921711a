"""Copy-on-write workspace layers: the user's folder as the read-only lower layer, a
session's upper layer under Pygent's data dir, and the merged view as the host sees it.

The sandbox engine mounts the overlay (see :mod:`pygent.runtime.docker_backend`); Pygent
itself mounts nothing and needs no privileges. The kernel says the layers of a mounted
overlay must not be changed underneath it, so the host only READS them:
:class:`OverlayWorkspace` resolves a path through the upper layer (whiteouts, opaque
directories) and then the lower one, and hands every write or removal to a
:class:`LayerWriter` that makes it through the mounted overlay (inside the sandbox).

Overlay format (Linux ``overlayfs``): a deleted lower entry is a *whiteout* in the upper
layer, a character device 0/0; a directory removed and made again is *opaque* (xattr
``trusted.overlay.opaque=y``, or ``user.overlay.opaque`` for user-namespace mounts):
nothing of the lower directory shows through it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pygent.errors import PathError
from pygent.runtime.workspace import CONTAINER_ROOT, MAX_LINK_HOPS, FileRead, Workspace

#: Directory names under a session's layer folder.
UPPER, WORK, CHECKPOINTS = "upper", "work", "checkpoints"
_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


def is_whiteout(st: os.stat_result) -> bool:
    """Whether an upper-layer entry is a whiteout (a character device 0/0)."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str | Path) -> bool:
    """Whether an upper-layer directory hides the lower directory of the same name.

    ``trusted.*`` attributes are invisible to unprivileged users: a Pygent that is not
    root cannot see that a directory is opaque (see docs/sandbox.md)."""
    for name in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


@dataclass(frozen=True)
class OverlayLayers:
    """The folders of one copy-on-write workspace.

    ``root`` holds ``upper/`` (the session's writes), ``work/`` (the overlay's scratch
    folder, on the same file system as ``upper``) and ``checkpoints/``.
    """

    lower: Path
    root: Path

    @property
    def upper(self) -> Path:
        return self.root / UPPER

    @property
    def work(self) -> Path:
        return self.root / WORK

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @classmethod
    def create(cls, data_dir: Path, lower: Path) -> OverlayLayers:
        """New, empty layers for ``lower`` under ``data_dir/cow/<random>``. O(1)."""
        base = Path(data_dir) / "cow"
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        root = base / secrets.token_hex(8)
        root.mkdir(mode=0o755)
        # 0755 and the user's: the merged root takes the upper root's owner and mode,
        # and the sandbox commands run as this user.
        (root / UPPER).mkdir(mode=0o755)
        (root / WORK).mkdir(mode=0o755)
        return cls(Path(os.path.realpath(lower)), root)

    def mount_options(self) -> str:
        """The ``o=`` of an overlay mount. ``redirect_dir``/``metacopy`` off: every
        change is a whole entry in the upper layer (a renamed lower directory is copied)."""
        for path in (self.lower, self.upper, self.work):
            if "," in str(path) or ":" in str(path):
                raise PathError(f"{path}: a ',' or ':' in the path cannot be an overlay layer")
        return (
            f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work},"
            "redirect_dir=off,metacopy=off"
        )

    def remove(self) -> None:
        """Remove the layers (upper, work, checkpoints): O(what the session changed).
        The overlay's own ``work/work`` is root's with mode 000: only root (or the
        engine) can empty it; what cannot be removed is left and logged."""
        shutil.rmtree(self.root, ignore_errors=True)


class LayerWriter(Protocol):
    """Makes changes THROUGH the mounted overlay (the layers are read-only to the host).

    Paths are workspace-relative and already resolved (no links on the way)."""

    def apply(
        self,
        puts: list[tuple[str, bytes, int]],
        links: list[tuple[str, str]],
        removes: list[str],
        dirs: list[str] | None = None,
    ) -> None:
        """In one round trip: remove files or links, make folders (with their parents),
        write files (path, content, mode), make symlinks (path, target). Raises
        OSError or SandboxError."""


@dataclass(frozen=True)
class _Found:
    layer: Path | None  # the layer holding the entry; None when it does not exist
    parts: list[str]
    st: os.stat_result | None
    lower_visible: bool  # below this directory, the lower layer shows through


class OverlayWorkspace(Workspace):
    """The merged view of a copy-on-write workspace, read from the layers on the host.

    Reads resolve each path component through the upper layer, then the lower one;
    links are followed in the merged view and kept inside it. Writes and removals go to
    the :class:`LayerWriter` (the sandbox), so the mounted overlay sees them.
    """

    def __init__(self, layers: OverlayLayers, writer: LayerWriter | None = None) -> None:
        super().__init__(layers.lower)
        self.layers = layers
        self.writer = writer
        self._upper = Workspace(layers.upper)
        self._lower = Workspace(layers.lower)

    # --- resolution ---------------------------------------------------------------------

    def _find(
        self, path: str | os.PathLike[str], *, follow_last: bool, create: bool = False
    ) -> _Found:
        shown = os.fspath(path)
        pending = self.parts(path)
        hops = 0
        while True:
            done: list[str] = []
            lower_ok = True
            layer: Path | None = self.layers.upper
            st: os.stat_result | None = None
            restart = False
            for i, name in enumerate(pending):
                here = done + [name]
                last = i == len(pending) - 1
                layer, st, below = self._entry(here, lower_ok)
                if st is None:
                    if last or create:  # create: the writer makes the missing folders
                        return _Found(None, here + pending[i + 1 :], None, False)
                    raise PathError(f"{shown!r}: directory {'/'.join(here)!r} does not exist")
                if stat.S_ISLNK(st.st_mode) and (follow_last or not last):
                    hops += 1
                    if hops > MAX_LINK_HOPS:
                        raise PathError(f"{shown!r}: too many levels of symbolic links")
                    assert layer is not None
                    target = os.readlink(layer.joinpath(*here))
                    pending = self._link_parts(done, target, shown) + pending[i + 1 :]
                    if not pending:
                        raise PathError(f"{shown!r} is a link to the workspace root")
                    restart = True
                    break
                if not last and not stat.S_ISDIR(st.st_mode):
                    raise PathError(f"{shown!r}: {'/'.join(here)!r} is not a directory")
                done, lower_ok = here, below
            if not restart:
                return _Found(layer, done, st, lower_ok)

    def _link_parts(self, base: list[str], target: str, shown: str) -> list[str]:
        if os.path.isabs(target):
            for root in (str(self.root), CONTAINER_ROOT):
                if target == root or target.startswith(root.rstrip("/") + "/"):
                    return self._normalise([], target[len(root) :].split("/"), shown=shown)
            raise PathError(f"{shown!r} is a link to {target}, outside the workspace")
        try:
            return self._normalise(base, target.split("/"), shown=shown)
        except PathError:
            raise PathError(f"{shown!r} leads through a link out of the workspace") from None

    def _entry(
        self, parts: list[str], lower_ok: bool
    ) -> tuple[Path | None, os.stat_result | None, bool]:
        """(layer, lstat, lower visible below) of one merged entry."""
        rel = os.path.join(*parts)
        try:
            st = os.lstat(self.layers.upper / rel)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is not None:
            if is_whiteout(st):
                return None, None, False
            below = (
                lower_ok
                and stat.S_ISDIR(st.st_mode)
                and not is_opaque(self.layers.upper / rel)
                and _is_dir(self.layers.lower / rel)
            )
            return self.layers.upper, st, below
        if not lower_ok:
            return None, None, False
        try:
            st = os.lstat(self.layers.lower / rel)
        except (FileNotFoundError, NotADirectoryError):
            return None, None, False
        return self.layers.lower, st, stat.S_ISDIR(st.st_mode)

    def _layer_ws(self, found: _Found) -> Workspace:
        return self._upper if found.layer == self.layers.upper else self._lower

    # --- Workspace operations -------------------------------------------------------------

    def read(
        self, path: str | os.PathLike[str], *, offset: int = 0, limit: int | None = None
    ) -> FileRead:
        found = self._find(path, follow_last=True)
        if found.st is None:
            raise PathError(f"{os.fspath(path)!r} does not exist")
        # Opened through the layer's own Workspace: a link swapped in meanwhile stays
        # inside that layer.
        return self._layer_ws(found).read("/".join(found.parts), offset=offset, limit=limit)

    def lstat(self, path: str | os.PathLike[str]) -> os.stat_result | None:
        try:
            return self._find(path, follow_last=False).st
        except (PathError, OSError):
            return None

    def readlink(self, path: str | os.PathLike[str]) -> str | None:
        """A link's target in the merged view, None when ``path`` is not a link."""
        found = self._find(path, follow_last=False)
        if found.st is None or not stat.S_ISLNK(found.st.st_mode) or found.layer is None:
            return None
        return os.readlink(found.layer.joinpath(*found.parts))

    def host_path(self, path: str | os.PathLike[str]) -> Path:
        found = self._find(path, follow_last=True)
        return (found.layer or self.layers.upper).joinpath(*found.parts)

    def upper_bytes(self, rel: str, limit: int | None = None) -> bytes | None:
        """A file of the upper layer (read contained in it: the sandbox can swap a
        folder for a link under us), b"" past ``limit``, None when it is not there."""
        try:
            got = self._upper.read(rel, limit=limit)
        except (PathError, OSError):
            return None
        return b"" if got.truncated else got.data

    def upper_readlink(self, rel: str) -> str | None:
        """A link's target in the upper layer, None when ``rel`` is not a link there."""
        try:
            with self._upper._parent(rel, follow_last=False) as (dir_fd, name, _):
                return os.readlink(name, dir_fd=dir_fd)
        except (PathError, OSError):
            return None

    def _need_writer(self) -> LayerWriter:
        if self.writer is None:
            raise PathError("this copy-on-write workspace has no sandbox to write through")
        return self.writer

    def write(self, path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> str:
        found = self._find(path, follow_last=True, create=True)
        if found.st is not None and not stat.S_ISREG(found.st.st_mode):
            raise PathError(f"{os.fspath(path)!r} exists and is not a regular file")
        perm = mode if mode is not None else (stat.S_IMODE(found.st.st_mode) if found.st else 0o644)
        rel = "/".join(found.parts)
        parent = os.path.dirname(rel)
        missing = [parent] if parent and self.lstat(parent) is None else []
        self._need_writer().apply([(rel, bytes(data), perm)], [], [], missing)
        return rel

    def remove(self, path: str | os.PathLike[str]) -> None:
        found = self._find(path, follow_last=False)
        if found.st is None:
            return
        if stat.S_ISDIR(found.st.st_mode):
            raise PathError(f"{os.fspath(path)!r} is a directory")
        self._need_writer().apply([], [], ["/".join(found.parts)])

    def iter_files(self, *, max_files: int = 200_000) -> Iterator[tuple[str, os.stat_result]]:
        """Walk the merged view's regular files (O(whole tree): exports only)."""
        count = 0
        stack: list[tuple[str, bool]] = [("", True)]
        while stack:
            rel, lower_ok = stack.pop()
            for name, st, below in self._list(rel, lower_ok):
                sub = f"{rel}/{name}" if rel else name
                if stat.S_ISDIR(st.st_mode):
                    stack.append((sub, below))
                elif stat.S_ISREG(st.st_mode):
                    yield sub, st
                    count += 1
                    if count >= max_files:
                        return

    def _list(self, rel: str, lower_ok: bool) -> list[tuple[str, os.stat_result, bool]]:
        names: dict[str, tuple[os.stat_result, bool] | None] = {}
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.layers.upper / rel if rel else self.layers.upper):
                st = entry.stat(follow_symlinks=False)
                if is_whiteout(st):
                    names[entry.name] = None
                else:
                    below = (
                        lower_ok
                        and stat.S_ISDIR(st.st_mode)
                        and not is_opaque(entry.path)
                        and _is_dir(self.layers.lower / rel / entry.name)
                    )
                    names[entry.name] = (st, below)
        if lower_ok:
            with contextlib.suppress(OSError):
                for entry in os.scandir(self.layers.lower / rel if rel else self.layers.lower):
                    if entry.name not in names:
                        st = entry.stat(follow_symlinks=False)
                        names[entry.name] = (st, stat.S_ISDIR(st.st_mode))
        return [(n, v[0], v[1]) for n, v in sorted(names.items()) if v is not None]


def lstat_or_none(path: Path) -> os.stat_result | None:
    """``os.lstat``, or None when the path does not exist."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def entry_kind(st: os.stat_result) -> str | None:
    """"file", "symlink", or None for anything else."""
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return None


def lower_files(lower: Path, rel: str) -> Iterator[tuple[str, os.stat_result]]:
    """Files and links of the folder at or under ``rel`` (a deleted or hidden folder)."""
    st = lstat_or_none(lower / rel)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        if entry_kind(st):
            yield rel, st
        return
    stack = [rel]
    while stack:
        here = stack.pop()
        try:
            entries = list(os.scandir(lower / here))
        except OSError:
            continue
        for entry in entries:
            sub = f"{here}/{entry.name}"
            try:
                est = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(est.st_mode):
                stack.append(sub)
            elif entry_kind(est):
                yield sub, est


def read_layer_file(path: Path) -> bytes | None:
    """A file's bytes, None when it cannot be read; a link as the last component is not
    followed. For the folder (lower layer) only: upper-layer files are read with
    :meth:`OverlayWorkspace.upper_bytes`, contained in the layer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            return f.read()
    except OSError:
        return None


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise


__all__ = [
    "LayerWriter",
    "entry_kind",
    "lower_files",
    "lstat_or_none",
    "read_layer_file",
    "OverlayLayers",
    "OverlayWorkspace",
    "is_opaque",
    "is_whiteout",
]
