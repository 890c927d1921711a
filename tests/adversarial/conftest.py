"""Shared harness for the adversarial catalogue: real agents on the local and Docker runtimes, driven by the scripted model server."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pygent import Agent
from pygent.approval import ApprovalOption, ApprovalRequest, ApprovalResponse
from pygent.events import Event
from pygent.runtime import Runtime
from pygent.settings import Settings, load_settings
from pygent.tools import ToolRegistry, builtin_tools
from tests.docker_gate import TEST_IMAGE
from tests.openai_server import ScriptedOpenAIServer
from tests.processes import command_lines

ROOT = Path(__file__).resolve().parents[2]
#: Both runtimes; the Docker one is marked so CI fails (not skips) without an engine.
MODES = ["local", pytest.param("docker", marks=pytest.mark.docker)]


def settings_for(server: ScriptedOpenAIServer, tmp: Path, **overrides: Any) -> Settings:
    """Settings pointing at the scripted server, with nothing read from this machine."""
    env = {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-test-key",
        "PYGENT_MODEL": "test-model",
        "PYGENT_REQUEST_TIMEOUT": "20",
        "PYGENT_SESSIONS_DIR": str(tmp / "sessions"),
        # The catalogue is not about compaction: a window no test fills (the unknown
        # "test-model" would get the conservative default and compact on big outputs).
        "PYGENT_CONTEXT_WINDOW": "1000000",
    }
    (tmp / "cfg").mkdir(parents=True, exist_ok=True)
    return load_settings(overrides, environ=env, cwd=tmp / "cfg")


#: Env switches that rerun the catalogue in a stronger sandbox (tests/sandboxes runs
#: them): PYGENT_TEST_DOCKER_RUNTIME=runsc puts the "docker" mode under gVisor;
#: PYGENT_TEST_LOCAL_SANDBOX=bwrap puts the "local" mode in bubblewrap.
DOCKER_RUNTIME = os.environ.get("PYGENT_TEST_DOCKER_RUNTIME") or None
LOCAL_SANDBOX = os.environ.get("PYGENT_TEST_LOCAL_SANDBOX") or None


def runtime_settings(mode: str, **overrides: Any) -> Settings:
    """Settings for a runtime of ``mode`` (no model needed)."""
    if mode == "docker":
        overrides.setdefault("image", TEST_IMAGE)
        overrides.setdefault("docker_runtime", DOCKER_RUNTIME)
    if mode == "local" and LOCAL_SANDBOX == "bwrap":
        return load_settings({"use_docker": None, "sandbox": "bwrap", **overrides}, environ={})
    return load_settings({"use_docker": mode == "docker", **overrides}, environ={})


def make_runtime(mode: str, workspace: Path, **overrides: Any) -> Runtime:
    rt = Runtime(workspace=workspace, settings=runtime_settings(mode, **overrides))
    rt.wait_ready(120)
    return rt


@dataclass
class Recorder:
    """An approver that records every request and answers with ``answer``."""

    answer: ApprovalOption = ApprovalOption.REJECT_ONCE
    requests: list[ApprovalRequest] = field(default_factory=list)

    async def request_approval(self, request: ApprovalRequest) -> ApprovalResponse:
        self.requests.append(request)
        return ApprovalResponse(self.answer)


@dataclass
class Harness:
    """An agent on a runtime, its scripted model and what it emitted."""

    agent: Agent
    server: ScriptedOpenAIServer
    approver: Recorder
    events: list[Event]

    @property
    def rt(self) -> Runtime:
        return self.agent.runtime

    @property
    def ws(self) -> Path:
        return self.agent.runtime.workspace

    def calls(
        self, calls: Sequence[tuple[str, Mapping[str, Any] | str]], **limits: Any
    ) -> list[str]:
        """Have the model make ``calls`` in one reply; returns each tool result, in order."""
        before = len(self.agent.history)
        self.server.add_tool_calls(list(calls))
        self.server.add_text("done")
        self.agent.turn("go", **limits)
        tool = [m for m in self.agent.history[before:] if m.get("role") == "tool"]
        return [str(m["content"]) for m in tool]

    def call(self, name: str, args: Mapping[str, Any] | str, **limits: Any) -> str:
        """One tool call through the model, the gate and the registry; its result text."""
        return self.calls([(name, args)], **limits)[0]

    @property
    def root(self) -> str:
        """The workspace as commands see it."""
        return "/workspace" if self.rt.kind == "docker" else str(self.ws)

    def sh(self, cmd: str, timeout: int | None = None, **limits: Any) -> str:
        """Run ``cmd`` from the workspace root (the shared shell may be elsewhere)."""
        args: dict[str, Any] = {"cmd": f"cd {self.root} && {cmd}"}
        if timeout is not None:
            args["timeout"] = timeout
        return self.call("bash", args, **limits)


def make_harness(
    server: ScriptedOpenAIServer,
    runtime: Runtime,
    tmp: Path,
    *,
    approval_mode: str = "api",
    answer: ApprovalOption = ApprovalOption.REJECT_ONCE,
    approver: Any = "record",
    **agent_kwargs: Any,
) -> Harness:
    recorder = Recorder(answer)
    agent = Agent(
        runtime=runtime,
        settings=settings_for(server, tmp),
        tools=ToolRegistry(builtin_tools()),
        approval_mode=approval_mode,
        approver=recorder if approver == "record" else approver,
        checkpoints=agent_kwargs.pop("checkpoints", False),
        **agent_kwargs,
    )
    events: list[Event] = []
    agent.events.subscribe(events.append)
    return Harness(agent, server, recorder, events)


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Runtime]]:
    """One runtime per mode for the module, made on first use (a container costs ~0.5 s)."""
    made: dict[str, Runtime] = {}

    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, mode: str) -> Runtime:
            ws = tmp_path_factory.mktemp(f"ws-{mode}")
            made[mode] = make_runtime(mode, ws)
            self[mode] = made[mode]
            return made[mode]

    yield Lazy()
    for rt in made.values():
        rt.cleanup()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def h(
    mode: str, runtimes: dict[str, Runtime], openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> Iterator[Harness]:
    """A harness on the module's runtime of ``mode`` (api approval mode: tools just run)."""
    harness = make_harness(openai_server, runtimes[mode], tmp_path)
    yield harness
    harness.agent.close()


def unique(prefix: str = "x") -> str:
    """A name no other test uses (the module's runtimes share their workspace)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def reset_peak_rss() -> None:
    """Reset VmHWM, so peak_rss_kb() measures from now (Linux clear_refs 5)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def peak_rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def processes_with(prefix: str) -> list[str]:
    """Command lines on this machine (containers' included) that start with ``prefix``,
    the program named by its base name (``sleep 301``, ``python3 -m http.server``)."""
    found = []
    for argv in command_lines():
        argv[0] = os.path.basename(argv[0])
        line = b" ".join(argv).decode(errors="replace")
        if line.startswith(prefix):
            found.append(line)
    return found


def tool_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m.get("role") == "tool"]


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)
