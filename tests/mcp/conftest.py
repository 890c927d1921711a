"""Fixtures for the MCP tests: our fault server's command and a session service factory."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pygent.mcp.config import McpServerSpec
from pygent.service import SessionService
from pygent.settings import load_settings

# The language-server and terminal fixtures, for the MCP tests over those front ends.
from tests.lsp.conftest import start_client, transport  # noqa: F401
from tests.repl.conftest import repl_env, spawn  # noqa: F401

FAULT_SERVER = Path(__file__).with_name("fault_server.py")


def fault_spec(name: str = "fault", **fields: Any) -> McpServerSpec:
    """Our SDK-built fault server, run with this interpreter (on the host/local sandbox)."""
    return McpServerSpec(name=name, command=sys.executable, args=(str(FAULT_SERVER),), **fields)


@pytest.fixture
async def service(openai_env: Any, tmp_path: Path) -> AsyncIterator[SessionService]:
    """A SessionService talking to the scripted model server; closed after the test."""
    settings = dataclasses.replace(load_settings(), sessions_dir=tmp_path / "sessions")
    svc = SessionService(settings)
    yield svc
    await svc.aclose()


async def started(session: Any) -> None:
    """Wait until the session's MCP servers are past their first start (they start in
    the background: ``create`` returns before them)."""
    if session.mcp is not None:
        await session.mcp.await_started()


def tool_messages(openai_server: Any) -> list[dict[str, Any]]:
    """The tool results the model was sent, in order (from the last request)."""
    body = openai_server.model_requests[-1].body
    return [m for m in body["messages"] if m.get("role") == "tool"]


def model_tool_names(openai_server: Any, index: int = 0) -> list[str]:
    body = openai_server.model_requests[index].body
    return [t["function"]["name"] for t in body.get("tools", [])]
