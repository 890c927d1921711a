"""Logging set-up for the long-running front ends (``pygent lsp``, ``pygent ui``).

Their stdout belongs to the protocol (or to the one URL line), so logs go to a file or
to stderr, never stdout; third-party libraries log warnings only.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def configure_logging(log_file: Path | None, level: str) -> None:
    """Send logs to ``log_file`` (or stderr); Pygent's own loggers at ``level``."""
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("pygent").setLevel(level)
