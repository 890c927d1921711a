"""Sandbox paths -> the editor's folder: which file of the user's a problem is about.

Tools print paths relative to the folder the command ran in, or absolute paths inside
the sandbox (``/workspace/...`` in Docker, the sandbox's host folder in local mode, the
merged view of a copy-on-write session). Every session mode shows the sandbox the
user's folder, so a path inside the sandbox's root is the same path in the user's
folder. A path anywhere else (the standard library, ``/etc``, ``../other``) is not one
of the editor's files and gives None.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Iterable

#: ``cd DIR && ...`` / ``cd DIR; ...`` at the start of a command: the folder its paths are relative to.
_LEADING_CD = re.compile(r"^\s*cd\s+(\S+)\s*(?:&&|;)")


class PathMapper:
    """Maps paths a tool printed to workspace-relative paths.

    Args:
        roots: absolute paths at which the sandbox shows the workspace (``/workspace``,
            the sandbox's host folder, the user's own folder).
        exists: tells whether a workspace-relative path is a file of the workspace (the
            user's folder or the session's copy); None accepts any contained path.
    """

    def __init__(self, roots: Iterable[str], exists: Callable[[str], bool] | None = None) -> None:
        self.roots = sorted({r.rstrip("/") or "/" for r in roots if r}, key=len, reverse=True)
        self.exists = exists

    def command_folder(self, command: str) -> str:
        """The workspace-relative folder a command's relative paths start from: a
        leading ``cd sub &&``, else the workspace root ("")."""
        m = _LEADING_CD.match(command)
        if not m:
            return ""
        try:
            target = shlex.split(m.group(1))[0]
        except (ValueError, IndexError):
            return ""
        rel = self.relative(target, "")
        return rel if rel is not None else ""

    def relative(self, path: str, folder: str = "") -> str | None:
        """``path`` as the tool printed it -> workspace-relative, or None when it is not
        a file of the workspace (outside it, or, with ``exists``, not there)."""
        text = path.strip()
        if not text or "\x00" in text or len(text) > 4096:
            return None
        if text.startswith("file://"):
            text = text[len("file://") :]
        if posixpath.isabs(text):
            text = posixpath.normpath(text)
            for root in self.roots:
                if text.startswith(root + "/"):
                    rel = text[len(root) + 1 :]
                    break
            else:
                return None
        else:
            rel = posixpath.normpath(posixpath.join(folder, text))
            if rel == ".." or rel.startswith("../") or rel == ".":
                return None
        if self.exists is not None and not self.exists(rel):
            return None
        return rel
