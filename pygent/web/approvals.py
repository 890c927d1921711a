"""Approvals in the browser: a pending request becomes a card on every page; the first answer wins.

Nobody answering is a denial that says why: no page connected when the agent asks, no
answer within the timeout, or every page closed for longer than a short grace period
(long enough for a reload). Cancelling the turn withdraws its requests. Mirrors the
VS Code host's ``src/chat/approvals.ts`` and the LSP approver's guarantees.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pygent.approval import ApprovalOption, ApprovalRequest, ApprovalResponse

log = logging.getLogger(__name__)

#: Seconds to wait for an answer before denying.
DEFAULT_TIMEOUT = 120.0
#: Seconds without any page before pending requests are denied (a reload takes less).
DISCONNECT_GRACE = 5.0

#: Button titles, as the language server names the options.
OPTION_NAMES = {
    ApprovalOption.ALLOW_ONCE: "Allow once",
    ApprovalOption.ALLOW_ALWAYS: "Always allow in this session",
    ApprovalOption.REJECT_ONCE: "Deny",
    ApprovalOption.REJECT_ALWAYS: "Always deny in this session",
}

#: (session id, request, "pending" | "resolved", outcome) -> a ``permission`` update.
StatusListener = Callable[[str, ApprovalRequest, str, str], None]


def _deny(why: str) -> ApprovalResponse:
    return ApprovalResponse(ApprovalOption.REJECT_ONCE, f"denied: {why}", automatic=True)


def preview_kind(request: ApprovalRequest) -> str:
    """``command`` for shell calls, ``diff`` for file writes, else ``text`` (as the LSP says)."""
    if request.tool == "bash" or "cmd" in request.arguments:
        return "command"
    if request.preview.startswith("--- a/"):
        return "diff"
    return "text"


def approval_view(approval_id: str, session_id: str, request: ApprovalRequest) -> dict[str, Any]:
    """The page's ``ApprovalView`` of a request."""
    path = request.arguments.get("path") if isinstance(request.arguments, dict) else None
    options = []
    for option in request.options:
        name = OPTION_NAMES.get(option)
        if name is None:
            continue
        if option is ApprovalOption.ALLOW_ALWAYS and request.always:
            name = f"{name}: {', '.join(request.always)}"
        options.append({"optionId": option.value, "name": name})
    return {
        "id": approval_id,
        "sessionId": session_id,
        "taskId": request.task_id,
        "callId": request.call_id,
        "tool": request.tool,
        "preview": request.preview,
        "previewKind": preview_kind(request),
        "path": path if isinstance(path, str) else None,
        "reason": request.reason,
        "options": options,
    }


@dataclass
class _Pending:
    view: dict[str, Any]
    request: ApprovalRequest
    future: asyncio.Future[ApprovalResponse]


class ApprovalBroker:
    """Every pending approval of one ``pygent ui`` server.

    Args:
        timeout: seconds to wait for an answer before denying.
        has_pages: whether a page is connected that can answer.
        opened: show a new approval (``ApprovalView``) on every page.
        closed: remove an approval's card (its id and how it ended).
        status: report ``permission`` pending/resolved for the session's tool card.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        grace: float = DISCONNECT_GRACE,
        has_pages: Callable[[], bool],
        opened: Callable[[dict[str, Any]], None],
        closed: Callable[[str, str], None],
        status: StatusListener,
    ) -> None:
        self.timeout = timeout
        self.grace = grace
        self.has_pages = has_pages
        self.opened = opened
        self.closed = closed
        self.status = status
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._orphan_timer: asyncio.TimerHandle | None = None

    def approver(self, session_id: str) -> WebApprover:
        """The :class:`~pygent.approval.Approver` of one session."""
        return WebApprover(self, session_id)

    async def ask(self, session_id: str, request: ApprovalRequest) -> ApprovalResponse:
        """Show the request on the pages and wait for an answer (on the server's loop)."""
        if not self.has_pages():
            response = _deny("no browser page of pygent ui was open to answer the approval request")
            self.status(session_id, request, "resolved", response.message)
            return response
        approval_id = f"a{next(self._ids)}"
        future: asyncio.Future[ApprovalResponse] = asyncio.get_running_loop().create_future()
        entry = _Pending(approval_view(approval_id, session_id, request), request, future)
        self._pending[approval_id] = entry
        self.status(session_id, request, "pending", "")
        self.opened(entry.view)
        try:
            response = await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except asyncio.TimeoutError:
            response = _deny(f"nobody answered in the browser within {self.timeout:g}s")
            self._close(approval_id, "timeout")
        except asyncio.CancelledError:
            # The turn was cancelled while waiting: withdraw the card, then stop.
            self._close(approval_id, "cancelled")
            self.status(session_id, request, "resolved", "cancelled")
            raise
        shown = response.message if response.automatic else response.option.value
        self.status(session_id, request, "resolved", shown)
        return response

    def answer(self, approval_id: str, option_id: str, message: str | None) -> bool:
        """The user's answer; False when the approval is gone or the option was not offered."""
        entry = self._pending.get(approval_id)
        if entry is None:
            return False
        offered = {o.value for o in entry.request.options}
        if option_id not in offered:
            log.warning("approval %s: option %r was not offered", approval_id, option_id)
            return False
        self._resolve(
            approval_id, ApprovalResponse(ApprovalOption(option_id), message or ""), option_id
        )
        return True

    def cancel_all(self, session_id: str | None = None) -> None:
        """Withdraw pending approvals (the user stopped the turn, or the server stops)."""
        for approval_id, entry in list(self._pending.items()):
            if session_id is None or entry.view["sessionId"] == session_id:
                self._resolve(approval_id, ApprovalResponse(ApprovalOption.CANCELLED), "cancelled")

    def views(self) -> list[dict[str, Any]]:
        """The pending approvals, oldest first (a page that connects gets them all)."""
        return [entry.view for entry in self._pending.values()]

    def pages_changed(self, count: int) -> None:
        """The number of connected pages changed: with none, deny what waits after the grace."""
        if count > 0:
            if self._orphan_timer is not None:
                self._orphan_timer.cancel()
                self._orphan_timer = None
            return
        if self._pending and self._orphan_timer is None and self.loop is not None:
            self._orphan_timer = self.loop.call_later(self.grace, self._orphaned)

    def _orphaned(self) -> None:
        self._orphan_timer = None
        if self.has_pages():
            return
        for approval_id in list(self._pending):
            self._resolve(
                approval_id, _deny("the browser page was closed before anyone answered"), "denied"
            )

    def _resolve(self, approval_id: str, response: ApprovalResponse, outcome: str) -> None:
        entry = self._pending.pop(approval_id, None)
        if entry is None:
            return
        if not entry.future.done():
            entry.future.set_result(response)
        self.closed(approval_id, outcome)

    def _close(self, approval_id: str, outcome: str) -> None:
        entry = self._pending.pop(approval_id, None)
        if entry is None:
            return
        if not entry.future.done():
            entry.future.cancel()
        self.closed(approval_id, outcome)


class WebApprover:
    """One session's approver: asks the broker on the server's loop, from any thread."""

    def __init__(self, broker: ApprovalBroker, session_id: str) -> None:
        self.broker = broker
        self.session_id = session_id

    async def request_approval(self, request: ApprovalRequest) -> ApprovalResponse:
        loop = self.broker.loop
        if loop is None or loop.is_closed():
            return _deny("the pygent ui server is not running")
        if asyncio.get_running_loop() is loop:
            return await self.broker.ask(self.session_id, request)
        # A delegated task asks from its manager's thread; cancelling its turn cancels
        # the wrapped future, which cancels the request on the server's loop too.
        future = asyncio.run_coroutine_threadsafe(self.broker.ask(self.session_id, request), loop)
        return await asyncio.wrap_future(future)
