"""The LSP approver: asks the editor with ``pygent/requestPermission`` and never hangs.

A client that does not implement the request, answers with an error or with something
that is not one of the offered options, or stays silent past the timeout gets the
call denied, with a reason the model and the user can read. Cancelling the turn while
the request is pending withdraws it (``$/cancelRequest`` to the client).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcMethodNotFound

from pygent.approval import ApprovalOption, ApprovalRequest, ApprovalResponse
from pygent.lsp import convert
from pygent.lsp import protocol as p
from pygent.policy import Action, Policy, Rule

if TYPE_CHECKING:
    from pygent.lsp.server import PygentLanguageServer

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 120.0
#: Button titles of the ``window/showMessageRequest`` fallback.
MESSAGE_TITLES = {
    "allow_once": "Allow once",
    "allow_always": "Always allow (this session)",
    "reject_once": "Deny",
    "reject_always": "Always deny (this session)",
}


def _deny(why: str) -> ApprovalResponse:
    return ApprovalResponse(ApprovalOption.REJECT_ONCE, f"denied: {why}", automatic=True)


def parse_answer(raw: Any) -> tuple[str | None, str, str | None]:
    """(option id, message, pattern) from the flat or the ACP-shaped answer."""
    if not isinstance(raw, dict):
        return None, "", None
    option = raw.get("optionId")
    outcome = raw.get("outcome")
    if isinstance(outcome, dict):
        if outcome.get("outcome") == "cancelled":
            option = "cancelled"
        else:
            option = outcome.get("optionId", option)
    elif outcome == "cancelled":
        option = "cancelled"
    message = raw.get("message")
    pattern = raw.get("pattern")
    return (
        option if isinstance(option, str) else None,
        message if isinstance(message, str) else "",
        pattern if isinstance(pattern, str) and pattern.strip() else None,
    )


class LspApprover:
    """The :class:`~pygent.approval.Approver` of one session of the language server.

    Args:
        server: the language server (its loop sends the request).
        session_id: the session the requests belong to.
        timeout: seconds to wait for an answer before denying.
        policy_of: the session's policy, for ``allow_always`` answers with a ``pattern``.
    """

    def __init__(
        self,
        server: PygentLanguageServer,
        session_id: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        policy_of: Callable[[], Policy | None] | None = None,
    ) -> None:
        self.server = server
        self.session_id = session_id
        self.timeout = timeout
        self.policy_of = policy_of

    async def request_approval(self, request: ApprovalRequest) -> ApprovalResponse:
        loop = self.server.loop
        if loop is None:
            return _deny("the editor is not connected")
        if asyncio.get_running_loop() is loop:
            return await self._ask(request)
        # A delegated task asks from its manager's thread: the request goes out from
        # the server's loop; cancelling the task's turn cancels it there too.
        future = asyncio.run_coroutine_threadsafe(self._ask(request), loop)
        return await asyncio.wrap_future(future)

    def _status(
        self, request: ApprovalRequest, state: Literal["pending", "resolved"], outcome: str = ""
    ) -> None:
        channel = self.server.channels.get(self.session_id)
        if channel is not None:
            channel.push(
                p.PermissionUpdate(
                    task_id=request.task_id, call_id=request.call_id, state=state, outcome=outcome
                )
            )

    def _withdraw(self, msg_id: str) -> None:
        self.server.protocol._request_futures.pop(msg_id, None)
        self.server.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id=msg_id))

    async def _send(self, method: str, params: Any) -> Any:
        """Send a request to the editor and wait, withdrawing it when cancelled or late."""
        msg_id = f"pygent-permission-{uuid.uuid4().hex[:12]}"
        try:
            return await asyncio.wait_for(
                self.server.protocol.send_request_async(method, params, msg_id=msg_id), self.timeout
            )
        except (asyncio.CancelledError, asyncio.TimeoutError):
            self._withdraw(msg_id)
            raise

    async def _ask(self, request: ApprovalRequest) -> ApprovalResponse:
        self._status(request, "pending")
        try:
            if self.server.permission_request_unsupported:
                response = await self._ask_by_message(request)
            else:
                response = await self._ask_by_request(request)
        except asyncio.CancelledError:
            self._status(request, "resolved", "cancelled")
            raise
        except asyncio.TimeoutError:
            response = _deny(
                f"the editor did not answer the approval request within {self.timeout:g}s"
            )
        except JsonRpcException as exc:
            response = _deny(
                f"the editor answered the approval request with an error ({exc.message})"
            )
        shown = response.option.value if not response.automatic else response.message
        self._status(request, "resolved", shown)
        return response

    async def _ask_by_request(self, request: ApprovalRequest) -> ApprovalResponse:
        params = p.unstructure(convert.permission_params(request, self.session_id))
        try:
            raw = await self._send(p.REQUEST_PERMISSION, params)
        except JsonRpcMethodNotFound:
            # Remembered: later calls go straight to the fallback (or are denied).
            self.server.permission_request_unsupported = True
            return await self._ask_by_message(request)
        return self._interpret(raw, request)

    def _client_shows_message_requests(self) -> bool:
        caps = getattr(self.server.protocol, "client_capabilities", None)
        return getattr(getattr(caps, "window", None), "show_message", None) is not None

    async def _ask_by_message(self, request: ApprovalRequest) -> ApprovalResponse:
        """Fallback for generic clients: ``window/showMessageRequest`` with the options."""
        if not self._client_shows_message_requests():
            return _deny(
                f"the editor does not implement {p.REQUEST_PERMISSION} (nor "
                "window/showMessageRequest), so nobody could approve this call"
            )
        titles = {
            o.value: MESSAGE_TITLES[o.value] for o in request.options if o.value in MESSAGE_TITLES
        }
        preview = (
            request.preview if len(request.preview) <= 1500 else request.preview[:1500] + "\n[...]"
        )
        params = lsp.ShowMessageRequestParams(
            type=lsp.MessageType.Warning,
            message=f"Pygent wants to run {request.tool} ({request.reason}):\n{preview}",
            actions=[lsp.MessageActionItem(title=t) for t in titles.values()],
        )
        try:
            item = await self._send(lsp.WINDOW_SHOW_MESSAGE_REQUEST, params)
        except JsonRpcMethodNotFound:
            return _deny(
                f"the editor does not implement {p.REQUEST_PERMISSION}, so nobody "
                "could approve this call"
            )
        title = getattr(item, "title", None)
        for option, shown in titles.items():
            if title == shown:
                return ApprovalResponse(ApprovalOption(option), "")
        return _deny("the approval message was dismissed")

    def _interpret(self, raw: Any, request: ApprovalRequest) -> ApprovalResponse:
        option, message, pattern = parse_answer(raw)
        offered = {o.value for o in request.options}
        if option == "cancelled":
            return _deny("the user dismissed the approval request")
        if option is None or option not in offered:
            shown = repr(option) if option is not None else repr(raw)[:100]
            return _deny(
                f"the editor answered {shown}, which is not one of the options "
                f"({', '.join(sorted(offered))})"
            )
        choice = ApprovalOption(option)
        if choice is ApprovalOption.ALLOW_ALWAYS and pattern is not None:
            policy = self.policy_of() if self.policy_of is not None else None
            if policy is not None:
                # The user's own pattern replaces the one Pygent would derive.
                policy.add_rule(
                    Rule(
                        request.tool,
                        pattern.strip(),
                        Action.ALLOW,
                        reason=f"always allowed: {pattern.strip()}",
                        source="session",
                    )
                )
                choice = ApprovalOption.ALLOW_ONCE
        return ApprovalResponse(choice, message)
