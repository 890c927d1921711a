"""Core events on the wire: what a client receives in ``pygent/sessionUpdate`` for a
discarded partial reply and for estimated token usage.

The first tests send through the session's real update channel to a recording stand-in
for the server's protocol object; the last runs ``pygent lsp`` against a model server
that cuts a stream and reports no usage.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from pygent import events as ev
from pygent.lsp import protocol as p
from pygent.lsp.updates import UpdateChannel
from tests.lsp.conftest import request
from tests.openai_server import RawReply, ScriptedOpenAIServer


class Recorder:
    """Stands in for ``server.protocol``: keeps every notification."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def notify(self, method: str, params: Any) -> None:
        self.sent.append((method, params))


async def wire(*events: ev.Event) -> list[dict[str, Any]]:
    """The ``params`` of the notifications a client receives for ``events``."""
    recorder = Recorder()
    server: Any = SimpleNamespace(protocol=recorder)
    channel = UpdateChannel(server, "s1", asyncio.get_running_loop())
    for event in events:
        channel.push_event(event)
    channel.flush()
    assert {method for method, _ in recorder.sent} == {p.SESSION_UPDATE}
    return [params for _, params in recorder.sent]


async def test_a_discard_reaches_the_client_in_order_between_the_replies() -> None:
    sent = await wire(
        ev.MessageDelta(text="The answer is 4"),
        ev.MessageDiscarded(reason="the stream was cut"),
        ev.MessageDelta(text="The answer is 42."),
        ev.MessageDiscarded(task_id="t1", reason="no tool streaming"),
    )
    assert [s["seq"] for s in sent] == [1, 2, 3, 4]
    assert sent[1] == {
        "sessionId": "s1",
        "seq": 2,
        "update": {"type": "message_discarded", "taskId": None, "reason": "the stream was cut"},
    }
    assert sent[3]["update"] == {
        "type": "message_discarded",
        "taskId": "t1",
        "reason": "no tool streaming",
    }
    # What the client receives is valid for the declared type, both ways.
    for params in sent:
        update = params["update"]
        assert p.unstructure(p.structure(update, p.UPDATE_TYPES[update["type"]])) == update


async def test_usage_says_whether_it_is_an_estimate() -> None:
    reported, estimated = await wire(
        ev.Usage(
            prompt_tokens=10, completion_tokens=2, total_prompt_tokens=10, total_completion_tokens=2
        ),
        ev.Usage(
            prompt_tokens=900,
            completion_tokens=40,
            total_prompt_tokens=910,
            total_completion_tokens=42,
            estimated=True,
        ),
    )
    assert reported["update"]["estimated"] is False
    assert estimated["update"] == {
        "type": "usage",
        "taskId": None,
        "promptTokens": 900,
        "completionTokens": 40,
        "totalPromptTokens": 910,
        "totalCompletionTokens": 42,
        "estimated": True,
        "cachedTokens": 0,
        "totalCachedTokens": 0,
        "cost": None,
        "totalCost": None,
        "totalCalls": 0,
        "contextTokens": 0,
        "contextWindow": 0,
    }


def no_usage_stream(text: str) -> RawReply:
    """A streamed answer without a usage chunk (servers that ignore ``include_usage``)."""
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": text}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return RawReply(200, body.encode(), "text/event-stream")


@pytest.mark.timeout(90)
async def test_the_server_withdraws_a_cut_reply_and_marks_estimated_usage(
    start_client, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_truncated_stream("The answer is fort", tool_name=None)
    openai_server.add_text("The answer is 42.")
    openai_server.add(no_usage_stream("Still 42."))
    client, updates = await start_client()
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local"}))["sessionId"]

    result = await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "what is it?"})
    assert result["text"] == "The answer is 42."
    shown = [u for u in updates.of(sid) if u["type"] in ("message_delta", "message_discarded")]
    cuts = [i for i, u in enumerate(shown) if u["type"] == "message_discarded"]
    assert len(cuts) == 1 and shown[cuts[0]]["reason"]
    # What a client that drops the text before the discard shows is what was saved.
    assert "".join(u["text"] for u in shown[: cuts[0]]) == "The answer is fort"
    assert "".join(u["text"] for u in shown[cuts[0] + 1 :]) == "The answer is 42."
    assert [u["estimated"] for u in updates.of(sid, "usage")] == [False]

    await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "sure?"})
    usage = updates.of(sid, "usage")
    assert [u["estimated"] for u in usage] == [False, True]
    assert usage[-1]["completionTokens"] > 0
