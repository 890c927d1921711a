"""The front ends name Podman: the REPL's banner in a real terminal (pexpect), and the
session info every editor and the web page read (``SessionInfo.sandbox``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pygent.lsp.convert import session_info
from pygent.service import SessionOptions, SessionService
from pygent.settings import load_settings
from tests.docker_gate import TEST_IMAGE
from tests.podman.conftest import PodmanEngine
from tests.repl.conftest import repl_env, spawn  # noqa: F401 - fixtures used below

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


@pytest.fixture()
def rootful(rootful_podman: PodmanEngine, monkeypatch: pytest.MonkeyPatch) -> PodmanEngine:
    monkeypatch.setenv("DOCKER_HOST", rootful_podman.url)
    return rootful_podman


def test_the_repl_banner_says_podman(rootful: PodmanEngine, spawn, repl_env: dict[str, str]) -> None:  # noqa: F811
    env = dict(repl_env, DOCKER_HOST=rootful.url, PYGENT_IMAGE=TEST_IMAGE)
    term = spawn("--docker", env=env, docker=True)
    term.expect(rf"Pygent · model test-model · Podman \({TEST_IMAGE}\)")
    term.wait_prompt()
    term.send("\x04")
    assert term.wait_exit() == 0


def test_the_session_info_names_podman(rootful: PodmanEngine, tmp_path: Path) -> None:
    settings = dataclasses.replace(load_settings(), image=TEST_IMAGE, use_docker=True,
                                   sessions_dir=tmp_path / "sessions")
    service = SessionService(settings)
    session = service.open_blocking(SessionOptions(runtime="docker"))
    try:
        session.runtime.run("true")
        info = session_info(service.summary(session))
        assert info.runtime == "docker" and info.sandbox == f"Podman ({TEST_IMAGE})"
    finally:
        service.close_blocking(session.id)
