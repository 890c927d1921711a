"""The sandbox: ``Runtime`` (the facade) over docker, local and fake backends."""

from pygent.runtime.base import Backend, CommandResult, ShellTransport
from pygent.runtime.facade import Runtime

__all__ = ["Backend", "CommandResult", "Runtime", "ShellTransport"]
