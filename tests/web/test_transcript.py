"""The transcripts a (re)attaching ``pygent ui`` page reads: live logs merged as they stream, saved histories as updates."""

from __future__ import annotations

from pygent.lsp.transcript import SessionLog, history_updates


def test_history_updates_mark_denied_calls_and_close_every_turn() -> None:
    messages = [
        {"role": "system", "content": "x"},
        {"role": "user", "content": "one"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "bash", "arguments": '{"cmd": "ls"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "denied: nobody"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "bash", "arguments": '{"cmd": "ls"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c2", "content": "$ ls\na.txt\n"},
        {"role": "assistant", "content": "fine"},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
    ]
    events = history_updates(messages)
    assert [e["type"] for e in events] == [
        "turn_started",
        "tool_call_proposed",
        "tool_call_finished",
        "tool_call_proposed",
        "tool_call_finished",
        "message_done",
        "turn_ended",
        "turn_started",
        "turn_ended",
    ]
    assert events[1]["arguments"] == {"cmd": "ls"}
    assert events[2]["status"] == "denied" and events[2]["tool"] == "bash"
    # The command echo the model gets is not repeated in the card's output.
    assert events[4]["status"] == "completed" and events[4]["output"] == "a.txt\n"
    assert events[7]["prompt"] == "two"


def test_session_log_merges_stream_chunks() -> None:
    log = SessionLog()
    for text in ["Hel", "lo"]:
        log.append({"type": "message_delta", "taskId": None, "text": text})
    for text in ["a\n", "b\n"]:
        log.append(
            {"type": "tool_output", "taskId": None, "callId": "c", "text": text, "stream": "stdout"}
        )
    log.append(
        {"type": "tool_output", "taskId": None, "callId": "c", "text": "e\n", "stream": "stderr"}
    )
    assert [(e["type"], e["text"]) for e in log.events] == [
        ("message_delta", "Hello"),
        ("tool_output", "a\nb\n"),
        ("tool_output", "e\n"),
    ]


def test_session_log_drops_the_reply_a_discard_withdraws() -> None:
    log = SessionLog()
    before = [
        {"type": "turn_started", "taskId": None, "prompt": "q"},
        {"type": "message_delta", "taskId": None, "text": "Let me look."},
        {"type": "message_done", "taskId": None, "text": "Let me look."},
        {
            "type": "tool_call_finished",
            "taskId": None,
            "callId": "c",
            "tool": "bash",
            "ok": True,
            "output": "",
            "status": "completed",
        },
    ]
    for update in before:
        log.append(update)
    snapshot = log.snapshot()
    log.append({"type": "message_delta", "taskId": None, "text": "It is the "})
    log.append({"type": "message_delta", "taskId": "t1", "text": "a task's own reply"})
    log.append({"type": "message_delta", "taskId": None, "text": "ent"})
    log.append({"type": "notice", "taskId": None, "level": "warning", "text": "cut; asking again"})
    log.append({"type": "message_discarded", "taskId": None, "reason": "the stream was cut"})
    assert log.events == [
        *before,
        {"type": "message_delta", "taskId": "t1", "text": "a task's own reply"},
        {"type": "notice", "taskId": None, "level": "warning", "text": "cut; asking again"},
    ]
    log.append({"type": "message_delta", "taskId": None, "text": "It is the entry point."})
    assert log.events[-1]["text"] == "It is the entry point."
    assert len(snapshot) == len(before), "a snapshot handed out earlier is not changed"
    # A discard with no reply since the last step removes nothing.
    log.append({"type": "message_done", "taskId": None, "text": "It is the entry point."})
    count = len(log.events)
    log.append({"type": "message_discarded", "taskId": None, "reason": ""})
    assert len(log.events) == count
