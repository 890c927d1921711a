"""The run's log file (warnings and tracebacks, secrets redacted) and the crash report.

Nothing is logged to the terminal: it belongs to the conversation. The file is
created only when something is logged, under ``<data dir>/logs``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from pygent.redact import redact_secrets


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_secrets(super().format(record))


def setup_logging(data_dir: Path) -> Path:
    """Send warnings and errors of every logger to a per-run file; returns its path."""
    logs = data_dir / "logs"
    path = logs / f"pygent-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        logs.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, delay=True, encoding="utf-8")
    except OSError:
        # No writable data dir: keep the terminal clean rather than fall back to stderr.
        handler = logging.NullHandler()
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    return path
