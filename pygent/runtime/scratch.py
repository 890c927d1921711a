"""Sandbox folders in the temp dir, each with an owner record so none outlives its Pygent.

A session without a folder of its own works in a fresh ``pygent_*`` folder that
:meth:`~pygent.runtime.Runtime.cleanup` removes. A process killed by ``kill -9`` (or
the OOM killer) cannot remove it, so beside each folder lies ``<folder>.owner``, the
owner record of :mod:`pygent.runtime.ownership`; the first sandbox folder a later
Pygent makes removes every folder whose owner is gone. The record sits next to the
folder, not in it: the folder is the sandbox's ``/workspace`` and must hold only the
user's files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from pygent.runtime.ownership import owner_alive, owner_labels

log = logging.getLogger(__name__)

#: What every folder made here is called: ``pygent_`` + a random part (+ ``.owner``).
PREFIX = "pygent_"
OWNER_SUFFIX = ".owner"

_reaped = False
_reap_lock = threading.Lock()


def make_scratch_dir(prefix: str = PREFIX) -> Path:
    """A new private folder in the temp dir, recorded as this process's."""
    _reap_once()
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        _owner_file(path).write_text(json.dumps(owner_labels()))
    except OSError as exc:  # a full /tmp: the folder still works, it just is not reaped
        log.debug("could not record the owner of %s: %s", path, exc)
    return path


def remove_scratch_dir(path: Path) -> None:
    """Remove a folder made by :func:`make_scratch_dir`, then its owner record."""
    shutil.rmtree(path, ignore_errors=True)
    _owner_file(path).unlink(missing_ok=True)


def reap_scratch_dirs(root: Path | None = None) -> list[Path]:
    """Remove the sandbox folders of dead Pygent processes; returns them.

    Only folders with an owner record are touched: a ``pygent_*`` folder without one
    is someone else's (or is being made right now) and is left alone.
    """
    base = root or Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        records = [e for e in os.scandir(base) if e.name.startswith(PREFIX) and e.name.endswith(OWNER_SUFFIX)]
    except OSError:
        return removed
    for entry in records:
        try:
            with open(entry.path) as fh:
                record = json.load(fh)
        except (OSError, ValueError):
            continue  # being written, or not ours
        if not isinstance(record, dict) or owner_alive({k: str(v) for k, v in record.items()}):
            continue
        folder = Path(entry.path[: -len(OWNER_SUFFIX)])
        remove_scratch_dir(folder)
        log.info("removed the sandbox folder %s (its Pygent process is gone)", folder)
        removed.append(folder)
    return removed


def _owner_file(path: Path) -> Path:
    return path.with_name(path.name + OWNER_SUFFIX)


def _reap_once() -> None:
    global _reaped
    with _reap_lock:
        if _reaped:
            return
        _reaped = True
    reap_scratch_dirs()
