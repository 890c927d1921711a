"""The default model, built on first use so ``import openai`` (~0.4 s) stays off start-up.

The REPL shows its prompt first and warms the import up in the background while the
user types; a user who types fast just pays the rest of the import on the first turn.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class LazyOpenAIModel:
    """Stands in for :class:`pygent.openai_model.OpenAIModel` until the first call.

    Args:
        settings: the session's settings (key, base URL, request timeout).
        on_retry: shown while the model layer waits to retry (a countdown).
    """

    def __init__(
        self, settings: Any, on_retry: Callable[[int, float, str], None] | None = None
    ) -> None:
        self._settings = settings
        self._on_retry = on_retry
        self._model: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._model is None:
                from pygent.openai_model import OpenAIModel

                s = self._settings
                self._model = OpenAIModel(
                    api_key=s.api_key,
                    base_url=s.base_url,
                    timeout=s.request_timeout,
                    on_retry=self._on_retry,
                )
            return self._model

    def warm_up(self, on_problem: Callable[[str], None] | None = None) -> None:
        """Load the SDK in a daemon thread; ``on_problem`` hears of a rejected API key.

        Other failures are left to the first real call, which reports them.
        """

        def run() -> None:
            try:
                self._get()
                problem = asyncio.run(self._touch())
            except ImportError as exc:
                log.warning("loading the model SDK failed: %s", exc)
                return
            if problem and on_problem is not None:
                on_problem(problem)

        threading.Thread(target=run, name="pygent-warm-up", daemon=True).start()

    async def _touch(self) -> str | None:
        # The SDK imports its HTTP stack (anyio backends, httpcore, TLS helpers: ~0.3-1 s)
        # on the first request, not on import: one cheap request does it here instead,
        # and tells whether the server takes the key.
        import openai

        s = self._settings
        client = openai.AsyncOpenAI(
            api_key=s.api_key or "none", base_url=s.base_url, max_retries=0, timeout=3.0
        )
        try:
            await client.models.list()
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            return (
                f"the model server at {client.base_url} rejected the API key "
                f"(HTTP {exc.status_code}): check OPENAI_API_KEY"
            )
        except openai.OpenAIError as exc:  # no /models, a timeout...: the first call will say
            log.debug("warm-up request: %s", type(exc).__name__)
        finally:
            await client.close()
        return None

    async def astream(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]] | None,
        *,
        on_text: Any = None,
    ) -> Any:
        # The import may still be running in the warm-up thread: wait for it off the
        # loop, so Ctrl-C and the spinner stay live meanwhile.
        loaded = self._model if self._model is not None else await asyncio.to_thread(self._get)
        return await loaded.astream(messages, model, tools, on_text=on_text)

    def chat(
        self, messages: list[dict[str, Any]], model: str, tools: list[dict[str, Any]] | None
    ) -> Any:
        return self._get().chat(messages, model, tools)

    async def aclose(self) -> None:
        """Close the HTTP client of the running loop, if the model was ever built."""
        if self._model is not None:
            await self._model.aclose()

    def close(self) -> None:
        with self._lock:
            model = self._model
        if model is not None and hasattr(model, "close"):
            model.close()

    def __repr__(self) -> str:
        return f"LazyOpenAIModel(loaded={self._model is not None})"
