"""The transferred workspace: a folder here mirrored into a container's volume through the
engine API, for engines that cannot bind-mount this machine's folders (remote engines).

The mirror (a private folder here) is the workspace every host-side reader and writer
uses: the file tools, the copy-mode change set (:mod:`pygent.changes`), the editor's
incremental sync. The container sees ``/workspace``, a volume on the engine. Around each
command the two are made equal:

- before: what changed in the mirror since the last sync (a ``lstat`` scan against the
  last one) goes in as one tar (``put_archive``); what was removed is removed;
- after: the container lists ``/workspace`` (``find -printf``, one exec); what changed
  since the last listing comes back as one tar from ``tar -c`` in the container, and is
  unpacked into the mirror by a reader that only creates regular files, folders and
  symlinks inside it (no devices, no FIFOs, no hard links, no ``..``).

A failed sync (a dropped connection) changes no record, so the next one carries it over.
Background processes that write after their command ended are seen after the next one.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pygent.errors import SandboxError
from pygent.runtime.base import STDOUT

log = logging.getLogger(__name__)

WORKDIR = "/workspace"
#: Names per exec (``tar -c``/``rm``), far below ARG_MAX.
CHUNK_BYTES = 64 * 1024
#: Most bytes one sync moves back out of the container.
PULL_LIMIT = 2 << 30

#: One entry: type (f, d, l), size, mtime (ns or find's seconds text), mode, link target.
Entry = tuple[str, int, str, int, str]

LISTING = [
    "find", WORKDIR, "-mindepth", "1", "(", "-type", "f", "-o", "-type", "d", "-o", "-type", "l",
    ")", "-printf", r"%y\0%s\0%T@\0%m\0%P\0%l\0",
]


#: The lister: one exec kept open per container. Each request is a fresh random token;
#: the listing ends with NUL, the token, NUL (a file name cannot forge an unknown token).
LISTER_SCRIPT = (
    "while read -r t; do find " + WORKDIR + r" -mindepth 1 \( -type f -o -type d -o -type l \)"
    r" -printf '%y\0%s\0%T@\0%m\0%P\0%l\0' 2>/dev/null; printf '\0%s\0' "
    '"$t"; done'
)


class ListingReceiver:
    """Collects one listing from the lister exec (a ShellReceiver), up to its end token."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.closed = False
        self._end = b""
        self._done: asyncio.Future[bytes] | None = None

    def expect(self, token: str) -> asyncio.Future[bytes]:
        self.buf.clear()
        self._end = b"\0" + token.encode() + b"\0"
        self._done = asyncio.get_running_loop().create_future()
        return self._done

    def shell_output(self, stream: int, data: bytes) -> None:
        if stream != STDOUT or self._done is None or self._done.done():
            return
        self.buf += data
        if len(self.buf) > PULL_LIMIT:
            self._done.set_exception(SandboxError("the workspace listing is too large"))
        elif self.buf.endswith(self._end):
            self._done.set_result(bytes(self.buf[: -len(self._end)]))

    def shell_closed(self) -> None:
        self.closed = True
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError("the lister's connection ended"))

    def shell_exited(self) -> None:
        pass


@dataclass
class SyncReport:
    """What one sync moved."""

    pushed: int = 0
    pulled: int = 0
    removed: int = 0
    bytes: int = 0


def scan(root: Path) -> dict[str, Entry]:
    """The mirror's entries (links are not followed)."""
    out: dict[str, Entry] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(root / rel if rel else root)
        except OSError:
            continue
        with it:
            for e in it:
                path = f"{rel}/{e.name}" if rel else e.name
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    out[path] = ("d", 0, "", stat.S_IMODE(st.st_mode), "")
                    stack.append(path)
                elif stat.S_ISREG(st.st_mode):
                    out[path] = ("f", st.st_size, str(st.st_mtime_ns), stat.S_IMODE(st.st_mode), "")
                elif stat.S_ISLNK(st.st_mode):
                    out[path] = ("l", 0, "", 0, os.readlink(root / path))
    return out


def parse_listing(raw: bytes) -> dict[str, Entry]:
    fields = raw.split(b"\0")
    out: dict[str, Entry] = {}
    for i in range(0, len(fields) - 5, 6):
        kind, size, mtime, mode, rel, link = (f.decode("utf-8", "surrogateescape")
                                              for f in fields[i:i + 6])
        if kind == "d":
            out[rel] = ("d", 0, "", int(mode, 8), "")
        elif kind == "f":
            out[rel] = ("f", int(size), mtime, int(mode, 8), "")
        elif kind == "l":
            out[rel] = ("l", 0, "", 0, link)
    return out


def _changed(now: dict[str, Entry], before: dict[str, Entry]) -> tuple[list[str], list[str]]:
    """(paths new or changed, paths gone) between two records."""
    changed = [p for p, e in now.items() if before.get(p) != e]
    gone = [p for p in before if p not in now]
    return changed, gone


def _chunks(paths: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    cur: list[str] = []
    size = 0
    for p in paths:
        if cur and size + len(p) > CHUNK_BYTES:
            out.append(cur)
            cur, size = [], 0
        cur.append(p)
        size += len(p) + 1
    if cur:
        out.append(cur)
    return out


def _outermost(paths: list[str]) -> list[str]:
    """Drop paths inside another path of the list (removing the folder removes them)."""
    keep: list[str] = []
    for p in sorted(paths):
        if keep and p.startswith(keep[-1] + "/"):
            continue
        keep.append(p)
    return keep


class WorkspaceTransfer:
    """Keeps a container's ``/workspace`` volume and a folder here equal (see module doc).

    Args:
        mirror: the folder here (the runtime's workspace).
        user: "uid:gid" the container's commands run as (owner of what is pushed).
    """

    def __init__(self, mirror: Path, user: str) -> None:
        self.mirror = mirror
        uid, _, gid = user.partition(":")
        self.uid = int(uid) if uid.isdigit() else 0
        self.gid = int(gid) if gid.isdigit() else self.uid
        self.user = user
        self._local: dict[str, Entry] = {}  # the mirror as last synced
        self._remote: dict[str, Entry] = {}  # /workspace as last listed

    def forget_remote(self) -> None:
        """The volume is new (or unknown): the next push sends everything."""
        self._local = {}
        self._remote = {}

    # -- the engine calls (blocking) ------------------------------------------------------

    @staticmethod
    def _exec(api: Any, cid: str, cmd: list[str], user: str, ok: tuple[int, ...] = (0,)) -> bytes:
        exec_id = api.exec_create(cid, cmd, user=user, stdout=True, stderr=True)["Id"]
        out, err = api.exec_start(exec_id, demux=True)
        code = api.exec_inspect(exec_id).get("ExitCode")
        if code not in ok:
            text = (err or b"").decode("utf-8", "replace").strip()[-300:]
            raise SandboxError(f"{cmd[0]} in the sandbox failed (exit {code}): {text}")
        return out or b""

    def init_volume(self, api: Any, cid: str) -> None:
        """Give the (new, root-owned) volume's root to the commands' user."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(".")
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, self.uid, self.gid
            tar.addfile(info)
        api.put_archive(cid, WORKDIR, buf.getvalue())

    def push(self, api: Any, cid: str, *, relist: bool = True) -> SyncReport:
        """Send what changed in the mirror since the last sync into the container.

        ``relist``: list the container afterwards here (else the caller passes a fresh
        listing to :meth:`seen` when ``report.pushed or report.removed``)."""
        now = scan(self.mirror)
        changed, gone = _changed(now, self._local)
        report = SyncReport()
        if gone:
            for chunk in _chunks(_outermost(gone)):
                self._exec(api, cid, ["rm", "-rf", "--", *chunk], self.user)
            report.removed = len(gone)
        if changed:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for rel in sorted(changed):  # parents before children
                    kind, size, _, mode, link = now[rel]
                    info = tarfile.TarInfo(rel)
                    info.uid, info.gid, info.mode = self.uid, self.gid, mode or 0o644
                    path = self.mirror / rel
                    if kind == "d":
                        info.type = tarfile.DIRTYPE
                        tar.addfile(info)
                    elif kind == "l":
                        info.type, info.linkname = tarfile.SYMTYPE, link
                        tar.addfile(info)
                    else:
                        try:
                            fh = open(path, "rb")  # noqa: SIM115 - closed below
                        except OSError:
                            continue  # removed meanwhile: the next sync sees it
                        with fh:
                            st = os.fstat(fh.fileno())
                            info.size, info.mtime = st.st_size, st.st_mtime
                            tar.addfile(info, fh)
                        report.bytes += info.size
            api.put_archive(cid, WORKDIR, buf.getvalue())
            report.pushed = len(changed)
        self._local = now
        if (changed or gone) and relist:
            # The container's side as it is now, so the command's own changes are all
            # that the next pull brings back (not the files just sent).
            self.seen(self._exec(api, cid, LISTING, self.user))
        return report

    def list_remote(self, api: Any, cid: str) -> bytes:
        """/workspace listed by one exec (when the lister cannot be used)."""
        return self._exec(api, cid, LISTING, self.user)

    def seen(self, listing: bytes) -> None:
        """The container's /workspace as listed just now (after a push)."""
        self._remote = parse_listing(listing)

    def pull(self, api: Any, cid: str, listing: bytes | None = None) -> SyncReport:
        """Bring what the container changed in /workspace since the last sync here
        (``listing``: a fresh one from the lister, else one exec lists it)."""
        if listing is None:
            listing = self._exec(api, cid, LISTING, self.user)
        remote = parse_listing(listing)
        changed, gone = _changed(remote, self._remote)
        report = SyncReport()
        for rel in sorted(gone, reverse=True):  # children before parents
            path = self.mirror / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            report.removed += 1
        files = [p for p in changed if remote[p][0] != "d"]
        for rel in sorted(p for p in changed if remote[p][0] == "d"):
            self._make_dir(rel, remote[rel][3])
        for chunk in _chunks(files):
            # --hard-dereference: a hard link comes as its own file (none is made here).
            data = self._exec(api, cid, ["tar", "-C", WORKDIR, "-cf", "-", "--no-recursion",
                                         "--hard-dereference", "--", *chunk], self.user,
                              ok=(0, 1))  # 1: a file changed or went meanwhile (a warning)
            report.bytes += len(data)
            if report.bytes > PULL_LIMIT:
                raise SandboxError("the sandbox changed more than 2 GiB at once: not copied back")
            report.pulled += self._unpack(data)
        self._remote = remote
        self._local = scan(self.mirror)
        return report

    # -- writing into the mirror, safely ------------------------------------------------

    def _inside(self, rel: str) -> Path:
        parts = Path(rel).parts
        if not rel or Path(rel).is_absolute() or ".." in parts:
            raise SandboxError(f"refused a path from the sandbox: {rel!r}")
        path = self.mirror.joinpath(*parts)
        # No component of the parent may be a symlink (a link to / must not be written through).
        cur = self.mirror
        for part in parts[:-1]:
            cur = cur / part
            if cur.is_symlink():
                raise SandboxError(f"refused a path through a symlink from the sandbox: {rel!r}")
        return path

    def _make_dir(self, rel: str, mode: int) -> None:
        path = self._inside(rel)
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, (mode & 0o777) | 0o700)

    def _unpack(self, data: bytes) -> int:
        count = 0
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                rel = member.name.removeprefix("./")
                try:
                    path = self._inside(rel)
                except SandboxError as exc:
                    log.warning("%s", exc)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.is_symlink() or (path.exists() and not path.is_dir()):
                    path.unlink()
                elif path.is_dir() and not member.isdir():
                    shutil.rmtree(path)
                if member.isreg():
                    src = tar.extractfile(member)
                    assert src is not None
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                                 (member.mode & 0o777) | 0o600)
                    with os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(src, out)
                    os.chmod(path, (member.mode & 0o777) | 0o600)
                    count += 1
                elif member.issym():
                    os.symlink(member.linkname, path)
                    count += 1
                elif member.isdir():
                    path.mkdir(exist_ok=True)
                # devices, FIFOs, hard links: never created here
        return count


def connection_lost(exc: BaseException) -> bool:
    """Whether a sync failed because the engine could not be reached."""
    from pygent.runtime.docker_engine import is_connection_error

    return is_connection_error(exc)

