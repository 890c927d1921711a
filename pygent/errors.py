"""The one exception tree of Pygent: every error a user can meet derives from PygentError.

Tool failures are *values* (a ToolResult with ``ok=False`` goes back to the model);
these exceptions are for errors that end a turn or a start-up: configuration,
model API, runtime and protocol failures. Each message says what happened and
what to do, and never contains a secret.

Each class carries the JSON-RPC ``error.code`` the editor protocol answers with
(``code``; a subclass inherits its parent's), so the LSP edge maps an error with one
attribute read and ``error.data.hint`` gets the hint::

    PygentError                  -32005  PYGENT_ERROR: anything not more precise below
    ├── ConfigError                      bad settings, TOML file, flag
    ├── ModelError                       the model API failed; the session survives
    │   ├── ModelAuthError               key rejected (401/403)
    │   ├── ModelNotFoundError           unknown model (404)
    │   ├── ModelQuotaError              rate limit or quota (429)
    │   ├── ContextTooLongError          the conversation no longer fits
    │   └── ModelConnectionError         unreachable or timed out
    ├── RuntimeUnavailable       -32003  RUNTIME_UNAVAILABLE: the asked-for sandbox cannot run
    ├── SandboxError                     the sandbox failed mid-command
    ├── PathError                -32006  PATH_REFUSED: outside the workspace, a link out...
    ├── SessionError                     a saved session cannot be used (locked, newer)
    ├── UnknownSessionError      -32001  SESSION_NOT_FOUND: no live session has this id
    ├── SessionBusyError         -32002  SESSION_BUSY: a turn is already running
    ├── ParamsError              -32602  INVALID_PARAMS: a payload does not fit its type
    ├── ToolError                        raised in a tool body; becomes a failed ToolResult
    ├── CheckpointError                  (pygent/checkpoints.py) a checkpoint cannot be used
    └── TaskError                        (pygent/task_info.py) a task request was refused
        ├── TaskLimitError               max_tasks tasks are already running
        └── UnknownTaskError     -32004  TASK_NOT_FOUND: no task has this id

The two marked with a module are still defined there (to move here); the LSP edge
gives ``UnknownTaskError`` its code until then.
"""

from __future__ import annotations

from typing import ClassVar

#: JSON-RPC code of an unknown task id (``UnknownTaskError``, defined in ``pygent.task_info``).
TASK_NOT_FOUND = -32004


class PygentError(Exception):
    """Base class: a clear, user-facing message (no traceback needed)."""

    #: The JSON-RPC ``error.code`` of this error at the editor protocol's edge.
    code: ClassVar[int] = -32005
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

    code = -32003


class SandboxError(PygentError):
    """The sandbox failed while running a command (container died, shell lost)."""


class PathError(PygentError):
    """A file path was refused: outside the workspace, a link out, not a regular file."""

    code = -32006


class SessionError(PygentError):
    """A session file cannot be used (locked, unreadable, from a newer version)."""


class UnknownSessionError(PygentError):
    """No live session has this id."""

    code = -32001


class SessionBusyError(PygentError):
    """A turn is already running in the session."""

    code = -32002


class ParamsError(PygentError, ValueError):
    """Params that do not fit their type; the message names the field
    (``invalid PromptParams: sessionId: expected a string, got number``)."""

    code = -32602


class ToolError(PygentError):
    """Raised by a tool body to report a failure to the model (becomes a ToolResult)."""
