"""The names of the ways a session's sandbox sees an editor's folder (``sync_mode``).

Apart from :mod:`pygent.changes`, which implements them, so a session without a folder
(the terminal, ``pygent -p``) can name them without loading the sync machinery.
"""

from __future__ import annotations

#: The folder is copied into the sandbox; changes come back as a reviewable change set.
COPY = "copy"
#: The folder is the sandbox's workspace: the agent's writes land in it directly.
MOUNT = "mount"
#: Copy-on-write: the folder read-only below, the session's own layer above.
COW = "cow"

__all__ = ["COPY", "COW", "MOUNT"]
