"""MCP server specifications: what to start (or reach) and where, from every config source.

Three shapes come in and one dataclass comes out:

* ``[mcp.servers.NAME]`` tables of ``pygent.toml`` (:func:`specs_from_toml`);
* the ``mcpServers`` object of the ``.mcp.json`` files other tools write
  (:func:`specs_from_mcp_json`);
* the ``mcpServers`` list an ACP client passes in ``session/new`` (:func:`specs_from_acp`).

Secrets stay references here: ``env = { GITHUB_TOKEN = "$GITHUB_TOKEN" }`` keeps the
string ``$GITHUB_TOKEN`` until :meth:`McpServerSpec.resolved_env` reads the host
environment at start, so a spec can be logged, shown and persisted without a secret.
Values an ACP client sends are literal (the client already resolved them); they are
kept out of ``repr`` and every status the front ends see.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pygent.errors import ConfigError

SANDBOX = "sandbox"
HOST = "host"
WHERE = (SANDBOX, HOST)

#: Server names become part of tool names (``mcp__NAME__TOOL``): keep them simple.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,48}$")
#: ``$VAR`` or ``${VAR}``; ``$$`` is a literal ``$``.
_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _var(match: re.Match[str]) -> str | None:
    """The variable a reference names, None for ``$$``."""
    return match.group(1) or match.group(2)


@dataclass(frozen=True)
class McpServerSpec:
    """One MCP server. Either ``command`` (stdio) or ``url`` (streamable HTTP).

    ``env`` and ``headers`` map names to values that may reference host variables
    (``"$VAR"`` or ``"${VAR}"``), resolved only when the server starts. ``where`` is
    ``sandbox`` (the default for stdio: started inside the session's sandbox) or
    ``host`` (explicit opt-in, no isolation); URL servers are always reached from the
    host. ``start_timeout`` and ``call_timeout`` are seconds.
    """

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    enabled: bool = True
    where: str = SANDBOX
    start_timeout: float = 30.0
    call_timeout: float = 120.0
    #: Where the spec came from (a file, ``acp``), for messages.
    source: str = ""

    @property
    def transport(self) -> str:
        """``stdio`` or ``http``."""
        return "http" if self.url else "stdio"

    @property
    def runs_on_host(self) -> bool:
        """True when the server's process (or its connection) is on the host."""
        return self.url is not None or self.where == HOST

    def resolved_env(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """``env`` with ``$VAR`` references replaced from the host environment.

        Raises:
            ConfigError: a referenced variable is not set (naming it, never a value).
        """
        return _resolve(self.env, environ, self.name, "env")

    def resolved_headers(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """``headers`` with ``$VAR`` references replaced from the host environment."""
        return _resolve(self.headers, environ, self.name, "headers")

    def describe(self) -> str:
        """A one-line, secret-free description (``git: uvx mcp-server-git (sandbox)``)."""
        if self.url:
            return f"{self.name}: {self.url} (remote, from the host)"
        cmd = " ".join([self.command or "", *self.args]).strip()
        return f"{self.name}: {cmd} ({self.where})"

    def secret_values(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """The resolved values of env and headers, so logs and results can redact them."""
        out: list[str] = []
        env = os.environ if environ is None else environ

        def sub(match: re.Match[str]) -> str:
            return env.get(_var(match) or "", "$")

        for mapping in (self.env, self.headers):
            for value in mapping.values():
                text = _REF.sub(sub, value)
                if len(text) >= 4:
                    out.append(text)
        return out


def _resolve(
    mapping: Mapping[str, str], environ: Mapping[str, str] | None, server: str, what: str
) -> dict[str, str]:
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for key, value in mapping.items():

        def sub(match: re.Match[str], key: str = key) -> str:
            var = _var(match)
            if var is None:
                return "$"
            if var not in env:
                raise ConfigError(
                    f"MCP server {server!r}: {what} {key} references ${var}, which is not set",
                    hint=f"export {var} on the host before starting pygent",
                )
            return env[var]

        out[key] = _REF.sub(sub, value)
    return out


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    raise ConfigError(f"{where}: expected a table of names to strings")


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return tuple(str(v) for v in value)
    raise ConfigError(f"{where}: expected a list of strings")


def _pairs(value: Any, where: str) -> dict[str, str]:
    """ACP's ``[{name, value}]`` lists (or a plain mapping, which some clients send)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return _str_map(value, where)
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of {{name, value}} objects")
    out: dict[str, str] = {}
    for item in value:
        if not isinstance(item, Mapping) or "name" not in item:
            raise ConfigError(f"{where}: expected a list of {{name, value}} objects")
        out[str(item["name"])] = str(item.get("value", ""))
    return out


def _timeout(value: Any, default: float, where: str) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{where}: expected a positive number of seconds")
    return float(value)


def make_spec(name: str, table: Mapping[str, Any], source: str) -> McpServerSpec:
    """One spec from a table in the common shape (TOML or ``.mcp.json``).

    Raises:
        ConfigError: naming ``source`` and the server for anything malformed.
    """
    where_txt = f"{source}: MCP server {name!r}"
    if not _NAME.match(name):
        raise ConfigError(
            f"{where_txt}: the name may hold only letters, digits, '-' and '_' (48 at most)"
        )
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where_txt}: expected a table")
    known = {
        "command", "args", "env", "cwd", "url", "headers", "enabled", "disabled",
        "where", "type", "transport", "start_timeout", "call_timeout", "timeout",
    }
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where_txt}: unknown key(s) {', '.join(unknown)}")
    command = table.get("command")
    url = table.get("url")
    if command is not None and not isinstance(command, str):
        raise ConfigError(f"{where_txt}: command must be a string")
    if url is not None and not isinstance(url, str):
        raise ConfigError(f"{where_txt}: url must be a string")
    if bool(command) == bool(url):
        raise ConfigError(f"{where_txt}: give exactly one of command (stdio) or url (HTTP)")
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where_txt}: url must start with http:// or https://")
    kind = table.get("type") or table.get("transport")
    if kind is not None and kind not in ("stdio", "http", "streamable-http", "streamableHttp"):
        raise ConfigError(
            f"{where_txt}: transport {kind!r} is not supported (stdio or http; SSE is not)"
        )
    where = table.get("where", SANDBOX)
    if where not in WHERE:
        raise ConfigError(f"{where_txt}: where must be 'sandbox' or 'host', not {where!r}")
    enabled = table.get("enabled", not table.get("disabled", False))
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where_txt}: enabled must be true or false")
    cwd = table.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise ConfigError(f"{where_txt}: cwd must be a string")
    return McpServerSpec(
        name=name,
        command=command or None,
        args=_str_list(table.get("args"), f"{where_txt}: args"),
        env=_str_map(table.get("env"), f"{where_txt}: env"),
        cwd=cwd,
        url=url or None,
        headers=_str_map(table.get("headers"), f"{where_txt}: headers"),
        enabled=enabled,
        where=HOST if url else where,
        start_timeout=_timeout(table.get("start_timeout"), 30.0, f"{where_txt}: start_timeout"),
        call_timeout=_timeout(
            table.get("call_timeout", table.get("timeout")), 120.0, f"{where_txt}: call_timeout"
        ),
        source=source,
    )


def specs_from_toml(
    mcp_table: Mapping[str, Any], source: str | Path = "pygent.toml"
) -> list[McpServerSpec]:
    """The ``[mcp]`` table of ``pygent.toml`` (its ``servers`` sub-tables) -> specs.

    Args:
        mcp_table: the parsed ``[mcp]`` table (``{"servers": {"git": {...}}}``).
        source: the file, for error messages.
    """
    if not isinstance(mcp_table, Mapping):
        raise ConfigError(f"{source}: [mcp] must be a table")
    unknown = sorted(set(mcp_table) - {"servers", "import"})
    if unknown:
        raise ConfigError(f"{source}: [mcp] unknown key(s) {', '.join(unknown)}")
    servers = mcp_table.get("servers", {})
    if not isinstance(servers, Mapping):
        raise ConfigError(f"{source}: [mcp.servers] must be a table of servers")
    out = [make_spec(str(name), table, str(source)) for name, table in servers.items()]
    # ``import = [".mcp.json"]``: files in the common shape, relative to this file.
    base = Path(source).parent if str(source).endswith(".toml") else Path.cwd()
    for item in _str_list(mcp_table.get("import"), f"{source}: [mcp] import"):
        path = Path(item).expanduser()
        out.extend(specs_from_mcp_json(path if path.is_absolute() else base / path))
    names = [s.name for s in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: MCP server(s) defined twice: {', '.join(dupes)}")
    return out


def specs_from_mcp_json(data: Mapping[str, Any] | str | Path, source: str = ".mcp.json") -> list[McpServerSpec]:
    """The common ``{"mcpServers": {NAME: {command, args, env} | {url, headers}}}`` shape.

    Args:
        data: the parsed object, or a path to the JSON file.
        source: a label for error messages (the path when ``data`` is one).
    """
    if isinstance(data, (str, Path)):
        path = Path(data)
        source = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a JSON object with mcpServers")
    servers = data.get("mcpServers", {})
    if not isinstance(servers, Mapping):
        raise ConfigError(f"{source}: mcpServers must be an object")
    return [make_spec(str(name), table, source) for name, table in servers.items()]


def specs_from_acp(servers: list[Any]) -> list[McpServerSpec]:
    """The ``mcpServers`` of an ACP ``session/new``: stdio ``{name, command, args, env:
    [{name, value}]}`` and ``{type: "http", name, url, headers: [{name, value}]}``.

    Items may be plain dicts or pydantic models (``acp.schema``); SSE servers are
    refused with a clear message. ACP stdio servers run in the sandbox like any other.
    """
    out: list[McpServerSpec] = []
    for index, item in enumerate(servers):
        if hasattr(item, "model_dump"):
            item = item.model_dump(by_alias=True, exclude_none=True)
        if not isinstance(item, Mapping):
            raise ConfigError(f"session/new mcpServers[{index}]: expected an object")
        name = item.get("name")
        if not isinstance(name, str):
            raise ConfigError(f"session/new mcpServers[{index}]: name is required")
        kind = item.get("type", "stdio")
        where = f"session/new mcpServers[{index}] ({name})"
        if kind == "sse":
            raise ConfigError(f"{where}: SSE transport is not supported; use http")
        if kind == "http":
            table: dict[str, Any] = {
                "url": item.get("url"),
                "headers": _pairs(item.get("headers"), f"{where}: headers"),
            }
        elif kind == "stdio":
            table = {
                "command": item.get("command"),
                "args": item.get("args") or [],
                "env": _pairs(item.get("env"), f"{where}: env"),
            }
        else:
            raise ConfigError(f"{where}: unknown transport {kind!r}")
        # An ACP client passes resolved values: escape '$' so nothing is re-resolved.
        spec = make_spec(_safe_name(name), table, "acp")
        out.append(
            McpServerSpec(
                **{
                    **spec.__dict__,
                    "env": {k: v.replace("$", "$$") for k, v in spec.env.items()},
                    "headers": {k: v.replace("$", "$$") for k, v in spec.headers.items()},
                }
            )
        )
    return out


def _safe_name(name: str) -> str:
    """ACP server names are free text; tool names need ``[A-Za-z0-9_-]``."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:48]
    return cleaned or "server"
