"""The code of the methods ``dataclasses`` writes for Pygent's classes, compiled once.

``@dataclass`` writes ``__init__``, ``__repr__``, ``__eq__`` (and ``__setattr__``,
``__delattr__`` and ``__hash__`` when frozen) as source text and compiles it on every
start: on Python 3.11 about 0.2 ms a method, 60-80 ms of the 75 classes a launch of
Pygent defines before its first model request, a quarter of that launch. The compiled
code objects are kept here the way Python keeps a module's bytecode: in the package's
``__pycache__`` (``PYTHONPYCACHEPREFIX`` honoured), per interpreter version, not written
under ``PYTHONDONTWRITEBYTECODE``, and trusted exactly as far as the ``.pyc`` files
beside it (whoever can write one can write the other).

A method is found by its whole source text, so a cached method is the one ``dataclasses``
would have compiled: a change in a class, in Pygent or in ``dataclasses`` itself, is a new
text and is compiled. Only the classes of Pygent and of the HTTP libraries its launch
loads are kept; a program that imports Pygent keeps compiling its own as before.
"""

from __future__ import annotations

import atexit
import builtins
import dataclasses
import marshal
import os
import sys
from collections.abc import Callable
from types import CodeType
from typing import Any

#: Packages whose dataclasses are kept: Pygent, and what its launch loads before the
#: first model request.
_PACKAGES = frozenset({"pygent", "h11", "httpcore2", "anyio"})
#: A file beyond this is started afresh rather than grown (texts of older versions).
_MAX_BYTES = 2 << 20

_path: str | None = None
#: Source text -> the marshalled code of one ``dataclasses`` call; unmarshalled per use.
_stored: dict[str, bytes] = {}
_added = False
_compile_count = 0


def _cache_path() -> str | None:
    """Where this interpreter keeps the code: beside Pygent's own bytecode.

    As ``importlib.util.cache_from_source`` places a ``.pyc`` (not imported for it: it
    would cost a launch several milliseconds).
    """
    tag = sys.implementation.cache_tag
    if tag is None:  # an interpreter that writes no bytecode
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.pycache_prefix:
        folder = os.path.join(sys.pycache_prefix, os.path.splitdrive(here)[1].lstrip(os.sep))
    else:
        folder = os.path.join(here, "__pycache__")
    suffix = f".opt-{sys.flags.optimize}" if sys.flags.optimize else ""
    return os.path.join(folder, f"dataclass-code.{tag}{suffix}.marshal")


def _load(path: str) -> dict[str, bytes]:
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_BYTES + 1)
        if len(data) > _MAX_BYTES:
            return {}  # grown with the texts of older versions: started afresh
        stored = marshal.loads(data)
    except (OSError, EOFError, ValueError, TypeError):
        return {}  # none yet, unreadable or damaged: compiled afresh and rewritten
    if type(stored) is not dict:
        return {}
    return stored


def _exec_with(previous: Callable[..., Any]) -> Callable[..., Any]:
    def exec_(source: Any, globals: Any = None, locals: Any = None, /, **kwargs: Any) -> Any:
        if type(source) is str and type(globals) is dict:
            package = str(globals.get("__name__", "")).partition(".")[0]
            if package in _PACKAGES:
                source = _code(source)
        return previous(source, globals, locals, **kwargs)

    return exec_


def _code(text: str) -> CodeType:
    global _added, _compile_count
    data = _stored.get(text)
    if data is not None:
        try:
            code = marshal.loads(data)
        except (EOFError, ValueError, TypeError):
            code = None
        if type(code) is CodeType:
            return code
    # What exec() of the text would compile: dataclasses has no __future__ imports.
    code = compile(text, "<string>", "exec", dont_inherit=True)
    _compile_count += 1
    if _path is not None:
        _stored[text] = marshal.dumps(code)
        _added = True
    return code


def _save() -> None:
    if not _added or _path is None or sys.dont_write_bytecode:
        return
    data = marshal.dumps(_stored)
    temporary = f"{_path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(_path), exist_ok=True)
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, _path)  # atomic: a reader sees the old file or the new one
    except OSError:  # a read-only install, like one without .pyc files: compiled each time
        try:
            os.unlink(temporary)
        except OSError:
            pass


def install() -> None:
    """Serve Pygent's dataclass methods from the cache, from now on in this process."""
    global _path, _stored
    previous = vars(dataclasses).get("exec", builtins.exec)
    if getattr(previous, "__module__", "") == __name__:
        return  # installed already (a reload of pygent)
    _path = _cache_path()
    if _path is not None:
        _stored = _load(_path)
    dataclasses.exec = _exec_with(previous)  # type: ignore[attr-defined]
    atexit.register(_save)


def compiled_count() -> int:
    """How many dataclass methods this process has compiled (not found in the cache)."""
    return _compile_count
