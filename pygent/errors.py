"""The one exception tree of Pygent: every error a user can meet derives from PygentError.

Tool failures are *values* (a ToolResult with ``ok=False`` goes back to the model);
these exceptions are for errors that end a turn or a start-up: configuration,
model API, runtime and protocol failures. Each message says what happened and
what to do, and never contains a secret.
"""

from __future__ import annotations


class PygentError(Exception):
    """Base class: a clear, user-facing message (no traceback needed)."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint

    def user_message(self) -> str:
        """The message plus the hint, as a user should see it."""
        text = str(self)
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class ConfigError(PygentError):
    """Invalid settings: a bad TOML file, an unknown value, a bad flag."""


class ModelError(PygentError):
    """The model API failed; the turn ends, the session survives."""


class ModelAuthError(ModelError):
    """The API key was rejected (401/403)."""


class ModelNotFoundError(ModelError):
    """The model name is unknown to the provider (404)."""


class ModelQuotaError(ModelError):
    """Rate limit or quota exhausted after retries (429)."""


class ContextTooLongError(ModelError):
    """The conversation no longer fits the model's context window."""


class ModelConnectionError(ModelError):
    """The model server could not be reached or timed out."""


class RuntimeUnavailable(PygentError):
    """The asked-for sandbox (e.g. Docker) cannot be used."""


class SandboxError(PygentError):
    """The sandbox failed while running a command (container died, shell lost)."""


class PathError(PygentError):
    """A file path was refused: outside the workspace, a link out, not a regular file."""


class SessionError(PygentError):
    """A session file cannot be used (locked, unreadable, from a newer version)."""


class ToolError(PygentError):
    """Raised by a tool body to report a failure to the model (becomes a ToolResult)."""
