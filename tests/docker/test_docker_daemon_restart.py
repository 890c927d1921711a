"""H4: the Docker daemon restarts under a running command (a private dockerd, not the shared one)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pygent.runtime.docker_backend import DockerBackend, DockerOptions

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = "pygent-busybox:latest"


class PrivateDaemon:
    """A second dockerd with its own socket, data, state and network namespace, so
    restarting it disturbs no other test or user of the machine's engine."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        # Its own network namespace: dockerd with --bridge=none deletes the host's
        # docker0 bridge, which the shared engine needs.
        self.argv = [
            "unshare",
            "--net",
            "--",
            "dockerd",
            f"--host={self.host}",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'docker.pid'}",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            f"--cgroup-parent=pygent-test-{root.name}",
        ]

    def start(self) -> None:
        with open(self.root / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        env = {**os.environ, "DOCKER_HOST": self.host}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            probe = subprocess.run(["docker", "info"], capture_output=True, env=env)
            if probe.returncode == 0:
                return
            time.sleep(0.3)
        raise AssertionError((self.root / "dockerd.log").read_text()[-3000:])

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture()
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateDaemon]:
    if os.getuid() != 0 or not shutil.which("dockerd") or not shutil.which("unshare"):
        pytest.skip("a private dockerd needs root, dockerd and unshare")
    have = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True)
    if have.returncode != 0:
        pytest.skip(f"{IMAGE} missing: run .ci/docker-setup.sh")
    root = Path(tempfile.mkdtemp(prefix="pgd-", dir="/tmp"))
    d = PrivateDaemon(root)
    d.start()
    try:
        env = {**os.environ, "DOCKER_HOST": d.host}
        saved = subprocess.run(["docker", "save", IMAGE], capture_output=True, check=True)
        subprocess.run(
            ["docker", "load"], input=saved.stdout, env=env, check=True, capture_output=True
        )
        monkeypatch.setenv("DOCKER_HOST", d.host)
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)  # dockerd may leave busy mount points


async def test_daemon_restart_mid_command_recovers(daemon: PrivateDaemon, tmp_path: Path) -> None:
    backend = DockerBackend(tmp_path / "ws", DockerOptions(image=IMAGE, pull=False))
    await backend.start()
    try:
        await backend.run("echo kept > /workspace/kept", timeout=10)
        old = backend.container_id
        loop = asyncio.get_running_loop()
        restart = loop.run_in_executor(None, lambda: (time.sleep(0.5), daemon.restart()))
        start = time.monotonic()
        result = await backend.run("sleep 60", timeout=None)
        await restart
        assert time.monotonic() - start < 45
        assert "sandbox container died" in result.note and "new container" in result.note
        after = await backend.run("cat /workspace/kept", timeout=10)
        assert after.stdout == "kept\n" and backend.container_id != old
    finally:
        await backend.close()
    env = {**os.environ, "DOCKER_HOST": daemon.host}
    left = subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True, env=env)
    assert left.stdout.strip() == ""
