"""Failures as real servers produce them: overflow, a wrong URL, a cut stream, a killed server."""

from __future__ import annotations

import threading
import time

import pytest

from pygent import events as ev
from tests.processes import later
from tests.real_models import servers
from tests.real_models.conftest import Restartable, each_server
from tests.real_models.servers import ServerProcess, http_get

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

#: About 200 tokens at temperature 0 on every server: long enough to be cut mid-stream.
LONG_ANSWER = "Explain what a CPU does."


def saved_partial(history: list[dict], after: int) -> list[dict]:
    """Messages saved after index ``after`` (the failed turn's user prompt)."""
    return history[after + 1 :]


@each_server()
def test_context_overflow_ends_the_turn_with_too_long(
    model_server: ServerProcess, pygent_env, make_agent
) -> None:
    pygent_env(model_server, tools=())
    agent, recorder = make_agent()
    before = list(agent.history)
    prompt = "word " * (servers.N_CTX + 1000)  # ~5,100 tokens for a 4,096-token window
    started = time.monotonic()
    result = agent.turn(prompt)
    took = time.monotonic() - started

    assert result.stop_reason == ev.StopReason.ERROR, result
    assert "too long" in result.error, result.error
    assert "Traceback" not in result.error
    retries = [n.text for n in recorder.of(ev.Notice) if "retrying" in n.text]
    assert not retries, f"an overflow is not worth retrying: {retries}"
    assert took < 5, f"took {took:.1f}s"
    assert agent.history == [*before, {"role": "user", "content": prompt}]


@pytest.mark.parametrize(
    ("model_server", "path"),
    [
        (servers.LLAMA_CPP_PYTHON, ""),  # llama-server and LiteLLM also serve it without /v1
        (servers.LLAMA_CPP_PYTHON, "/vi"),
        (servers.LLAMA_SERVER, "/vi"),
        (servers.LITELLM, "/vi"),
    ],
    indirect=["model_server"],
)
def test_wrong_path_names_openai_base_url(
    model_server: ServerProcess, path: str, pygent_env, make_agent
) -> None:
    pygent_env(model_server, tools=(), base_url=model_server.root_url + path)
    agent, recorder = make_agent()
    result = agent.turn("What is the capital of France?")

    assert result.stop_reason == ev.StopReason.ERROR, result
    assert "OPENAI_BASE_URL" in result.error, result.error
    assert f"{model_server.root_url}{path}/chat/completions" in result.error
    assert not [n for n in recorder.of(ev.Notice) if "retrying" in n.text]
    assert agent.history[-1] == {"role": "user", "content": "What is the capital of France?"}


def test_cut_stream_shows_the_user_what_is_saved(
    llama_cpp_python: ServerProcess, pygent_env, make_agent
) -> None:
    """llama-cpp-python ends a running stream (a bare ``[DONE]``, no finish_reason) as soon
    as any other request arrives, even ``GET /v1/models``."""
    pygent_env(llama_cpp_python, tools=())
    agent, recorder = make_agent()
    interloper: list[tuple[int, bytes]] = []
    threads: list[threading.Thread] = []

    def cut_on_first_text(event: ev.Event) -> None:
        if isinstance(event, ev.MessageDelta) and not threads:
            url = f"{llama_cpp_python.base_url}/models"
            threads.append(later(0.0, lambda: interloper.append(http_get(url, timeout=60))))

    agent.events.subscribe(cut_on_first_text)
    result = agent.turn(LONG_ANSWER)
    threads[0].join(60)

    assert interloper and interloper[0][0] == 200, interloper
    assert result.stop_reason == ev.StopReason.END_TURN, result
    assert recorder.of(ev.MessageDiscarded), "the stream was not cut (or the cut was not told)"
    saved = agent.history[-1]
    assert saved["role"] == "assistant" and saved["content"] == result.text
    assert recorder.shown_text() == result.text


@pytest.mark.parametrize("kind", [servers.LLAMA_CPP_PYTHON, servers.LLAMA_SERVER])
def test_killed_server_is_a_clear_error_and_a_restart_recovers(
    kind: str, restartable: Restartable, pygent_env, make_agent
) -> None:
    server = restartable.start(kind)
    pygent_env(server, tools=())
    agent, recorder = make_agent()
    killed = threading.Event()

    def kill_on_first_text(event: ev.Event) -> None:
        if isinstance(event, ev.MessageDelta) and not killed.is_set():
            killed.set()
            server.kill()

    unsubscribe = agent.events.subscribe(kill_on_first_text)
    result = agent.turn(LONG_ANSWER)
    unsubscribe()

    assert killed.is_set(), "the answer never streamed"
    assert result.stop_reason == ev.StopReason.ERROR, result
    assert "could not reach the model server" in result.error, result.error
    assert "OPENAI_BASE_URL" in result.error and "Traceback" not in result.error
    prompt_at = agent.history.index({"role": "user", "content": LONG_ANSWER})
    assert prompt_at == 1
    shown = recorder.shown_text()
    partial = saved_partial(agent.history, prompt_at)
    if shown.strip():  # what the user still sees is kept, marked as cut off
        assert len(partial) == 1 and partial[0]["role"] == "assistant", partial
        assert partial[0]["content"].startswith(shown + "\n[interrupted: "), partial
    else:
        assert partial == [], partial

    server.restart()
    recorder.clear()
    message = agent.step("What is the capital of France?")
    ended = recorder.of(ev.TurnEnded)
    assert ended and ended[-1].stop_reason == ev.StopReason.END_TURN, ended
    assert isinstance(message.content, str) and message.content.strip(), message
