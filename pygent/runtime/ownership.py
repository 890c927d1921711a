"""Who owns a sandbox resource, and whether that Pygent process is still alive.

Containers carry the owner record as labels, sandbox folders as a file beside them
(:mod:`pygent.runtime.scratch`). A later Pygent removes what belongs to a dead owner:
that is how a ``kill -9`` leaves nothing behind for long. A PID alone is not enough
(PIDs are reused), so the record also holds the process's start time, the boot id and
the host name.
"""

from __future__ import annotations

import os
import socket

#: The record's keys; also the label keys on every container Pygent creates.
LABEL_MANAGED = "pygent.managed"
LABEL_OWNER_PID = "pygent.owner_pid"
LABEL_OWNER_START = "pygent.owner_start"
LABEL_OWNER_BOOT = "pygent.owner_boot"
LABEL_OWNER_HOST = "pygent.owner_host"


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def process_start_time(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (/proc/PID/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    # After the command name: state(3) ppid(4) ... starttime is field 22, index 19 here.
    return fields[19] if len(fields) > 19 else None


def owner_labels() -> dict[str, str]:
    """The record identifying this process, so a later Pygent can tell if it is gone."""
    pid = os.getpid()
    return {
        LABEL_MANAGED: "1",
        LABEL_OWNER_PID: str(pid),
        LABEL_OWNER_START: process_start_time(pid) or "",
        LABEL_OWNER_BOOT: _boot_id(),
        LABEL_OWNER_HOST: socket.gethostname(),
    }


def owner_alive(labels: dict[str, str]) -> bool:
    """Whether the Pygent process a record names still runs.

    A record made on another host (a shared remote daemon) counts as alive: its
    owner cannot be checked from here, so it is never reaped from here.
    """
    host = labels.get(LABEL_OWNER_HOST)
    if host and host != socket.gethostname():
        return True
    boot = labels.get(LABEL_OWNER_BOOT)
    if boot and _boot_id() and boot != _boot_id():
        return False  # the machine rebooted since: that process is gone
    pid_text = labels.get(LABEL_OWNER_PID, "")
    if not pid_text.isdigit():
        return False
    if not os.path.isdir("/proc/self"):  # no /proc (macOS): existence is all we can check
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    started = process_start_time(int(pid_text))
    if started is None:
        return False
    want = labels.get(LABEL_OWNER_START, "")
    return not want or want == started  # a different start time: the PID was reused
