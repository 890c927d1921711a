"""Upstream-compatible configuration helpers: ``load_config`` and ``config.py`` scripts.

``load_config(path)`` reads a ``pygent.toml`` and makes its values apply to every
agent and task manager created afterwards (environment variables still win, as the
upstream documents: the file fills in what is unset). It no longer copies values into
``os.environ``; :func:`pygent.settings.load_settings` reads them from one place.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

from pygent.errors import ConfigError
from pygent.settings import discover_config, parse_config_file, set_loaded_layer


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Load ``path`` (default: ``pygent.toml`` in the current or home directory).

    Returns the typed values read. Raises :class:`ConfigError` for a missing or
    invalid file (the message names the file and the line or key).
    """
    target = Path(path) if path is not None else discover_config()
    if target is None:
        return {}
    if not target.is_file():
        raise ConfigError(f"config file {target} does not exist")
    values = parse_config_file(target)
    set_loaded_layer(values, target)
    return values


def run_py_config(path: str | Path) -> None:
    """Execute a ``config.py`` start-up script (it may register tools, commands, models).

    Errors inside the script become a :class:`ConfigError` naming the file and line.
    """
    target = Path(path)
    if not target.is_file():
        raise ConfigError(f"config script {target} does not exist")
    try:
        runpy.run_path(str(target), run_name="__pygent_config__")
    except SystemExit:
        raise
    except Exception as exc:
        import traceback

        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(target)]
        where = f" (line {frames[-1].lineno})" if frames else ""
        raise ConfigError(
            f"{target}{where}: {exc.__class__.__name__}: {exc}",
            hint="fix the script or start with --pyconfig pointing elsewhere",
        ) from exc
