"""From command-line options to settings: config.py, pygent.toml, flags and a snapshot to resume.

Order matters: ``config.py`` runs first (it may call ``load_config`` or
``set_custom_model``), then the settings are loaded with the flags as overrides; a
snapshot (``--load DIR`` or ``PYGENT_SNAPSHOT``) adds its saved settings as a layer
below the environment and the flags, and supplies the history and workspace.
``--resume [ID]`` and ``--continue`` name a saved session instead (its workspace is
used again when it still exists); the REPL and ``pygent -p`` both start here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pygent.config import run_py_config
from pygent.errors import ConfigError
from pygent.settings import Settings, load_settings, set_loaded_layer

if TYPE_CHECKING:
    from pygent.repl.snapshot import Snapshot

#: Run when present in the current directory and no --pyconfig is given (upstream).
DEFAULT_PYCONFIG = "config.py"


@dataclass
class Startup:
    settings: Settings
    snapshot: Snapshot | None
    pyconfig: Path | None
    resume_id: str | None = None  # a saved session to reopen (--resume, --continue)


def _env_pairs(items: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"-e {item!r}: expected NAME=value")
        pairs[name.strip()] = value
    return pairs


def _overrides(options: Any) -> dict[str, Any]:
    workspace: Path | None = None
    if options.cwd:
        workspace = Path.cwd()
    elif options.workspace:
        workspace = Path(options.workspace).expanduser().absolute()
    return {
        "use_docker": options.use_docker,
        "model": options.model,
        "confirm_bash": options.confirm_bash,
        "workspace": workspace,
        "snapshot": options.load,
        "approval_mode": getattr(options, "approval_mode", None),
        "max_steps": getattr(options, "max_steps", None),
    }


def _load(options: Any) -> Settings:
    settings = load_settings(_overrides(options), config_file=options.config)
    # Repeatable flags add to what the environment and pygent.toml give.
    settings.env = {**settings.env, **_env_pairs(options.env)}
    settings.disabled_tools = list(dict.fromkeys([*settings.disabled_tools, *options.omit_tools]))
    settings.banned_commands = list(dict.fromkeys([*settings.banned_commands, *options.ban_cmds]))
    return settings


def prepare(options: Any) -> Startup:
    """Run ``config.py`` and build the settings; raises ConfigError with a clear message."""
    pyconfig = options.pyconfig
    if pyconfig is None and Path(DEFAULT_PYCONFIG).is_file():
        pyconfig = Path(DEFAULT_PYCONFIG)
    if pyconfig is not None:
        run_py_config(pyconfig)
    settings = _load(options)
    loaded: Snapshot | None = None
    if settings.snapshot is not None:
        from pygent.repl import snapshot as snap  # the history store: only when resuming

        loaded = snap.load(settings.snapshot)
        if loaded.settings:
            set_loaded_layer(loaded.settings, loaded.directory / snap.SETTINGS_FILE)
            settings = _load(options)
        settings.history_file = loaded.history_file
        if options.workspace is None and not options.cwd:
            settings.workspace = loaded.workspace
    resume_id = None
    if getattr(options, "resume", None) is not None or getattr(options, "continue_latest", False):
        if loaded is not None:
            raise ConfigError("--load cannot be combined with --resume or --continue")
        from pygent.repl.resume import choose_session

        resume_id = choose_session(options, settings)
    return Startup(settings, loaded, pyconfig, resume_id)
