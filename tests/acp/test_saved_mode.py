"""The approval mode a front end chooses is saved by ``SessionService`` with the session,
and a reopened session (any front end, after a restart) runs in it again."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pygent.service import SAVED_MODE_KEY, SessionOptions, SessionService
from pygent.settings import load_settings
from tests.acp.conftest import StartAgent


def _service(tmp_path: Path) -> SessionService:
    settings = dataclasses.replace(load_settings(), sessions_dir=tmp_path / "sessions")
    return SessionService(settings)


def test_mode_changed_in_one_service_is_restored_by_another(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    options = SessionOptions(workspace_folder=str(folder), runtime="local")
    first = _service(tmp_path)
    session = first.open_blocking(options)
    try:
        assert session.agent.policy.mode != "read-only"
        first.update_settings(session.id, approval_mode="read-only")  # what the LSP calls
    finally:
        first.close_blocking(session.id)
    second = _service(tmp_path)  # a new process: only the saved session is left
    reopened = second.open_blocking(options, resume_id=session.id)
    try:
        assert reopened.agent.policy.mode == "read-only"
        assert reopened.agent.history_store is not None
        assert reopened.agent.history_store.meta[SAVED_MODE_KEY] == "read-only"
    finally:
        second.close_blocking(reopened.id)
    # A mode asked for explicitly when reopening wins over the saved one.
    third = _service(tmp_path)
    again = third.open_blocking(
        dataclasses.replace(options, approval_mode="confirm"), resume_id=session.id
    )
    try:
        assert again.agent.policy.mode == "confirm"
    finally:
        third.close_blocking(again.id)


async def test_acp_set_mode_survives_a_restart(start_agent: StartAgent, tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    home = tmp_path / "shared-home"
    async with start_agent(home=home) as agent:
        await agent.initialize()
        sid = await agent.new_session(folder)
        await agent.conn.set_session_mode(mode_id="read-only", session_id=sid)
    async with start_agent(home=home) as agent:
        await agent.initialize()
        loaded = await agent.conn.load_session(cwd=str(folder), session_id=sid, mcp_servers=[])
        assert loaded.modes is not None and loaded.modes.current_mode_id == "read-only"
