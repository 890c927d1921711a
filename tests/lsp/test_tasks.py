"""End to end: delegated-task status as session updates, $/progress and the task requests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pygent.lsp import protocol as p
from tests.lsp.conftest import request
from tests.openai_server import text_reply, tool_call_reply

pytestmark = pytest.mark.timeout(90)


def _responder(body: dict[str, Any]) -> Any:
    users = [m.get("content") for m in body["messages"] if m.get("role") == "user"]
    if users and users[-1] == "write the sub report":
        if any(m.get("role") == "tool" for m in body["messages"]):
            return text_reply("sub done")
        return tool_call_reply("write_file", {"path": "report.txt", "content": "from the task\n"})
    if not any(m.get("role") == "tool" for m in body["messages"]):
        return tool_call_reply("delegate_task", {"prompt": "write the sub report"})
    return text_reply("delegated")


async def test_task_status_updates_and_requests(start_client, openai_server) -> None:
    openai_server.set_responder(_responder)
    client, updates = await start_client()
    sid = (await request(client, p.SESSION_NEW, {"runtime": "local", "approvalMode": "never"}))[
        "sessionId"
    ]
    result = await request(client, p.SESSION_PROMPT, {"sessionId": sid, "prompt": "delegate it"})
    assert result["text"] == "delegated"
    await updates.wait_for(
        lambda u: u["update"]["type"] == "task_status" and u["update"]["status"] == "finished",
        timeout=30,
    )
    statuses = [u["status"] for u in updates.of(sid, "task_status")]
    assert statuses[0] == "queued" and "running" in statuses and statuses[-1] == "finished"
    task_id = updates.of(sid, "task_status")[0]["taskId"]
    # The sub-agent's own events carry its task id.
    assert any(u["taskId"] == task_id for u in updates.of(sid, "tool_call_finished"))
    listed = await request(client, p.TASK_LIST, {"sessionId": sid})
    assert [t["taskId"] for t in listed["tasks"]] == [task_id]
    status = await request(client, p.TASK_STATUS, {"sessionId": sid, "taskId": task_id})
    assert status["status"] == "finished" and status["result"] == "sub done"
    collected = await request(
        client, p.TASK_COLLECT_FILE, {"sessionId": sid, "taskId": task_id, "path": "report.txt"}
    )
    assert collected == {"path": "report.txt", "size": len("from the task\n")}
    assert (await request(client, p.TASK_CANCEL, {"sessionId": sid, "taskId": task_id}))[
        "cancelled"
    ] is False
    # Generic clients see the task as work-done progress too.
    await asyncio.sleep(0.2)
    titles = [r[0].title for r in client.progress_reports.values() if r and r[0].kind == "begin"]
    assert any(t.startswith("Pygent task") for t in titles), titles
