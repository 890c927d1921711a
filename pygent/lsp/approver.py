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
            )  # type: ignore[arg-type]

    def _withdraw(self, msg_id: str) -> None:
        self.server.protocol._request_futures.pop(msg_id, None)
        self.server.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id=msg_id))

    async def _ask(self, request: ApprovalRequest) -> ApprovalResponse:
        params = convert.permission_params(request, self.session_id)
        msg_id = f"pygent-permission-{uuid.uuid4().hex[:12]}"
        self._status(request, "pending")
        try:
            raw = await asyncio.wait_for(
                self.server.protocol.send_request_async(
                    p.REQUEST_PERMISSION, p.unstructure(params), msg_id=msg_id
                ),
                self.timeout,
            )
        except asyncio.CancelledError:
            self._withdraw(msg_id)
            self._status(request, "resolved", "cancelled")
            raise
        except asyncio.TimeoutError:
            self._withdraw(msg_id)
            response = _deny(
                f"the editor did not answer the approval request within {self.timeout:g}s"
            )
        except JsonRpcMethodNotFound:
            response = _deny(
                f"the editor does not implement {p.REQUEST_PERMISSION}, so nobody "
                "could approve this call"
            )
        except JsonRpcException as exc:
            response = _deny(
                f"the editor answered the approval request with an error ({exc.message})"
            )
        else:
            response = self._interpret(raw, request)
        shown = response.option.value if not response.automatic else response.message
        self._status(request, "resolved", shown)
        return response

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
