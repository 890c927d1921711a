"""The REPL's default model: built off the start-up path, warmed up while the user types.

The REPL shows its prompt first; a background thread then imports the HTTP stack and
asks the server once whether it takes the key. The first prompt waits for that check
to end (it takes milliseconds on a local server, 3 s at most) rather than race it:
single-stream servers such as llama-cpp-python end a running answer when another
request arrives.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

WARM_UP_WAIT = 5.0  # seconds the first prompt waits for the key check, at most


class LazyOpenAIModel:
    """Stands in for :class:`pygent.openai_model.OpenAIModel` until the first call.

    Args:
        settings: the session's settings (key, base URL, request timeout, options).
        on_retry: shown while the model layer waits to retry (a countdown).
        on_notice: hears what Pygent learned about the server (said once each).
        on_request_sent: called once, when the first request (or key check) is on the wire.
    """

    def __init__(
        self,
        settings: Any,
        on_retry: Callable[[int, float, str], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
        on_request_sent: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_retry = on_retry
        self._on_notice = on_notice
        self._on_request_sent = on_request_sent  # once: the first request is on the wire
        self._model: Any = None
        self._lock = threading.Lock()
        self._warm = threading.Event()
        self._warm.set()  # nothing to wait for until a warm-up starts

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
                    options=s.request_options,
                    on_notice=self._on_notice,
                )
                self._model.on_request_sent = self._request_sent
            return self._model

    def warm_up(self, on_problem: Callable[[str], None] | None = None) -> None:
        """Load the HTTP stack in a daemon thread; ``on_problem`` hears of a rejected key.

        Other failures are left to the first real call, which reports them.
        """
        self._warm.clear()

        def run() -> None:
            try:
                model = self._get()
                problem = asyncio.run(self._check(model))
            except ImportError as exc:
                log.warning("loading the model's HTTP stack failed: %s", exc)
                return
            finally:
                self._warm.set()
            if problem and on_problem is not None:
                on_problem(problem)

        threading.Thread(target=run, name="pygent-warm-up", daemon=True).start()

    def _request_sent(self) -> None:
        callback, self._on_request_sent = self._on_request_sent, None
        if callback is not None:
            callback()

    @staticmethod
    async def _check(model: Any) -> str | None:
        try:
            return await model.check_key()
        finally:
            await model.aclose()  # this loop ends here; its connections with it

    async def astream(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]] | None,
        *,
        on_text: Any = None,
        on_discard: Any = None,
    ) -> Any:
        # Off the loop, so Ctrl-C and the spinner stay live meanwhile.
        if not self._warm.is_set():
            await asyncio.to_thread(self._warm.wait, WARM_UP_WAIT)
        try:
            loaded = self._model if self._model is not None else await asyncio.to_thread(self._get)
            return await loaded.astream(
                messages, model, tools, on_text=on_text, on_discard=on_discard
            )
        finally:
            self._request_sent()  # said once: also when the call failed before sending

    @property
    def base_url(self) -> str:
        """The real model's API root (read after the first call, when it is loaded)."""
        return str(self._get().base_url)

    def _async_client(self) -> Any:
        # The real model's connection pool: the context-window question
        # (pygent.context_window.server_window) goes through it, as for every front end.
        return self._get()._async_client()

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
