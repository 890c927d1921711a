"""One typed settings object and its one loader: the only code that reads the environment.

Precedence, highest first: explicit overrides (CLI flags, API arguments) >
environment variables (``PYGENT_*``, ``OPENAI_*``) > a config file loaded with
:func:`pygent.config.load_config` > ``pygent.toml`` (current directory, then the home
directory) > defaults. A bad value is a :class:`~pygent.errors.ConfigError` naming the
variable or the file and key, never a traceback. The language server puts the editor's
configuration over these (:mod:`pygent.lsp.configuration`, through :func:`parse_setting`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pygent.errors import ConfigError
from pygent.persona import DEFAULT_PERSONA, Persona
from pygent.server_profile import TOOL_CHOICES, RequestOptions

DEFAULT_MODEL = "gpt-4.1-mini"
DEFAULT_IMAGE = "python:3.12-slim"
APPROVAL_MODES = ("auto", "confirm", "never", "read-only", "api")
#: ``PYGENT_LSP_HOST``: whether ``pygent lsp --stdio`` joins a running session host.
LSP_HOST_MODES = ("auto", "never", "require")


@dataclass
class Settings:
    """Every setting Pygent has. Build it with :func:`load_settings`."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    model: str = DEFAULT_MODEL
    image: str = DEFAULT_IMAGE
    use_docker: bool | None = None  # None: auto (Docker when an engine answers)
    network: bool = False
    docker_memory: str = "2g"
    docker_cpus: float = 2.0
    docker_pids: int = 512
    docker_runtime: str | None = None  # OCI runtime for sandboxes ("runsc": gVisor)
    # The warm pool of a session host (pygent.runtime.pool): sandboxes kept started per
    # kind (0: off), and seconds without a request before they are removed.
    pool_size: int = 0
    pool_idle: float = 600.0
    # How a Docker sandbox gets the folder: auto (mount when the engine sees this
    # machine's folders, else transfer), mount or transfer (pygent.runtime.remote).
    workspace_mode: str = "auto"
    # Which sandbox: auto (Docker, else bubblewrap, else the bare host, said loudly),
    # docker, bwrap or host. PYGENT_USE_DOCKER / --docker / --no-docker still decide first.
    sandbox: str = "auto"
    env: dict[str, str] = field(default_factory=dict, repr=False)  # extra sandbox variables
    max_tasks: int = 3
    history_file: Path | None = None
    workspace: Path | None = None
    step_timeout: float | None = None
    task_timeout: float | None = None
    command_timeout: float = 300.0
    request_timeout: float = 120.0
    temperature: float | None = None  # None: the server's default
    tool_choice: str = "auto"  # sent with the tools: auto | required | none | omit
    stream_tools: bool | None = None  # None: stream until the server shows it cannot
    parallel_tool_calls: bool | None = None  # False: one call per reply, sent one at a time
    max_steps: int = 50
    persona_name: str = DEFAULT_PERSONA.name
    persona: str = DEFAULT_PERSONA.description
    task_personas: list[Persona] = field(default_factory=list)
    init_files: list[str] = field(default_factory=list)
    snapshot: Path | None = None
    confirm_bash: bool | None = None  # None: the approval mode decides
    approval_mode: str = "auto"
    banned_commands: list[str] = field(default_factory=list)
    disabled_tools: list[str] = field(default_factory=list)
    output_limit: int = 64 * 1024 * 1024
    sessions_dir: Path = field(default_factory=lambda: _data_home() / "sessions")
    # A session host (pygent serve) closes a session nobody is attached to, with no turn
    # running, after this many seconds (None: never).
    host_idle_timeout: float | None = 1800.0
    host_dir: Path = field(default_factory=lambda: _host_home())  # the host's socket folder
    lsp_host: str = "auto"  # pygent lsp --stdio: auto (join a running host) | never | require
    # Long sessions (docs/long-sessions.md): the model's context window per model name
    # ("*": any model), when compaction starts, prices (USD per million tokens) and budgets.
    context_window: dict[str, int] = field(default_factory=dict)
    compact_threshold: float = 0.8
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    budget_tokens: int | None = None
    budget_cost: float | None = None
    budget_calls: int | None = None
    budget_time: float | None = None
    task_budget_tokens: int | None = None  # None: the generous default of pygent.budget
    task_budget_cost: float | None = None
    task_budget_calls: int | None = None
    # [mcp.servers.NAME] tables (docs/mcp.md): pygent.mcp.McpServerSpec objects.
    mcp_servers: list[Any] = field(default_factory=list, repr=False)
    config_files: list[Path] = field(default_factory=list)  # the TOML files that were read
    warnings: list[str] = field(default_factory=list)
    #: The fields a source set (a config file, a variable, a flag): the rest are defaults.
    #: A resumed session keeps its own approval mode unless the user chose one now.
    chosen: set[str] = field(default_factory=set)

    @property
    def request_options(self) -> RequestOptions:
        """What every model request carries, from these settings."""
        return RequestOptions(
            tool_choice=self.tool_choice,  # type: ignore[arg-type]  # checked when parsed
            temperature=self.temperature,
            stream_tools=self.stream_tools,
            parallel_tool_calls=self.parallel_tool_calls,
        )

    @property
    def data_dir(self) -> Path:
        """Pygent's own data folder (sessions, input history, logs)."""
        return self.sessions_dir.parent

    @property
    def main_persona(self) -> Persona:
        return Persona(self.persona_name, self.persona)

    def effective_approval_mode(self) -> str:
        """The approval mode after ``confirm_bash`` (``--confirm-bash``) is applied."""
        if self.confirm_bash is True:
            return "confirm"
        if self.confirm_bash is False:
            return "never"
        return self.approval_mode

    def chosen_approval_mode(self) -> str | None:
        """The approval mode if the user chose one (flag, variable, config file), else
        ``None``: a resumed session then keeps the mode it was left in."""
        if self.chosen & {"approval_mode", "confirm_bash"}:
            return self.effective_approval_mode()
        return None

    def public_dict(self) -> dict[str, Any]:
        """Settings without secrets, JSON-ready (for /save and the editors)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("api_key", "warnings", "config_files", "chosen"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif f.name == "task_personas":
                value = [dataclasses.asdict(p) for p in value]
            out[f.name] = value
        out["env"] = sorted(self.env)  # names only: values may be secret
        out["mcp_servers"] = [s.describe() for s in self.mcp_servers]  # no env, no headers
        return out


def _host_home() -> Path:
    """Where the session host's socket lives: private to the user (checked on use)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "pygent"
    return Path("/tmp") / f"pygent-{os.getuid()}"


def _data_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pygent"


# --- value parsers: each raises ValueError with a message for the user -------------------


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false (1/0), got {value!r}")


def _auto_bool(value: Any) -> bool | None:
    if isinstance(value, str) and value.strip().lower() in ("", "auto"):
        return None
    return _bool(value)


def _int(value: Any) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None
    if number < 0:
        raise ValueError(f"expected a number >= 0, got {number}")
    return number


def _positive_int(value: Any) -> int:
    number = _int(value)
    if number < 1:
        raise ValueError(f"expected a number >= 1, got {number}")
    return number


def _float(value: Any) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if number <= 0:
        raise ValueError(f"expected a number > 0, got {number}")
    return number


def _opt_float(value: Any) -> float | None:
    return None if str(value).strip() in ("", "none", "0") else _float(value)


def _lsp_host(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in LSP_HOST_MODES:
        raise ValueError(f"expected one of {', '.join(LSP_HOST_MODES)}, got {value!r}")
    return text


#: Values of ``PYGENT_SANDBOX`` / ``sandbox``.
SANDBOX_KINDS = ("auto", "docker", "bwrap", "host")


def _sandbox(value: Any) -> str:
    text = str(value).strip().lower()
    text = {"bubblewrap": "bwrap", "local": "host", "none": "host"}.get(text, text)
    if text not in SANDBOX_KINDS:
        raise ValueError(f"expected one of {', '.join(SANDBOX_KINDS)}, got {value!r}")
    return text


#: Values of ``PYGENT_WORKSPACE_MODE``: how a Docker sandbox gets the workspace.
WORKSPACE_MODES = ("auto", "mount", "transfer")


def _workspace_mode(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in WORKSPACE_MODES:
        raise ValueError(f"expected one of {', '.join(WORKSPACE_MODES)}, got {value!r}")
    return text


def _opt_str(value: Any) -> str | None:
    text = str(value).strip()
    return None if text.lower() in ("", "none", "default") else text


def _temperature(value: Any) -> float | None:
    text = str(value).strip().lower()
    if text in ("", "none", "default"):
        return None
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"expected a number from 0 to 2, got {value!r}") from None
    if not 0 <= number <= 2:
        raise ValueError(f"expected a number from 0 to 2, got {number:g}")
    return number


def _tool_choice(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in TOOL_CHOICES:
        raise ValueError(f"expected one of {', '.join(TOOL_CHOICES)}, got {value!r}")
    return text


def _str(value: Any) -> str:
    return str(value)


def _path(value: Any) -> Path:
    return Path(os.path.expanduser(str(value)))


def _list(value: Any) -> list[str]:
    """A list from TOML, or a string separated by os.pathsep (upstream) or commas."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    text = str(value)
    sep = os.pathsep if os.pathsep in text else ","
    return [part.strip() for part in text.split(sep) if part.strip()]


def _personas(value: Any) -> list[Persona]:
    """From `[[task_personas]]` tables, a JSON array, or names separated by os.pathsep."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON ({exc.msg} at position {exc.pos})") from None
    if isinstance(value, str):
        return [Persona(name, name) for name in _list(value)]
    personas = []
    for item in value:
        if isinstance(item, str):
            personas.append(Persona(item, item))
        elif isinstance(item, Mapping) and "name" in item:
            name = str(item["name"])
            personas.append(
                Persona(name, str(item.get("description", name)), _persona_mcp(item.get("mcp"), name))
            )
        else:
            raise ValueError("each persona needs a name (and a description)")
    return personas


def _persona_mcp(value: Any, name: str) -> tuple[str, ...] | None:
    """A persona's ``mcp``: absent or true, every MCP server; false, none; a list, those."""
    if value is None or value is True:
        return None
    if value is False:
        return ()
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"persona {name!r}: mcp must be true, false or a list of MCP server names")


def _env_pairs(value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    pairs = {}
    for item in _list(value):
        name, sep, val = item.partition("=")
        if not sep or not name:
            raise ValueError(f"expected NAME=value, got {item!r}")
        pairs[name] = val
    return pairs


def _opt_int(value: Any) -> int | None:
    return None if str(value).strip().lower() in ("", "none", "0") else _positive_int(value)


def _opt_amount(value: Any) -> float | None:
    if str(value).strip().lower() in ("", "none", "0"):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"expected an amount (e.g. 2.5), got {value!r}") from None
    if number <= 0:
        raise ValueError(f"expected an amount > 0, got {number:g}")
    return number


def _threshold(value: Any) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"expected a fraction such as 0.8, got {value!r}") from None
    if not 0.1 <= number <= 1:
        raise ValueError(f"expected a fraction from 0.1 to 1, got {number:g}")
    return number


def _context_windows(value: Any) -> dict[str, int]:
    """``8192`` (any model), ``"gpt-4.1=1047576,local=4096"`` or a TOML table per model."""
    if isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, int) or str(value).strip().isdigit():
        pairs = [("*", value)]
    else:
        pairs = []
        # Commas only: model names may hold ":" (``llama3:8b``), _list's other separator.
        for item in (part.strip() for part in str(value).split(",") if part.strip()):
            name, sep, size = item.rpartition("=")
            if not sep or not name:
                raise ValueError(f"expected TOKENS or MODEL=TOKENS, got {item!r}")
            pairs.append((name.strip(), size))
    out: dict[str, int] = {}
    for name, size in pairs:
        number = _positive_int(size)
        if number < 256:
            raise ValueError(f"a context window of {number} tokens for {name!r} is too small")
        out[name] = number
    return out


def _prices(value: Any) -> dict[str, dict[str, float]]:
    """``{model: {input, output, cached_input}}`` in USD per million tokens (TOML or JSON)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(value, Mapping):
        raise ValueError("expected a table: model name -> {input, output, cached_input}")
    out: dict[str, dict[str, float]] = {}
    for model, price in value.items():
        if not isinstance(price, Mapping) or not {"input", "output"} <= set(price):
            raise ValueError(f"the price of {model!r} needs input and output (USD per 1M tokens)")
        entry: dict[str, float] = {}
        for key, amount in price.items():
            if key not in ("input", "output", "cached_input"):
                raise ValueError(f"unknown price key {key!r} for {model!r}")
            if not isinstance(amount, (int, float)) or amount < 0:
                raise ValueError(f"the {key} price of {model!r} must be a number >= 0")
            entry[str(key)] = float(amount)
        out[str(model)] = entry
    return out


def _mode(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in APPROVAL_MODES:
        raise ValueError(f"expected one of {', '.join(APPROVAL_MODES)}, got {value!r}")
    return text


@dataclass(frozen=True)
class _Spec:
    field: str
    variable: str
    parse: Callable[[Any], Any]


#: field name -> environment variable and parser. TOML keys are the variable names
#: (any case, with or without the PYGENT_ prefix) or the field names.
SPECS: tuple[_Spec, ...] = (
    _Spec("api_key", "OPENAI_API_KEY", _str),
    _Spec("base_url", "OPENAI_BASE_URL", _str),
    _Spec("model", "PYGENT_MODEL", _str),
    _Spec("image", "PYGENT_IMAGE", _str),
    _Spec("use_docker", "PYGENT_USE_DOCKER", _auto_bool),
    _Spec("network", "PYGENT_NETWORK", _bool),
    _Spec("docker_memory", "PYGENT_DOCKER_MEMORY", _str),
    _Spec("docker_cpus", "PYGENT_DOCKER_CPUS", _float),
    _Spec("docker_pids", "PYGENT_DOCKER_PIDS", _positive_int),
    _Spec("pool_size", "PYGENT_POOL_SIZE", _int),
    _Spec("pool_idle", "PYGENT_POOL_IDLE", _float),
    _Spec("workspace_mode", "PYGENT_WORKSPACE_MODE", _workspace_mode),
    _Spec("docker_runtime", "PYGENT_DOCKER_RUNTIME", _opt_str),
    _Spec("sandbox", "PYGENT_SANDBOX", _sandbox),
    _Spec("env", "PYGENT_ENV", _env_pairs),
    _Spec("max_tasks", "PYGENT_MAX_TASKS", _positive_int),
    _Spec("history_file", "PYGENT_HISTORY_FILE", _path),
    _Spec("workspace", "PYGENT_WORKSPACE", _path),
    _Spec("step_timeout", "PYGENT_STEP_TIMEOUT", _opt_float),
    _Spec("task_timeout", "PYGENT_TASK_TIMEOUT", _opt_float),
    _Spec("command_timeout", "PYGENT_COMMAND_TIMEOUT", _float),
    _Spec("request_timeout", "PYGENT_REQUEST_TIMEOUT", _float),
    _Spec("temperature", "PYGENT_TEMPERATURE", _temperature),
    _Spec("tool_choice", "PYGENT_TOOL_CHOICE", _tool_choice),
    _Spec("stream_tools", "PYGENT_STREAM_TOOLS", _auto_bool),
    _Spec("parallel_tool_calls", "PYGENT_PARALLEL_TOOL_CALLS", _auto_bool),
    _Spec("max_steps", "PYGENT_MAX_STEPS", _positive_int),
    _Spec("persona_name", "PYGENT_PERSONA_NAME", _str),
    _Spec("persona", "PYGENT_PERSONA", _str),
    _Spec("task_personas", "PYGENT_TASK_PERSONAS", _personas),
    _Spec("task_personas", "PYGENT_TASK_PERSONAS_JSON", _personas),
    _Spec("init_files", "PYGENT_INIT_FILES", _list),
    _Spec("snapshot", "PYGENT_SNAPSHOT", _path),
    _Spec("confirm_bash", "PYGENT_CONFIRM_BASH", _bool),
    _Spec("approval_mode", "PYGENT_APPROVAL_MODE", _mode),
    _Spec("banned_commands", "PYGENT_BANNED_COMMANDS", _list),
    _Spec("disabled_tools", "PYGENT_DISABLED_TOOLS", _list),
    _Spec("output_limit", "PYGENT_OUTPUT_LIMIT", _positive_int),
    _Spec("sessions_dir", "PYGENT_SESSIONS_DIR", _path),
    _Spec("host_idle_timeout", "PYGENT_HOST_IDLE_TIMEOUT", _opt_float),
    _Spec("host_dir", "PYGENT_HOST_DIR", _path),
    _Spec("lsp_host", "PYGENT_LSP_HOST", _lsp_host),
    _Spec("context_window", "PYGENT_CONTEXT_WINDOW", _context_windows),
    _Spec("compact_threshold", "PYGENT_COMPACT_THRESHOLD", _threshold),
    _Spec("prices", "PYGENT_PRICES", _prices),
    _Spec("budget_tokens", "PYGENT_BUDGET_TOKENS", _opt_int),
    _Spec("budget_cost", "PYGENT_BUDGET_COST", _opt_amount),
    _Spec("budget_calls", "PYGENT_BUDGET_CALLS", _opt_int),
    _Spec("budget_time", "PYGENT_BUDGET_TIME", _opt_float),
    _Spec("task_budget_tokens", "PYGENT_TASK_BUDGET_TOKENS", _opt_int),
    _Spec("task_budget_cost", "PYGENT_TASK_BUDGET_COST", _opt_amount),
    _Spec("task_budget_calls", "PYGENT_TASK_BUDGET_CALLS", _opt_int),
)

_BY_FIELD = {s.field: s for s in SPECS}
_BY_KEY: dict[str, _Spec] = {}
for _s in SPECS:
    _BY_KEY[_s.variable.lower()] = _s
    _BY_KEY[_s.field] = _s
    if _s.variable.startswith("PYGENT_"):
        _BY_KEY[_s.variable[len("PYGENT_") :].lower()] = _s
_BY_KEY["initial_files"] = _BY_FIELD["init_files"]
_BY_KEY["task_personas_json"] = _BY_KEY["pygent_task_personas_json"]


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; errors name the file and the line."""
    # Imported here: most starts have no pygent.toml, and the parser costs a few ms.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", hint="fix the line shown") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None


def discover_config(cwd: Path | None = None) -> Path | None:
    """``pygent.toml`` in the current directory, else in the home directory."""
    for folder in (cwd or Path.cwd(), Path.home()):
        candidate = folder / "pygent.toml"
        if candidate.is_file():
            return candidate
    return None


#: Values from :func:`pygent.config.load_config`, used by settings built after it.
_loaded_layer: dict[str, Any] = {}
_loaded_sources: list[Path] = []


def set_loaded_layer(values: dict[str, Any], source: Path | None) -> None:
    """Record the values of an explicitly loaded config file (see load_config)."""
    _loaded_layer.update(values)
    if source is not None:
        _loaded_sources.append(source)


def _toml_layer(data: Mapping[str, Any], source: Path, warnings: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key.lower() == "host" and isinstance(value, Mapping):
            # The [host] table: ``[host] idle_timeout`` is ``host_idle_timeout``.
            nested = {f"host_{k}": v for k, v in value.items()}
            out.update(_toml_layer(nested, source, warnings))
            continue
        if key.lower() == "docker" and isinstance(value, Mapping):
            # The [docker] table: ``[docker] runtime = "runsc"`` is ``docker_runtime``.
            nested = {f"docker_{k}": v for k, v in value.items()}
            out.update(_toml_layer(nested, source, warnings))
            continue
        if key.lower() == "pool" and isinstance(value, Mapping):
            # The [pool] table: ``[pool] size`` is ``pool_size``, ``idle`` is ``pool_idle``.
            nested = {f"pool_{k}": v for k, v in value.items()}
            out.update(_toml_layer(nested, source, warnings))
            continue
        if key.lower() in ("budget", "task_budget") and isinstance(value, Mapping):
            # ``[budget] tokens = ...`` is ``budget_tokens`` (and ``[task_budget]`` likewise).
            nested = {f"{key.lower()}_{k}": v for k, v in value.items()}
            out.update(_toml_layer(nested, source, warnings))
            continue
        if key.lower() == "mcp":
            # [mcp.servers.NAME] tables and [mcp] import = [".mcp.json"] (docs/mcp.md).
            from pygent.mcp.config import specs_from_toml

            out["mcp_servers"] = specs_from_toml(value, source)
            continue
        spec = _BY_KEY.get(key.lower())
        if spec is None:
            warnings.append(f"{source}: unknown key {key!r} ignored")
            continue
        try:
            out[spec.field] = spec.parse(value)
        except ValueError as exc:
            raise ConfigError(f"{source}: key {key!r}: {exc}") from None
    return out


def parse_config_file(path: Path, warnings: list[str] | None = None) -> dict[str, Any]:
    """Read a ``pygent.toml`` into typed field values."""
    return _toml_layer(read_toml(path), path, warnings if warnings is not None else [])


def parse_setting(name: str, value: Any) -> Any:
    """One setting's value converted as every source converts it (``"5"`` -> 5).

    Args:
        name: a field name (``max_steps``) or a variable name (``PYGENT_MAX_STEPS``).
        value: the raw value (a string, or a JSON/TOML value).

    Raises:
        KeyError: ``name`` is no setting.
        ValueError: the value is bad; the message says what was expected.
    """
    spec = _BY_FIELD.get(name) or _BY_KEY.get(name.lower())
    if spec is None:
        raise KeyError(name)
    try:
        return spec.parse(value)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def _override_layer(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Explicit overrides (CLI flags, API arguments), parsed like every other source:
    ``{"sessions_dir": "~/s", "max_steps": "5"}`` gives a Path and an int. Keys are the
    field names (or the variable names, as in ``pygent.toml``); None means "not given"."""
    fields = {f.name for f in dataclasses.fields(Settings)}
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        spec = _BY_FIELD.get(key) or _BY_KEY.get(str(key).lower())
        if spec is None:
            if key not in fields:
                raise ConfigError(f"unknown setting {key!r}")
            out[key] = value  # bookkeeping fields (config_files, warnings): as given
            continue
        if spec.field == "task_personas" and not isinstance(value, str):
            value = [
                dataclasses.asdict(p) if isinstance(p, Persona) else p for p in value
            ]
        try:
            out[spec.field] = spec.parse(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"setting {key!r}: {exc}") from None
    return out


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Build the settings from all sources (see the module docstring for precedence).

    Args:
        overrides: field values that win over everything (CLI flags, API arguments),
            checked and converted like the other sources (a string path becomes a
            ``Path``, ``"5"`` an int); ``None`` values are ignored.
        environ: the environment to read (default: ``os.environ``).
        config_file: an explicit ``pygent.toml`` (``--config``); otherwise discovered.
        cwd: where to look for ``pygent.toml`` (default: the current directory).
    """
    env = os.environ if environ is None else environ
    settings = Settings()
    warnings: list[str] = []
    values: dict[str, Any] = {}
    path = config_file or discover_config(cwd)
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")
    if path is not None:
        values.update(parse_config_file(path, warnings))
        settings.config_files.append(path)
    values.update(_loaded_layer)
    settings.config_files.extend(_loaded_sources)
    for spec in SPECS:
        raw = env.get(spec.variable)
        if raw is None or (raw == "" and spec.field not in ("persona",)):
            continue
        try:
            values[spec.field] = spec.parse(raw)
        except ValueError as exc:
            raise ConfigError(
                f"environment variable {spec.variable}: {exc}",
                hint=f"fix or unset {spec.variable}",
            ) from None
    values.update(_override_layer(overrides or {}))
    for key, value in values.items():
        setattr(settings, key, value)
    settings.chosen = set(values)
    settings.warnings = warnings
    return settings
