"""A second Docker engine that cannot see this machine's folders (.ci/remote-engine-setup.sh),
reached over TCP and over ssh://, for the remote-engine tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / ".ci" / "remote-engine-setup.sh"


@pytest.fixture(scope="session")
def remote_engine() -> dict[str, str]:
    """The settings of the second engine (started by the setup script when not running)."""
    out = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        pytest.fail(f"the second engine could not start:\n{out.stdout}\n{out.stderr}",
                    pytrace=False)
    env = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return {k: v for k, v in env.items() if k.startswith("PYGENT_REMOTE_")}


@pytest.fixture(scope="session")
def ssh_bin(remote_engine: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with an `ssh` that uses the generated key (put first on PATH), as a user's
    ~/.ssh/config would."""
    folder = tmp_path_factory.mktemp("sshbin")
    wrapper = folder / "ssh"
    wrapper.write_text(
        "#!/bin/sh\nexec /usr/bin/ssh -i {key} -o UserKnownHostsFile={known} "
        '-o IdentitiesOnly=yes "$@"\n'.format(
            key=remote_engine["PYGENT_REMOTE_SSH_KEY"],
            known=remote_engine["PYGENT_REMOTE_KNOWN_HOSTS"],
        )
    )
    wrapper.chmod(0o755)
    return folder


@pytest.fixture(params=["tcp", "tls", "ssh"])
def engine(request: pytest.FixtureRequest, remote_engine: dict[str, str], ssh_bin: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DOCKER_HOST set to the second engine, over TCP, TCP with TLS (client certificate,
    DOCKER_TLS_VERIFY) or ssh://; yields the name."""
    from pygent.runtime import remote

    if request.param == "tcp":
        monkeypatch.setenv("DOCKER_HOST", remote_engine["PYGENT_REMOTE_TCP"])
    elif request.param == "tls":
        monkeypatch.setenv("DOCKER_HOST", remote_engine["PYGENT_REMOTE_TLS"])
        monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
        monkeypatch.setenv("DOCKER_CERT_PATH", remote_engine["PYGENT_REMOTE_CERT_PATH"])
    else:
        monkeypatch.setenv("DOCKER_HOST", remote_engine["PYGENT_REMOTE_SSH"])
        monkeypatch.setenv("PATH", f"{ssh_bin}{os.pathsep}{os.environ['PATH']}")
    yield request.param
    remote.close_tunnels()


def remote_docker(remote_engine: dict[str, str], *args: str) -> str:
    """`docker ARGS` against the second engine (its TCP listener)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT")}
    out = subprocess.run(["docker", "-H", remote_engine["PYGENT_REMOTE_TCP"], *args],
                         capture_output=True, text=True, check=True, env=env)
    return out.stdout
