"""Editors configure the server through the protocol: ``initializationOptions``,
``workspace/didChangeConfiguration`` (push and pull) and ``pygent/configuration``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient, make_test_lsp_client

from pygent.lsp import configuration as cfg
from pygent.lsp import protocol as p
from pygent.server_profile import TOOL_CHOICES
from pygent.service import SYNC_MODES
from pygent.settings import Settings
from tests.lsp.conftest import CAPABILITIES, SERVER_COMMAND, request, server_env
from tests.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.timeout(90)

Start = Callable[..., Awaitable[LanguageClient]]


@pytest.fixture
async def start(tmp_path: Path, openai_server: ScriptedOpenAIServer) -> AsyncIterator[Start]:
    """``await start(init_options=..., capabilities=..., configuration=...)`` -> a client
    that has initialised ``pygent lsp --stdio`` with those options."""
    clients: list[LanguageClient] = []

    async def run(
        init_options: Any = None,
        capabilities: types.ClientCapabilities = CAPABILITIES,
        configuration: Any = None,
        answer: Callable[[Any], Any] | None = None,
    ) -> LanguageClient:
        client = make_test_lsp_client()
        if configuration is not None:
            client.set_configuration(configuration)
        if answer is not None:  # replaces pytest-lsp's workspace/configuration handler
            client.protocol.fm.features.pop(types.WORKSPACE_CONFIGURATION, None)
            client.feature(types.WORKSPACE_CONFIGURATION)(answer)
        env = server_env(tmp_path / f"server{len(clients)}", openai_server)
        await client.start_io(*SERVER_COMMAND, env=env, cwd=str(tmp_path))
        clients.append(client)
        await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities,
                root_uri=tmp_path.as_uri(),
                initialization_options=init_options,
            )
        )
        return client

    yield run
    for client in clients:
        try:
            await asyncio.wait_for(client.shutdown_session(), 30)
        except (asyncio.TimeoutError, RuntimeError, ConnectionError):
            pass
        await client.stop()


async def effective(client: LanguageClient, settings: dict[str, Any] | None = None) -> Any:
    params = {"settings": settings} if settings is not None else {}
    return await request(client, p.CONFIGURATION, params)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.05)


def change(client: LanguageClient, settings: Any) -> None:
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings=settings)
    )


# --- end to end --------------------------------------------------------------------------


async def test_initialization_options_set_the_model_of_new_sessions(
    start: Start, openai_server: ScriptedOpenAIServer
) -> None:
    openai_server.add_text("configured")
    client = await start({"pygent": {"model": "config-model", "maxSteps": "7"}})
    result = await effective(client)
    assert result["settings"]["model"] == "config-model"
    assert result["settings"]["maxSteps"] == 7  # converted like pygent.toml values
    assert result["clientKeys"] == ["maxSteps", "model"]
    assert result["warnings"] == []
    info = await request(client, p.SESSION_NEW, {"runtime": "local"})
    assert info["model"] == "config-model"
    answer = await request(
        client, p.SESSION_PROMPT, {"sessionId": info["sessionId"], "prompt": "hi"}
    )
    assert answer["text"] == "configured"
    assert openai_server.chat_requests[-1].body["model"] == "config-model"


async def test_did_change_configuration_updates_new_and_live_sessions(start: Start) -> None:
    client = await start()
    live = await request(client, p.SESSION_NEW, {"runtime": "local"})
    assert live["approvalMode"] == "auto"
    change(client, {"pygent": {"approvalMode": "confirm", "image": "python:3.13-slim"}})

    async def applied() -> bool:
        return (await effective(client))["settings"]["approvalMode"] == "confirm"

    await eventually(applied)
    result = await effective(client)
    assert result["appliedToLiveSessions"] == ["approvalMode"]
    assert result["newSessionsOnly"] == ["image"]
    assert any(
        "new sessions only" in m.message and "image" in m.message for m in client.log_messages
    )
    sessions = (await request(client, p.SESSION_LIST, {}))["sessions"]
    assert [s["approvalMode"] for s in sessions] == ["confirm"]
    fresh = await request(client, p.SESSION_NEW, {"runtime": "local"})
    assert fresh["approvalMode"] == "confirm"

    # A complete object replaces the previous one: a removed key is the server's again.
    change(client, {"pygent": {}})

    async def reverted() -> bool:
        return (await effective(client))["settings"]["approvalMode"] == "auto"

    await eventually(reverted)
    sessions = (await request(client, p.SESSION_LIST, {}))["sessions"]
    assert {s["approvalMode"] for s in sessions} == {"auto"}


async def test_unknown_key_warns_and_bad_value_errors(start: Start) -> None:
    client = await start({"pygent": {"modle": "x", "maxSteps": "lots", "network": True}})
    result = await effective(client)
    assert result["settings"]["network"] is True  # the good keys still apply
    assert result["settings"]["maxSteps"] == Settings().max_steps
    warnings = [m.message for m in client.messages if m.type == types.MessageType.Warning]
    errors = [m.message for m in client.messages if m.type == types.MessageType.Error]
    assert any(
        "initializationOptions.pygent.modle: unknown setting" in w and "'model'" in w
        for w in warnings
    ), warnings
    assert any(
        "initializationOptions.pygent.maxSteps: expected a whole number, got 'lots'" in e
        for e in errors
    ), errors
    assert len(result["warnings"]) == 2

    # The request form answers with an error naming the setting instead.
    with pytest.raises(Exception, match=r"settings\.maxSteps: expected a number >= 1"):
        await effective(client, {"maxSteps": 0})
    with pytest.raises(Exception, match="unknown field"):
        await effective(client, {"apiKey": "sk-nope"})
    merged = await effective(client, {"model": "merged-model"})
    assert merged["settings"]["model"] == "merged-model"
    assert merged["settings"]["network"] is True  # merged, not replaced


async def test_workspace_configuration_is_pulled(start: Start) -> None:
    caps = types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(configuration=True),
    )
    client = await start(
        init_options={"model": "from-init"},
        capabilities=caps,
        configuration={"pygent": {"model": "pulled-model", "syncMode": "none"}},
    )

    async def pulled() -> bool:
        return (await effective(client))["settings"]["model"] == "pulled-model"

    await eventually(pulled)
    assert (await effective(client))["settings"]["syncMode"] == "none"
    client.set_configuration({"pygent": {"model": "pulled-again"}})
    change(client, None)  # the pull model: "something changed, ask me"

    async def pulled_again() -> bool:
        return (await effective(client))["settings"]["model"] == "pulled-again"

    await eventually(pulled_again)


async def test_a_late_answer_never_overwrites_a_newer_push(start: Start) -> None:
    caps = types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(configuration=True),
    )
    asked = asyncio.Event()
    release = asyncio.Event()

    async def slow_answer(_params: Any) -> list[Any]:
        asked.set()
        await release.wait()
        return [{"approvalMode": "confirm"}]  # what the settings were when asked

    client = await start(capabilities=caps, answer=slow_answer)
    await asyncio.wait_for(asked.wait(), 10)
    change(client, {"pygent": {"approvalMode": "never"}})  # pushed while the server waits

    async def pushed() -> bool:
        return (await effective(client))["settings"]["approvalMode"] == "never"

    await eventually(pushed)
    release.set()
    await asyncio.sleep(0.5)
    assert (await effective(client))["settings"]["approvalMode"] == "never"


async def test_a_client_without_the_section_keeps_the_initialization_options(
    start: Start,
) -> None:
    caps = types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(configuration=True),
    )
    client = await start(init_options={"model": "from-init"}, capabilities=caps)
    await asyncio.sleep(0.3)  # the pull on initialized answered null
    assert (await effective(client))["settings"]["model"] == "from-init"


# --- the configuration object --------------------------------------------------------------


def test_parse_accepts_the_section_or_the_flat_object() -> None:
    assert cfg.parse({"pygent": {"maxSteps": 3}}).values == {"maxSteps": 3}
    assert cfg.parse({"maxSteps": "3", "runtime": "Docker"}).values == {
        "maxSteps": 3,
        "runtime": "docker",
    }
    assert cfg.parse(None).values == {} and cfg.parse([]).values == {}  # Lua's {}
    assert cfg.parse({"model": "", "image": None}).values == {}  # not set
    parsed = cfg.parse({"pygent": {"syncMode": "rsync", "bannedCommands": "rm,dd"}})
    assert parsed.values == {"bannedCommands": ["rm", "dd"]}
    modes = ", ".join(SYNC_MODES)
    assert parsed.errors == [f"pygent.syncMode: expected one of {modes}, got 'rsync'"]
    flat = cfg.parse({"syncMode": "rsync"}, "settings")
    assert flat.errors == [f"settings.syncMode: expected one of {modes}, got 'rsync'"]
    assert cfg.parse({"apiKey": "sk"}).warnings[0].startswith("pygent.apiKey: unknown setting")
    # The web page names itself in flat initializationOptions: no warning for that.
    assert cfg.parse({"client": "pygent-ui"}, ignore=cfg.CLIENT_KEYS).warnings == []


def test_effective_configuration_layers_the_client_over_the_server() -> None:
    config = cfg.ClientConfiguration(Settings(model="base", confirm_bash=True), 120.0)
    assert config.effective().approval_mode == "confirm"
    assert config.replace(cfg.parse({"approvalMode": "never", "runtime": "local"}).values) == [
        "approvalMode",
        "runtime",
    ]
    assert config.settings.use_docker is False and config.settings.model == "base"
    assert config.effective().approval_mode == "never"  # the client wins over --confirm-bash
    assert config.replace({}) == ["approvalMode", "runtime"]


def test_configuration_keys_match_the_core() -> None:
    assert set(cfg.KEYS) == {p.camel(a) for a in p.ServerConfiguration.__annotations__}
    assert "apiKey" not in cfg.KEYS  # the key stays in the environment
    fields = set(Settings.__dataclass_fields__)
    assert set(cfg._FIELDS.values()) <= fields
    import typing

    assert set(typing.get_args(p.ToolChoice)) == set(TOOL_CHOICES)


async def test_a_budget_from_the_configuration_ends_a_turn_mid_way(
    start: Start, openai_server: ScriptedOpenAIServer
) -> None:
    """The editor's budget settings (VS Code's ``pygent.budget.*``) reach new sessions:
    the turn stops before the model call past the limit, with ``budget`` and the limit."""
    openai_server.add_tool_call("bash", {"cmd": "echo one"})
    openai_server.add_tool_call("bash", {"cmd": "echo two"})
    openai_server.add_text("never sent")
    client = await start({"pygent": {"budgetCalls": "2", "approvalMode": "never"}})
    assert (await effective(client))["settings"]["budgetCalls"] == 2
    info = await request(client, p.SESSION_NEW, {"runtime": "local"})
    answer = await request(
        client, p.SESSION_PROMPT, {"sessionId": info["sessionId"], "prompt": "go on"}
    )
    assert answer["stopReason"] == "budget"
    assert len(openai_server.chat_requests) == 2
    assert "model call" in str(answer).lower(), answer
