"""The ACP approver: asks the client with ``session/request_permission`` and never hangs.

Pygent's policy decides whether to ask; when it does, the client gets the call (title,
kind, locations, the diff or command) and Pygent's closed set of options (allow once,
allow always, reject once, reject always: ACP's own permission kinds). A client that
answers with an error, with an option that was not offered, or not within the timeout
(:data:`DEFAULT_TIMEOUT` seconds, ``--approval-timeout``) gets the call denied with a
reason the model and the user can read. An "always" answer becomes a session rule in
:class:`~pygent.approval.ApprovalGate`, exactly as in the other front ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from acp import RequestError
from acp import schema as s

from pygent.acp.launch import DEFAULT_APPROVAL_TIMEOUT
from pygent.acp.updates import SessionUpdates, call_title
from pygent.approval import OPTION_LABELS, ApprovalOption, ApprovalRequest, ApprovalResponse

log = logging.getLogger(__name__)

#: Seconds a permission request waits for the client before the call is denied.
DEFAULT_TIMEOUT = DEFAULT_APPROVAL_TIMEOUT


def _deny(why: str) -> ApprovalResponse:
    return ApprovalResponse(ApprovalOption.REJECT_ONCE, f"denied: {why}", automatic=True)


def permission_options(request: ApprovalRequest) -> list[s.PermissionOption]:
    """The offered options, named as Pygent's other front ends name them."""
    out = []
    for option in request.options:
        if option is ApprovalOption.CANCELLED:
            continue
        name = OPTION_LABELS[option]
        if option is ApprovalOption.ALLOW_ALWAYS and request.always:
            name = f"{name}: {', '.join(request.always)[:80]}"
        out.append(s.PermissionOption(option_id=option.value, name=name, kind=option.value))
    return out


class AcpApprover:
    """The :class:`~pygent.approval.Approver` of one ACP session.

    Args:
        send: ``await send(session_id, tool_call, options)`` -> the client's answer
            (the connection's ``request_permission``).
        loop: the connection's loop (delegated tasks ask from their own thread).
        session_id: the session the requests belong to.
        updates: the session's translator (kind, locations, diff of the call).
        flush: delivers the session's queued updates first, so the client has seen
            the ``tool_call`` a request names before the request.
        timeout: seconds to wait for an answer before denying.
    """

    def __init__(
        self,
        send: Callable[..., Any],
        loop: asyncio.AbstractEventLoop,
        session_id: str,
        updates: SessionUpdates,
        flush: Callable[[], Any],
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.send = send
        self.loop = loop
        self.session_id = session_id
        self.updates = updates
        self.flush = flush
        self.timeout = timeout

    async def request_approval(self, request: ApprovalRequest) -> ApprovalResponse:
        if asyncio.get_running_loop() is self.loop:
            return await self._ask(request)
        future = asyncio.run_coroutine_threadsafe(self._ask(request), self.loop)
        return await asyncio.wrap_future(future)

    def tool_call(self, request: ApprovalRequest) -> s.ToolCallUpdate:
        call_id = f"{request.task_id}:{request.call_id}" if request.task_id else request.call_id
        call = self.updates.call_for(call_id, request.tool, request.arguments)
        return s.ToolCallUpdate(
            tool_call_id=call_id,
            title=call_title(request.tool, request.arguments),
            kind=call.kind,
            status="pending",
            content=self.updates.call_content(call, request.preview) or None,
            locations=call.locations or None,
            raw_input=request.arguments,
            field_meta={
                "pygent": {
                    "reason": request.reason,
                    "preview": request.preview,
                    "always": list(request.always),
                    "taskId": request.task_id,
                }
            },
        )

    async def _ask(self, request: ApprovalRequest) -> ApprovalResponse:
        options = permission_options(request)
        try:
            await self.flush()
            answer = await asyncio.wait_for(
                self.send(
                    session_id=self.session_id, tool_call=self.tool_call(request), options=options
                ),
                self.timeout,
            )
        except asyncio.TimeoutError:
            return _deny(
                f"the client did not answer the permission request within {self.timeout:g}s"
            )
        except RequestError as exc:
            return _deny(f"the client answered the permission request with an error ({exc})")
        except ConnectionError:
            return _deny("the client is gone")
        except ValueError as exc:  # an answer that does not fit the schema
            return _deny(f"the client's answer is not a permission outcome ({str(exc)[:200]})")
        outcome = getattr(answer, "outcome", None)
        if isinstance(outcome, s.DeniedOutcome) or outcome is None:
            return _deny("the permission request was cancelled by the client")
        chosen = getattr(outcome, "option_id", None)
        offered = {o.option_id for o in options}
        if chosen not in offered:
            return _deny(
                f"the client chose {chosen!r}, which is not one of the options "
                f"({', '.join(sorted(offered))})"
            )
        return ApprovalResponse(ApprovalOption(chosen))
