"""Approvals in: the request/answer vocabulary, the Approver interface, and the gate that applies a policy.

The core never prompts. When the :class:`~pygent.policy.Policy` says "ask", the
:class:`ApprovalGate` sends an :class:`ApprovalRequest` to an :class:`Approver` (the
REPL, the LSP server, the web UI or an API callback) and waits for an
:class:`ApprovalResponse` with one of a closed set of options (ACP's
``session/request_permission``). Whenever nobody can answer (no approver, a timeout,
an approver that fails or answers garbage) the answer is a denial that says why.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import inspect
import json
import logging
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from pygent.policy import Action, Decision, Policy, Rule

log = logging.getLogger(__name__)

#: Why a request was denied when no approver was given.
NO_APPROVER = "approval required but no interactive approver"


class ApprovalOption(str, Enum):
    """The closed vocabulary of answers."""

    ALLOW_ONCE = "allow_once"
    ALLOW_ALWAYS = "allow_always"
    REJECT_ONCE = "reject_once"
    REJECT_ALWAYS = "reject_always"
    CANCELLED = "cancelled"  # the turn was cancelled while waiting


OPTION_LABELS = {
    ApprovalOption.ALLOW_ONCE: "Allow once",
    ApprovalOption.ALLOW_ALWAYS: "Always allow",
    ApprovalOption.REJECT_ONCE: "Reject",
    ApprovalOption.REJECT_ALWAYS: "Always reject",
    ApprovalOption.CANCELLED: "Cancel",
}
ALL_OPTIONS = (
    ApprovalOption.ALLOW_ONCE,
    ApprovalOption.ALLOW_ALWAYS,
    ApprovalOption.REJECT_ONCE,
    ApprovalOption.REJECT_ALWAYS,
)
#: Protected paths offer no "always allow": each such write is looked at.
PROTECTED_OPTIONS = (
    ApprovalOption.ALLOW_ONCE,
    ApprovalOption.REJECT_ONCE,
    ApprovalOption.REJECT_ALWAYS,
)


@dataclass(frozen=True)
class ApprovalRequest:
    """One question to a person: may this call run?

    ``preview`` is the command text, or a unified diff for a file write, with control
    and invisible characters made visible; ``reason`` says why Pygent asks;
    ``task_id`` is None for the main agent, else the sub-agent's task; ``always``
    names what an "always allow" answer would allow, for the button's label.
    """

    session_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any]
    preview: str
    reason: str
    task_id: str | None = None
    options: tuple[ApprovalOption, ...] = ALL_OPTIONS
    always: tuple[str, ...] = ()  # what "always allow" would allow: ("git status",)


def request_from_wire(params: Any) -> ApprovalRequest:
    """The request a host's ``pygent/approval/request`` carries (its camelCase params);
    options that are not ours are dropped, and none left means allow/reject once."""
    params = params if isinstance(params, dict) else {}
    call = params.get("toolCall") if isinstance(params.get("toolCall"), dict) else {}
    offered = []
    for option in params.get("options") or ():
        try:
            offered.append(ApprovalOption(option.get("optionId")))
        except (ValueError, TypeError, AttributeError):
            continue  # an option of a newer host: not offered here
    return ApprovalRequest(
        session_id=str(params.get("sessionId", "")),
        call_id=str(call.get("callId", "")),
        tool=str(call.get("tool", "")),
        arguments=dict(call.get("arguments") or {}),
        preview=str(call.get("preview", "")),
        reason=str(params.get("reason", "")),
        task_id=params.get("taskId"),
        options=tuple(offered) or (ApprovalOption.ALLOW_ONCE, ApprovalOption.REJECT_ONCE),
    )


@dataclass(frozen=True)
class ApprovalResponse:
    """An answer. ``message`` goes to the model; ``automatic`` is True when no person
    answered (no approver, timeout, failure), so the message is Pygent's, not the user's."""

    option: ApprovalOption
    message: str = ""
    automatic: bool = False

    def __post_init__(self) -> None:
        # A front end may pass the wire value ("allow_once"); anything else is an error
        # here, where the approver can see it, rather than a silent allow later.
        object.__setattr__(self, "option", ApprovalOption(self.option))
        if not isinstance(self.message, str):
            object.__setattr__(self, "message", "" if self.message is None else str(self.message))

    @property
    def allowed(self) -> bool:
        return self.option in (ApprovalOption.ALLOW_ONCE, ApprovalOption.ALLOW_ALWAYS)


def _denied(why: str) -> ApprovalResponse:
    return ApprovalResponse(ApprovalOption.REJECT_ONCE, f"denied: {why}", automatic=True)


@runtime_checkable
class Approver(Protocol):
    """Answers approval requests: the REPL, the LSP server, the web UI, an API callback."""

    async def request_approval(self, request: ApprovalRequest) -> ApprovalResponse: ...


class DenyApprover:
    """Nobody can answer: every request is rejected, saying why."""

    def __init__(self, reason: str = NO_APPROVER) -> None:
        self.reason = reason

    async def request_approval(self, request: ApprovalRequest) -> ApprovalResponse:
        return _denied(f"no one was available to approve ({self.reason})")


class AllowApprover:
    """Allows every request once (for tests and trusted automation)."""

    async def request_approval(self, request: ApprovalRequest) -> ApprovalResponse:
        return ApprovalResponse(ApprovalOption.ALLOW_ONCE)


def _coerce(result: Any) -> ApprovalResponse:
    """A callback's friendly answer as a response: a response, an option, its value, a bool."""
    if isinstance(result, ApprovalResponse):
        return result
    if isinstance(result, bool):
        return ApprovalResponse(ApprovalOption.ALLOW_ONCE if result else ApprovalOption.REJECT_ONCE)
    if isinstance(result, str):
        return ApprovalResponse(ApprovalOption(result))
    raise TypeError(
        f"the approval callback returned {type(result).__name__}; expected an "
        "ApprovalResponse, an ApprovalOption, its value or a bool"
    )


class CallbackApprover:
    """Wraps a callable for API users: ``fn(request)`` returns an ApprovalResponse, an
    ApprovalOption (or its value) or a bool; it may be async. A sync callable runs in
    a worker thread (``in_thread=True``) so a blocking ``input()`` does not stall the
    event loop; cancelling stops the wait, not the thread."""

    def __init__(self, fn: Callable[[ApprovalRequest], Any], *, in_thread: bool = True) -> None:
        self.fn = fn
        self.in_thread = in_thread

    async def request_approval(self, request: ApprovalRequest) -> ApprovalResponse:
        if inspect.iscoroutinefunction(self.fn) or not self.in_thread:
            result = self.fn(request)
        else:
            result = await asyncio.to_thread(self.fn, request)
        if inspect.isawaitable(result):
            result = await result
        return _coerce(result)


class TimeoutApprover:
    """Rejects when ``inner`` has not answered within ``seconds`` (a late answer is ignored)."""

    def __init__(self, inner: Approver, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds

    async def request_approval(self, request: ApprovalRequest) -> ApprovalResponse:
        return await ask(self.inner, request, timeout=self.seconds)


def _being_cancelled() -> bool:
    """True when the current task itself is being cancelled (not just something it awaited)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return True if task is None or cancelling is None else cancelling() > 0


def _checked(result: Any, request: ApprovalRequest) -> ApprovalResponse:
    if not isinstance(result, ApprovalResponse) or not isinstance(result.option, ApprovalOption):
        return _denied(f"the approver gave an invalid answer ({type(result).__name__})")
    option = result.option
    if option is ApprovalOption.CANCELLED or option in request.options:
        return result
    # "Always" when it was not offered (a protected path) still means "this once".
    once = {
        ApprovalOption.ALLOW_ALWAYS: ApprovalOption.ALLOW_ONCE,
        ApprovalOption.REJECT_ALWAYS: ApprovalOption.REJECT_ONCE,
    }.get(option)
    if once is not None and once in request.options:
        return dataclasses.replace(result, option=once)
    return _denied(f"the approver answered {option.value!r}, which was not offered")


async def ask(
    approver: Approver | None, request: ApprovalRequest, *, timeout: float | None = None
) -> ApprovalResponse:
    """Ask ``approver``; every failure becomes a rejection with an explicit reason.

    Args:
        approver: who answers; None means nobody (:class:`DenyApprover`).
        request: the question.
        timeout: seconds to wait; None waits as long as the approver takes.

    Returns:
        The approver's answer, or a ``REJECT_ONCE`` with ``automatic=True`` for no
        approver, a timeout, an exception, a cancelled approval request or a garbage
        answer. Never raises, except :class:`asyncio.CancelledError` when the waiting
        task itself is cancelled (a cancelled turn stops waiting).
    """
    if approver is None:
        approver = DenyApprover()
    try:
        pending = approver.request_approval(request)
        if not inspect.isawaitable(pending):
            result: Any = pending
        elif timeout is None:
            result = await pending
        else:
            result = await asyncio.wait_for(pending, timeout)
    except asyncio.CancelledError:
        if _being_cancelled():
            raise
        # The approver's own wait was cancelled (a client cancelled the request or
        # went away): that is no answer, so deny.
        return _denied("the approval request was cancelled before anyone answered")
    except (asyncio.TimeoutError, TimeoutError) as exc:
        if timeout is not None:
            return _denied(f"no answer within {timeout:g}s")
        log.warning("approver %r failed: %r", approver, exc)
        return _denied(f"the approver failed ({type(exc).__name__}: {exc})")
    except Exception as exc:  # any approver bug must deny, not crash the turn
        log.warning("approver %r failed", approver, exc_info=True)
        return _denied(f"the approver failed ({type(exc).__name__}: {exc})")
    return _checked(result, request)


def visible_text(text: str) -> str:
    """``text`` with control, invisible and bidirectional characters escaped (B10).

    Newlines and tabs stay; ``\\r``, ANSI escapes, zero-width and bidi controls become
    ``\\x1b``/``\\u202e`` style escapes, so a prompt shows what will really run.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch in "\n\t" or (32 <= code < 127):
            out.append(ch)
        elif code < 32 or code == 127 or 0x80 <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif unicodedata.category(ch) in ("Cf", "Zl", "Zp", "Zs", "Co", "Cs", "Cn"):
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def fingerprint(tool: str, arguments: Mapping[str, Any]) -> str:
    """A digest of the exact call, so an executor can check it runs what was approved."""
    data = json.dumps(
        {"tool": tool, "arguments": arguments}, sort_keys=True, default=repr, ensure_ascii=False
    )
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict: ``message`` tells the model why a call did not run."""

    allowed: bool
    message: str = ""
    decision: Decision | None = None
    response: ApprovalResponse | None = None
    rules_added: tuple[Rule, ...] = ()  # from "always" answers, for "always allowed: ..."
    cancelled: bool = False  # the turn was cancelled while waiting
    fingerprint: str = ""  # of the arguments that were decided on


class ApprovalGate:
    """Policy plus approver for one session: decides each call, asks when needed.

    Args:
        policy: the rules (default: ``Policy()``, the API mode).
        approver: who answers; None means nobody can, so every "ask" is denied.
        session_id: put into requests when ``check`` is given none.
        timeout: seconds to wait for an answer (None: as long as the approver takes).
        runtime_kind: overrides the policy's runtime kind.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        approver: Approver | None = None,
        *,
        session_id: str = "",
        timeout: float | None = None,
        runtime_kind: str | None = None,
    ) -> None:
        self.policy = policy if policy is not None else Policy()
        self.approver = approver
        self.session_id = session_id
        self.timeout = timeout
        self.runtime_kind = runtime_kind

    async def check(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        preview: str = "",
        call_id: str = "",
        task_id: str | None = None,
        session_id: str | None = None,
        tool_kind: str | None = None,
    ) -> GateResult:
        """Decide one call; ask the approver when the policy says so.

        Args:
            tool: the tool name.
            arguments: the call's arguments (copied: later changes do not count).
            preview: what the prompt shows (the tools layer's diff for file writes).
            call_id: the model's tool-call id, echoed in the request.
            task_id: the sub-agent task, None for the main agent.
            session_id: the session, default the gate's.
            tool_kind: the registry's kind for the tool (see ``Policy.decide``).
        """
        args = copy.deepcopy(dict(arguments)) if isinstance(arguments, Mapping) else {}
        digest = fingerprint(tool, args)
        try:
            decision = self.policy.decide(
                tool, args, runtime_kind=self.runtime_kind, tool_kind=tool_kind
            )
        except Exception as exc:  # a policy bug must deny, not run the call
            log.exception("approval policy failed for %s", tool)
            return GateResult(
                False, f"denied: the approval policy failed ({exc})", fingerprint=digest
            )
        if decision.action is Action.DENY:
            return GateResult(
                False, f"denied by policy: {decision.reason}", decision, fingerprint=digest
            )
        if decision.action is Action.ALLOW:
            return GateResult(True, "", decision, fingerprint=digest)

        request = ApprovalRequest(
            session_id=self.session_id if session_id is None else session_id,
            call_id=call_id,
            tool=tool,
            arguments=copy.deepcopy(args),  # the approver cannot change what runs
            preview=visible_text(preview or decision.preview),
            reason=decision.reason,
            task_id=task_id,
            options=PROTECTED_OPTIONS if decision.protected else ALL_OPTIONS,
            always=()
            if decision.protected
            else tuple(
                visible_text(r.describe())
                for r in self.policy.always_rules(tool, args, tool_kind=tool_kind)
            ),
        )
        response = await ask(self.approver, request, timeout=self.timeout)
        option = response.option
        if option is ApprovalOption.CANCELLED:
            return GateResult(
                False,
                "cancelled: the turn was cancelled while waiting for approval",
                decision,
                response,
                cancelled=True,
                fingerprint=digest,
            )
        if response.allowed:
            added: tuple[Rule, ...] = ()
            if option is ApprovalOption.ALLOW_ALWAYS:
                added = self.policy.allow_always(tool, args, tool_kind=tool_kind)
            return GateResult(True, "", decision, response, added, fingerprint=digest)
        added = ()
        if option is ApprovalOption.REJECT_ALWAYS:
            added = self.policy.reject_always(tool, args, tool_kind=tool_kind)
        if response.automatic:
            message = f"{response.message} (approval was needed: {decision.reason})"
        else:
            message = "the user denied this tool call"
            if response.message:
                message += f": {response.message}"
            if added:
                shown = ", ".join(r.describe() for r in added)
                message += f" (calls matching {shown} are denied for the rest of this session)"
        return GateResult(False, message, decision, response, added, fingerprint=digest)
