"""Safe host-side access to the workspace directory.

Every file tool, in Docker and local mode, reads and writes the workspace from the
host, so this module is the sandbox boundary for files. Paths are walked one
component at a time with directory file descriptors and ``O_NOFOLLOW``: the kernel
never follows a link for us. A symbolic link met on the way is read with
``readlink`` and its target re-contained in the workspace by hand, so links inside
the workspace work and links out of it (or swapped in by a racing process) are
refused. Only regular files are read or written; writes go to a temporary file in
the same directory and are renamed into place, so a hard link to an outside file is
replaced, never written through.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pygent.errors import PathError

MAX_PATH = 4096
MAX_LINK_HOPS = 40
CONTAINER_ROOT = "/workspace"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class _NotALink(Exception):
    """A path component stopped being a link between two looks at it (a race)."""


@dataclass(frozen=True)
class FileRead:
    data: bytes
    size: int  # the file's full size
    offset: int

    @property
    def truncated(self) -> bool:
        return self.offset + len(self.data) < self.size


class Workspace:
    """The workspace folder on the host, with contained file operations."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(os.path.realpath(root))
        if not self.root.is_dir():
            raise PathError(f"workspace {self.root} is not a directory")

    # --- path handling -----------------------------------------------------------------

    def parts(self, path: str | os.PathLike[str]) -> list[str]:
        """Normalise a user or model path to workspace-relative components."""
        text = os.fspath(path)
        if "\x00" in text:
            raise PathError("path contains a NUL byte")
        if len(text) > MAX_PATH:
            raise PathError(f"path is longer than {MAX_PATH} characters")
        if text.startswith("~"):
            raise PathError(
                f"{text!r}: '~' is not expanded; use a path relative to the workspace"
            )
        if os.path.isabs(text):
            for base in (str(self.root), CONTAINER_ROOT):
                if text == base or text.startswith(base.rstrip("/") + "/"):
                    text = text[len(base) :]
                    break
            else:
                raise PathError(f"{text!r} is outside the workspace ({self.root})")
        return self._normalise([], text.split("/"), shown=os.fspath(path))

    @staticmethod
    def _normalise(base: list[str], parts: list[str], *, shown: str) -> list[str]:
        out = list(base)
        for part in parts:
            if part in ("", "."):
                continue
            if part == "..":
                if not out:
                    raise PathError(f"{shown!r} is outside the workspace")
                out.pop()
            else:
                out.append(part)
        return out

    def relpath(self, path: str | os.PathLike[str]) -> str:
        """The workspace-relative form of ``path`` ('' for the root)."""
        return "/".join(self.parts(path))

    def _link_target(self, dir_parts: list[str], dir_fd: int, name: str, shown: str) -> list[str]:
        try:
            target = os.readlink(name, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # no longer a link
                raise _NotALink() from None
            raise
        if os.path.isabs(target):
            for base in (str(self.root), CONTAINER_ROOT):
                if target == base or target.startswith(base.rstrip("/") + "/"):
                    return self._normalise([], target[len(base) :].split("/"), shown=shown)
            raise PathError(f"{shown!r} is a link to {target}, outside the workspace")
        try:
            return self._normalise(dir_parts, target.split("/"), shown=shown)
        except PathError:
            raise PathError(f"{shown!r} leads through a link out of the workspace") from None

    @contextmanager
    def _parent(self, path: str | os.PathLike[str], *, create: bool = False,
                follow_last: bool = True) -> Iterator[tuple[int, str, list[str]]]:
        """Yield (parent dir fd, final name, resolved parts) with every link contained;
        a link as the final component is followed unless ``follow_last`` is False."""
        shown = os.fspath(path)
        pending = self.parts(path)
        if not pending:
            raise PathError("the workspace root is a directory, not a file")
        hops = 0
        while True:
            fd = os.open(self.root, _DIR_FLAGS)
            done: list[str] = []
            restart = False
            try:
                for i, name in enumerate(pending[:-1]):
                    try:
                        nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    except FileNotFoundError:
                        if not create:
                            raise PathError(f"{shown!r}: directory {'/'.join(done + [name])!r} does not exist") from None
                        os.mkdir(name, 0o777, dir_fd=fd)
                        nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    except OSError as exc:
                        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                            raise
                        hops += 1
                        if hops > MAX_LINK_HOPS:
                            raise PathError(f"{shown!r}: too many levels of symbolic links") from None
                        try:
                            link_st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                            if not stat.S_ISLNK(link_st.st_mode):
                                if stat.S_ISDIR(link_st.st_mode):  # a link became a directory
                                    restart = True
                                    break
                                raise PathError(f"{shown!r}: {'/'.join(done + [name])!r} is not a directory") from None
                            pending = self._link_target(done, fd, name, shown) + pending[i + 1 :]
                        except (FileNotFoundError, _NotALink):
                            pass  # it changed while we looked (a racing process): walk again
                        restart = True
                        break
                    os.close(fd)
                    fd = nfd
                    done.append(name)
                if restart:
                    continue
                final = pending[-1]
                st: os.stat_result | None
                try:
                    st = os.stat(final, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    st = None
                if st is not None and stat.S_ISLNK(st.st_mode) and follow_last:
                    hops += 1
                    if hops > MAX_LINK_HOPS:
                        raise PathError(f"{shown!r}: too many levels of symbolic links")
                    try:
                        pending = self._link_target(done, fd, final, shown)
                    except (FileNotFoundError, _NotALink):
                        continue  # it changed while we looked: walk again
                    if not pending:
                        raise PathError(f"{shown!r} is a link to the workspace root")
                    continue
                yield fd, final, done + [final]
                return
            finally:
                os.close(fd)

    # --- operations ----------------------------------------------------------------------

    def read(self, path: str | os.PathLike[str], *, offset: int = 0, limit: int | None = None) -> FileRead:
        """Read a regular file (optionally a byte range); links out are refused."""
        with self._parent(path) as (dir_fd, name, _):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
            except FileNotFoundError:
                raise PathError(f"{os.fspath(path)!r} does not exist") from None
            except OSError as exc:
                if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket
                    raise PathError(f"{os.fspath(path)!r} is not a regular file") from None
                raise
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
                    raise PathError(f"{os.fspath(path)!r} is {kind}")
                os.lseek(fd, offset, os.SEEK_SET)
                want = st.st_size - offset if limit is None else min(limit, max(st.st_size - offset, 0))
                chunks, got = [], 0
                while got < want:
                    chunk = os.read(fd, min(1 << 20, want - got))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    got += len(chunk)
                return FileRead(b"".join(chunks), st.st_size, offset)
            finally:
                os.close(fd)

    def read_bytes(self, path: str | os.PathLike[str]) -> bytes:
        return self.read(path).data

    def write(self, path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> str:
        """Write ``data`` atomically (temp file + rename); returns the relative path."""
        with self._parent(path, create=True) as (dir_fd, name, parts):
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise PathError(f"{os.fspath(path)!r} exists and is not a regular file")
            perm = mode if mode is not None else (stat.S_IMODE(st.st_mode) if st else 0o644)
            tmp = f".{name[:100]}.pygent-{secrets.token_hex(4)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, perm, dir_fd=dir_fd)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fchmod(fd, perm)
            except BaseException:
                os.close(fd)
                os.unlink(tmp, dir_fd=dir_fd)
                raise
            os.close(fd)
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return "/".join(parts)

    def lstat(self, path: str | os.PathLike[str]) -> os.stat_result | None:
        """``lstat`` of a contained path, or None when it does not exist."""
        try:
            with self._parent(path) as (dir_fd, name, _):
                return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except (PathError, FileNotFoundError, NotADirectoryError):
            return None

    def remove(self, path: str | os.PathLike[str]) -> None:
        """Delete a file or a link (never what it points to, never a directory)."""
        with self._parent(path, follow_last=False) as (dir_fd, name, _):
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                return
            if stat.S_ISDIR(st.st_mode):
                raise PathError(f"{os.fspath(path)!r} is a directory")
            os.unlink(name, dir_fd=dir_fd)

    def exists(self, path: str | os.PathLike[str]) -> bool:
        return self.lstat(path) is not None

    def host_path(self, path: str | os.PathLike[str]) -> Path:
        """The host path for ``path`` after containment (for display and copying)."""
        with self._parent(path) as (_, __, parts):
            return self.root.joinpath(*parts)

    def iter_files(self, *, max_files: int = 200_000) -> Iterator[tuple[str, os.stat_result]]:
        """Walk regular files (links are not followed), yielding (relpath, lstat)."""
        count = 0
        stack = [""]
        while stack:
            rel = stack.pop()
            try:
                entries = list(os.scandir(self.root / rel if rel else self.root))
            except OSError:
                continue
            for entry in entries:
                sub = f"{rel}/{entry.name}" if rel else entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    stack.append(sub)
                elif stat.S_ISREG(st.st_mode):
                    yield sub, st
                    count += 1
                    if count >= max_files:
                        return
