"""Long sessions against real servers: the context window the server reports, usage, /compact.

llama.cpp's ``llama-server`` runs with ``-c 4096`` here: Pygent must learn that from its
``/props`` (not from the model's training size in ``/v1/models``) without being told.
"""

from __future__ import annotations

import pytest

from pygent import events as ev
from pygent.context_window import forget_reported
from tests.real_models import servers
from tests.real_models.conftest import each_server
from tests.real_models.servers import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@each_server(servers.LLAMA_SERVER)
def test_the_server_reports_its_window_and_compaction_works_or_says_why(
    model_server: ServerProcess, pygent_env, make_agent
) -> None:
    forget_reported()
    pygent_env(model_server, tools=("bash",))
    agent, recorder = make_agent()
    first = agent.turn("Say hello in one short sentence.", max_steps=2)
    assert first.stop_reason in (ev.StopReason.END_TURN, ev.StopReason.STOP_TOOL), first
    assert agent.context_window is not None
    assert (agent.context_window.tokens, agent.context_window.source) == (servers.N_CTX, "server")
    assert not [e for e in recorder.of(ev.Notice) if "not known" in e.text]
    usage = recorder.of(ev.Usage)
    assert usage and usage[-1].context_window == servers.N_CTX
    assert agent.usage.calls == len(usage) and agent.usage.prompt_tokens == sum(
        u.prompt_tokens for u in usage)
    agent.turn("Now say goodbye in one short sentence.", max_steps=2)
    before = agent.request_messages()
    done = agent.compact("the greetings")
    if done.ok:  # a 135M model's summary: whatever it wrote now stands for the older turns
        assert agent.request_messages()[1]["content"].endswith(done.summary)
    else:  # too long, empty...: said, and nothing changed
        assert done.error and agent.request_messages() == before
    assert [e.ok for e in recorder.of(ev.Compaction)] == [done.ok]
    print(f"compaction with a real model: ok={done.ok} error={done.error!r} summary={done.summary[:200]!r}")
