"""The HTTP stack of the model layer: ``httpx2``, imported without ``trio`` and without
``importlib.metadata``.

Two imports that httpcore2 and httpx2 make at load time cost a Pygent launch more than
the rest of the stack, and serve nothing Pygent uses:

- httpcore2 imports trio whenever trio is installed, only to run under trio's event
  loop: 0.1-0.2 s of every start of Pygent, which runs on asyncio alone. trio is hidden
  for the length of the import (a ``None`` in ``sys.modules`` makes ``import trio`` fail
  there), and only when nothing has imported it yet.
- Both import ``importlib.metadata`` for one call, ``version()`` of themselves (their
  ``__version__``, and httpx2's User-Agent header): 25-30 ms, most of it the module
  itself (``email``, ``zipfile``, ``csv``). For that import they get a stand-in whose
  ``version()`` reads the installed version from the name of the distribution's
  ``.dist-info`` folder, as installers write it (``httpx2-2.17.0.dist-info``); a name not
  found there, and anything else asked of the stand-in, loads the real module.

Both are undone when the import ends: code that imports either module afterwards gets
the real one.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

_DIST_INFO = ".dist-info"


def _installed_version(name: str) -> str | None:
    """The version in ``<name>-<version>.dist-info`` on ``sys.path``, first found first."""
    prefix = name.replace("-", "_").lower() + "-"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # a zip file, a missing folder
            continue
        for folder in names:
            if folder.endswith(_DIST_INFO) and folder.lower().startswith(prefix):
                return folder[len(prefix) : -len(_DIST_INFO)]
    return None


class _MetadataStandIn(types.ModuleType):
    """``importlib.metadata`` for the length of one import: ``version()`` without the module."""

    def version(self, distribution_name: str) -> str:
        found = _installed_version(distribution_name)
        if found is None:
            return self._real().version(distribution_name)
        return found

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system's questions (__path__, __spec__)
            raise AttributeError(name)
        return getattr(self._real(), name)

    def _real(self) -> types.ModuleType:
        if sys.modules.get("importlib.metadata") is self:
            del sys.modules["importlib.metadata"]
        import importlib.metadata

        return importlib.metadata


_hide_trio = "trio" not in sys.modules
_stand_in = None if "importlib.metadata" in sys.modules else _MetadataStandIn("importlib.metadata")
if _hide_trio:
    sys.modules["trio"] = None  # type: ignore[assignment]
if _stand_in is not None:
    sys.modules["importlib.metadata"] = _stand_in
try:
    # httpx2 loads httpcore2 on its first request; load it here, under the same guards.
    import httpcore2  # noqa: E402, F401  (trio must be hidden first)
    import httpx2  # noqa: E402
finally:
    if _hide_trio and sys.modules.get("trio", False) is None:
        del sys.modules["trio"]
    if _stand_in is not None and sys.modules.get("importlib.metadata") is _stand_in:
        del sys.modules["importlib.metadata"]

__all__ = ["httpx2"]
