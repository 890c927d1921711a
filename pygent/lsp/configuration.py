"""The editor's configuration (``initializationOptions``, ``workspace/didChangeConfiguration``,
``workspace/configuration``) over the server's own settings.

The client sends a :class:`~pygent.lsp.protocol.ServerConfiguration` object, flat or as
``{"pygent": {...}}`` (what VS Code and most LSP clients send for a settings section).
Each value is converted by :func:`pygent.settings.parse_setting`, as values from the
environment and ``pygent.toml`` are; an unknown key is a warning and a bad value an
error, each naming the key, and neither stops the other keys from applying.
A complete object replaces the client's previous one (a key the user removed goes back
to the server's setting); ``pygent/configuration`` merges keys into it instead.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import attrs

from pygent.lsp import protocol as p
from pygent.service import SYNC_MODES, SessionOptions
from pygent.settings import Settings, parse_setting

#: The section name: ``{"pygent": {...}}``, ``workspace/configuration``'s ``section``.
SECTION = "pygent"

#: Wire key -> Settings field, for the keys that are plain settings.
_FIELDS: dict[str, str] = {
    p.camel(a.name): a.name
    for a in attrs.fields(p.ServerConfiguration)
    if a.name
    not in ("runtime", "sync_mode", "approval_timeout", "follow_along", "diagnostic_matchers")
}
#: Every key of the configuration object, in the protocol's order.
KEYS: tuple[str, ...] = tuple(p.camel(a.name) for a in attrs.fields(p.ServerConfiguration))
#: Flat ``initializationOptions`` keys that name the client, not settings (the web page
#: and earlier VS Code extensions send them): ignored without a warning.
CLIENT_KEYS = ("client", "clientVersion")
#: What a live session takes from a change: model and approval mode through
#: ``SessionService.update_settings``; the step timeout is read at each turn.
LIVE_KEYS = ("model", "approvalMode", "stepTimeout")
_RUNTIMES = {"auto": None, "docker": True, "local": False}
_LISTS = ("bannedCommands", "disabledTools")


@dataclass
class Parsed:
    """A configuration object read: the good values (wire key -> converted value), and
    the problems, each a sentence naming the key."""

    values: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def section(data: Any) -> Any:
    """The Pygent section of what a client sent: ``data["pygent"]`` when it is there,
    else ``data`` itself (a flat object)."""
    if isinstance(data, Mapping) and isinstance(data.get(SECTION), (Mapping, list)):
        return data[SECTION]
    return data


def _convert(key: str, value: Any) -> Any:
    """One value, converted; ValueError says what was expected."""
    if key == "diagnosticMatchers":
        return _matchers(value)
    if key == "followAlong":
        return parse_setting("network", value)  # a boolean, read as every boolean is
    if isinstance(value, Mapping) or (isinstance(value, list) and key not in _LISTS):
        raise ValueError(f"expected a {'list' if key in _LISTS else 'single value'}, got {value!r}")
    if key == "runtime":
        text = str(value).strip().lower()
        if text not in _RUNTIMES:
            raise ValueError(f"expected one of {', '.join(_RUNTIMES)}, got {value!r}")
        return text
    if key == "syncMode":
        text = str(value).strip().lower()
        if text not in SYNC_MODES:
            raise ValueError(f"expected one of {', '.join(SYNC_MODES)}, got {value!r}")
        return text
    if key == "approvalTimeout":
        return parse_setting("command_timeout", value)  # seconds, > 0
    return parse_setting(_FIELDS[key], value)


def _matchers(value: Any) -> list[dict[str, Any]]:
    """``diagnosticMatchers``: a list of matcher objects, each checked (its regular
    expressions compiled, its groups present) so a bad one is reported now."""
    from pygent.diagnostics.matchers import matcher_from_config

    if not isinstance(value, list):
        raise ValueError(f"expected a list of matcher objects, got {value!r}")
    out = []
    for i, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            raise ValueError(f"item {i}: expected an object with tool and pattern, got {entry!r}")
        unknown = set(entry) - {"tool", "pattern", "command", "severity"}
        if unknown:
            raise ValueError(f"item {i}: unknown keys {sorted(unknown)}")
        matcher_from_config(entry)  # raises ValueError naming the problem
        out.append({k: entry[k] for k in ("tool", "pattern", "command", "severity") if entry.get(k)})
    return out


def parse(data: Any, where: str = SECTION, ignore: tuple[str, ...] = ()) -> Parsed:
    """Read a configuration object (see the module docstring); ``where`` prefixes the
    key in messages (``pygent.maxSteps: ...``); keys in ``ignore`` are skipped silently.
    None or an empty Lua table is empty."""
    out = Parsed()
    inner = section(data)
    if inner is not data:  # {"pygent": {...}}: name the keys as pygent.<key>
        where = where if where.endswith(SECTION) else f"{where}.{SECTION}"
        data = inner
    if data is None or data == []:
        return out
    if not isinstance(data, Mapping):
        out.errors.append(f"{where}: expected an object, got {data!r}")
        return out
    for key, value in data.items():
        name = f"{where}.{key}"
        if key in ignore:
            continue
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = "" if close else f"; known keys: {', '.join(KEYS)}"
            out.warnings.append(f"{name}: unknown setting, ignored{hint}{known}")
            continue
        if value is None or value == "":
            continue  # not set: the server's own setting applies
        try:
            out.values[key] = _convert(key, value)
        except ValueError as exc:
            out.errors.append(f"{name}: {exc}")
    return out


class ClientConfiguration:
    """The client's configuration and the effective settings it makes.

    Args:
        base: the server's own settings (``pygent lsp`` flags > environment > ``pygent.toml``).
        approval_timeout: the server's own approval timeout (``--approval-timeout``).
    """

    def __init__(self, base: Settings, approval_timeout: float) -> None:
        self.base = base
        self.base_approval_timeout = approval_timeout
        #: Wire key -> converted value: what the client's configuration sets.
        self.values: dict[str, Any] = {}
        #: Problems with the last configuration received.
        self.warnings: list[str] = []
        #: What the last change applied to live sessions, and what only to new ones.
        self.applied_to_live: list[str] = []
        self.new_sessions_only: list[str] = []

    def replace(self, values: dict[str, Any]) -> list[str]:
        """Take a complete configuration; returns the keys whose effective value changed."""
        before = self.effective()
        self.values = dict(values)
        return self._changed(before)

    def merge(self, values: dict[str, Any]) -> list[str]:
        """Take some keys (``pygent/configuration``); returns the changed keys."""
        before = self.effective()
        self.values.update(values)
        return self._changed(before)

    def _changed(self, before: p.EffectiveConfiguration) -> list[str]:
        after = self.effective()
        return [
            p.camel(a.name)
            for a in attrs.fields(p.EffectiveConfiguration)
            if getattr(before, a.name) != getattr(after, a.name)
        ]

    @property
    def settings(self) -> Settings:
        """The base settings of the sessions created from now on."""
        changes = {_FIELDS[k]: v for k, v in self.values.items() if k in _FIELDS}
        if "approvalMode" in self.values:
            changes["confirm_bash"] = None  # the client's mode wins over --confirm-bash
        if "runtime" in self.values:
            changes["use_docker"] = _RUNTIMES[self.values["runtime"]]
        return dataclasses.replace(self.base, **changes) if changes else self.base

    @property
    def approval_timeout(self) -> float:
        return float(self.values.get("approvalTimeout", self.base_approval_timeout))

    @property
    def follow_along(self) -> bool:
        return bool(self.values.get("followAlong", False))

    @property
    def diagnostic_matchers(self) -> list[dict[str, Any]]:
        return list(self.values.get("diagnosticMatchers", []))

    @property
    def sync_mode(self) -> str | None:
        """The sync mode of new sessions that name none (None: the service's default)."""
        value = self.values.get("syncMode")
        return str(value) if value is not None else None

    def effective(self) -> p.EffectiveConfiguration:
        s = self.settings
        runtime = {None: "auto", True: "docker", False: "local"}[s.use_docker]
        return p.EffectiveConfiguration(
            model=s.model,
            base_url=s.base_url,
            approval_mode=s.effective_approval_mode(),  # type: ignore[arg-type]
            runtime=runtime,  # type: ignore[arg-type]
            sync_mode=self.sync_mode or SessionOptions().sync_mode,  # type: ignore[arg-type]
            image=s.image,
            network=s.network,
            max_steps=s.max_steps,
            max_tasks=s.max_tasks,
            step_timeout=s.step_timeout,
            task_timeout=s.task_timeout,
            command_timeout=s.command_timeout,
            request_timeout=s.request_timeout,
            temperature=s.temperature,
            tool_choice=s.tool_choice,  # type: ignore[arg-type]
            approval_timeout=self.approval_timeout,
            banned_commands=list(s.banned_commands),
            disabled_tools=list(s.disabled_tools),
            follow_along=self.follow_along,
            diagnostic_matchers=[str(m["tool"]) for m in self.diagnostic_matchers],
            budget_tokens=s.budget_tokens,
            budget_cost=s.budget_cost,
            budget_calls=s.budget_calls,
            budget_time=s.budget_time,
        )

    def result(self) -> p.ConfigurationResult:
        return p.ConfigurationResult(
            self.effective(),
            sorted(self.values),
            list(self.applied_to_live),
            list(self.new_sessions_only),
            list(self.warnings),
        )
