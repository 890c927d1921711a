"""ADVERSARIAL H: container and Docker faults, through the agent and the Runtime a front end uses."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pygent.errors import RuntimeUnavailable, SandboxError
from pygent.runtime import Runtime
from tests.adversarial.conftest import ROOT, Harness, make_harness, make_runtime, runtime_settings
from tests.docker.test_docker_daemon_restart import IMAGE as BUSYBOX
from tests.docker.test_docker_daemon_restart import daemon  # noqa: F401 (a fixture)
from tests.openai_server import ScriptedOpenAIServer
from tests.processes import later

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]


@pytest.fixture
def client() -> Iterator[object]:
    import docker

    c = docker.from_env()
    yield c
    c.close()


@pytest.fixture
def hd(openai_server: ScriptedOpenAIServer, tmp_path: Path) -> Iterator[Harness]:
    """A Docker session of its own (these tests break its container)."""
    rt = make_runtime("docker", tmp_path / "ws")
    harness = make_harness(openai_server, rt, tmp_path)
    yield harness
    harness.agent.close()
    rt.cleanup()


def _cid(h: Harness) -> str:
    return str(h.rt.backend.container_id)  # type: ignore[attr-defined]


def test_H1_container_killed_during_a_command(hd: Harness, client) -> None:
    hd.sh("echo kept > kept.txt")
    old = _cid(hd)
    later(1.0, lambda: client.api.kill(old))  # type: ignore[attr-defined]
    started = time.monotonic()
    out = hd.sh("sleep 30", timeout=60)
    assert time.monotonic() - started < 15
    assert "sandbox container died (exit 137" in out and "a new container was started" in out
    failed = [e for e in hd.events if e.type == "tool_call_finished"][-1]
    assert failed.status == "failed"
    assert "kept" in hd.sh("cat kept.txt") and _cid(hd) != old


def test_H2_container_removed_between_commands(hd: Harness, client) -> None:
    hd.sh("echo kept > kept.txt")
    client.api.remove_container(_cid(hd), force=True)  # type: ignore[attr-defined]
    out = hd.sh("cat kept.txt")
    assert "kept" in out and "sandbox container was removed" in out
    assert "installed packages are gone" in out


def test_H3_container_paused_under_a_command(hd: Harness, client) -> None:
    cid = _cid(hd)
    later(0.5, lambda: client.api.pause(cid))  # type: ignore[attr-defined]
    started = time.monotonic()
    out = hd.sh("sleep 30", timeout=60)
    assert time.monotonic() - started < 20
    assert "paused" in out and "resumed" in out
    assert "alive" in hd.sh("echo alive")


def test_H4_daemon_restart_mid_command(daemon, openai_server, tmp_path: Path) -> None:  # noqa: F811
    rt = Runtime(workspace=tmp_path / "ws", settings=runtime_settings("docker", image=BUSYBOX))
    rt.wait_ready(120)
    h = make_harness(openai_server, rt, tmp_path)
    try:
        h.sh("echo kept > kept.txt")
        later(0.5, daemon.restart)
        started = time.monotonic()
        out = h.sh("sleep 60", timeout=120)
        assert time.monotonic() - started < 60
        assert "sandbox container died" in out and "new container" in out
        assert "kept" in h.sh("cat kept.txt")
    finally:
        h.agent.close()
        rt.cleanup()


def test_H5_daemon_down_is_an_error_not_a_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, openai_server
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(RuntimeUnavailable) as info:
        Runtime(workspace=tmp_path / "ws", settings=runtime_settings("docker"))
    message = info.value.user_message()
    assert "not running" in message and "hint:" in message
    auto = Runtime(workspace=tmp_path / "ws2", settings=runtime_settings("docker", use_docker=None))
    try:  # only `auto` falls back (to bubblewrap where it runs, else the host), and says so
        from pygent.runtime.bwrap import bwrap_unavailable_reason

        if bwrap_unavailable_reason() is None:
            assert auto.kind == "bwrap" and "bubblewrap sandbox" in auto.notices[0]
        else:
            assert auto.kind == "local" and "WITHOUT isolation" in auto.notices[0]
    finally:
        auto.cleanup()
    refused = tmp_path / "docker.sock"
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(refused))  # a socket nobody listens on
    monkeypatch.setenv("DOCKER_HOST", f"unix://{refused}")
    with pytest.raises(RuntimeUnavailable, match="refused"):
        Runtime(workspace=tmp_path / "ws3", settings=runtime_settings("docker"))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
           "DOCKER_HOST": "unix:///nonexistent/docker.sock", "OPENAI_API_KEY": "sk-x",
           "OPENAI_BASE_URL": openai_server.base_url, "XDG_DATA_HOME": str(tmp_path / "d")}  # fmt: skip
    cli = subprocess.run(
        [sys.executable, "-m", "pygent", "--docker", "-w", str(tmp_path / "ws4")],
        input="hello\n", env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cli.returncode != 0
    assert "Docker" in cli.stdout + cli.stderr and "Traceback" not in cli.stderr
    assert not openai_server.chat_requests, "--docker never falls back to running locally"


def test_H6_missing_image_and_failed_pull(tmp_path: Path) -> None:
    image = f"pygent-missing-{uuid.uuid4().hex[:8]}:nope"
    started = time.monotonic()
    rt = Runtime(workspace=tmp_path / "ws", settings=runtime_settings("docker", image=image))
    try:
        with pytest.raises(RuntimeUnavailable) as info:
            rt.wait_ready(120)
    finally:
        rt.cleanup()
    message = info.value.user_message()
    assert image in message and "pulling it failed" in message and "hint:" in message
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"bin/sh": b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x02\x00\xb7\x00" + b"\0" * 44,
          "bin/sleep": b"x"}, "exec format error"),
        ({"etc/hostname": b"no shell here\n"}, "no such file"),
    ],
    ids=["wrong-architecture", "no-shell"],
)  # fmt: skip
def test_H7_bad_images(tmp_path: Path, client, files: dict[str, bytes], expected: str) -> None:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, content in files.items():
            item = tarfile.TarInfo(name)
            item.size, item.mode = len(content), 0o755
            tar.addfile(item, io.BytesIO(content))
    repo, tag = "pygent-broken", uuid.uuid4().hex[:8]
    client.api.import_image_from_data(data.getvalue(), repository=repo, tag=tag)  # type: ignore[attr-defined]
    try:
        rt = Runtime(
            workspace=tmp_path / "ws", settings=runtime_settings("docker", image=f"{repo}:{tag}")
        )
        try:
            with pytest.raises((SandboxError, RuntimeUnavailable)) as info:
                rt.wait_ready(120)
        finally:
            rt.cleanup()
        message = info.value.user_message()
        assert f"{repo}:{tag}" in message and expected in message.lower(), message
        assert "PYGENT_IMAGE" in message
    finally:
        client.images.remove(f"{repo}:{tag}", force=True)  # type: ignore[attr-defined]


def test_H8_killnine_leaves_no_orphan_containers(openai_server, tmp_path: Path) -> None:
    """bench/killnine_agent.py in Docker mode: SIGKILL sessions while their containers
    run; the next start's reaper removes the dead owners' containers, never others."""
    sys.path.insert(0, str(ROOT / "bench"))
    from killnine_agent import run

    trials = int(os.environ.get("PYGENT_KILLNINE_DOCKER_TRIALS", "3"))
    stats = run(trials, "docker", 11, tmp_path, 0.8, openai_server)
    print(f"\nH8: {stats}")
    assert stats["child_errors"] == 0 and stats["acked_turns"] > 0, stats["examples"]
    assert stats["corrupt_files"] == stats["lost_completed_turns"] == 0
    assert stats["orphan_containers_after_reaper"] == 0 and stats["orphan_processes"] == 0
    assert stats["unlabelled_container_kept"]
