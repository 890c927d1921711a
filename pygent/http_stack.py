"""The HTTP stack of the model layer: ``httpx2``, imported without ``trio``.

httpcore2 (under httpx2) imports trio whenever trio is installed, only to run under
trio's event loop: 0.1-0.2 s of every start of Pygent, which runs on asyncio alone.
trio is hidden for the length of that one import (a ``None`` in ``sys.modules`` makes
``import trio`` fail there), and only when nothing has imported it yet; code that
imports trio afterwards gets it as usual.
"""

from __future__ import annotations

import sys

_hide_trio = "trio" not in sys.modules
if _hide_trio:
    sys.modules["trio"] = None  # type: ignore[assignment]
try:
    # httpx2 loads httpcore2 on its first request; load it here, under the same guard.
    import httpcore2  # noqa: E402, F401  (trio must be hidden first)
    import httpx2  # noqa: E402
finally:
    if _hide_trio and sys.modules.get("trio", False) is None:
        del sys.modules["trio"]

__all__ = ["httpx2"]
