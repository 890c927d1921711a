"""Every front end names the session's sandbox: the wire's ``runtime`` kinds (bwrap
included) and ``sandbox`` text, and the engine facts behind the Docker sandbox's name
(Podman, rootless, gVisor) from pygent.runtime.podman."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from pygent.lsp import protocol as p
from pygent.lsp.convert import session_info
from pygent.runtime.bwrap import bwrap_unavailable_reason
from pygent.runtime.podman import (
    EngineFlavour,
    flavour_of,
    host_config_extras,
    nproc_limit,
    overlay_bind,
    rootless_limits_problem,
    shell_limits,
    start_failure_hint,
)
from pygent.service import RUNTIMES, SessionOptions, SessionService
from pygent.settings import load_settings

PODMAN_VERSION = {
    "Version": "4.3.1",
    "Components": [{"Name": "Podman Engine", "Version": "4.3.1"}, {"Name": "Conmon"}],
}
DOCKER_VERSION = {"Version": "20.10.24", "Components": [{"Name": "Engine", "Version": "20.10.24"}]}


def test_the_wire_can_ask_for_every_runtime_the_service_knows() -> None:
    assert typing.get_args(p.RuntimeKind) == RUNTIMES
    assert "bwrap" in RUNTIMES
    assert "sandbox" in {f.name for f in p.SessionInfo.__attrs_attrs__}


def test_engine_flavours_from_version_and_info() -> None:
    assert flavour_of(DOCKER_VERSION) == EngineFlavour("Docker", "20.10.24", False)
    podman = flavour_of(PODMAN_VERSION, {"Rootless": False})
    assert podman.podman and not podman.rootless and podman.label() == "Podman"
    rootless = flavour_of(PODMAN_VERSION, {"Rootless": True})
    assert rootless.label() == "Podman rootless" and rootless.ignores_ulimits
    # rootless Docker says so in SecurityOptions
    assert flavour_of(DOCKER_VERSION, {"SecurityOptions": ["name=rootless"]}).rootless


def test_podman_container_settings() -> None:
    assert host_config_extras(EngineFlavour(), local=True) == ({}, None)
    ulimits, userns = host_config_extras(flavour_of(PODMAN_VERSION, {}), local=True)
    assert set(ulimits) == {"nproc"} and ulimits["nproc"] == nproc_limit(local=True)
    assert userns is None
    assert host_config_extras(flavour_of(PODMAN_VERSION, {"Rootless": True}), local=False) == (
        {"nproc": 32768}, "keep-id")
    with open("/proc/sys/kernel/pid_max") as fh:  # no raise above what can exist
        assert nproc_limit(local=True) <= int(fh.read())
    assert shell_limits(4096, 2 << 30) == "ulimit -n 4096 && ulimit -f 4194304 && ulimit -c 0; "
    assert overlay_bind("/f", "/l/upper", "/l/work", "/workspace") == (
        "/f:/workspace:O,upperdir=/l/upper,workdir=/l/work")


def test_podman_limit_problems_are_said() -> None:
    assert "cgroup v1" in (rootless_limits_problem("1", None) or "")
    assert rootless_limits_problem("2", ["cpu", "memory", "pids"]) is None
    assert rootless_limits_problem("2", None) is None  # unknown controllers: not claimed
    assert "pids" in (rootless_limits_problem("2", ["cpu", "memory"]) or "")
    error = "runc create failed: error setting rlimit type 6: operation not permitted"
    hint = start_failure_hint(flavour_of(PODMAN_VERSION, {}), error)
    assert hint is not None and "containers.conf" in hint and "nproc" in hint
    assert start_failure_hint(EngineFlavour(), error) is None


def test_a_bwrap_session_is_asked_for_by_name_and_named_on_the_wire(tmp_path: Path) -> None:
    reason = bwrap_unavailable_reason(False)
    if reason is not None:
        pytest.skip(f"bubblewrap cannot run here: {reason}")
    settings = dataclasses.replace(load_settings(), sessions_dir=tmp_path / "sessions")
    service = SessionService(settings)
    session = service.open_blocking(SessionOptions(runtime="bwrap"))
    try:
        assert session.runtime.run("echo hi").stdout == "hi\n"
        info = session_info(service.summary(session))
        assert info.runtime == "bwrap"
        assert info.sandbox == session.runtime.describe() and "bubblewrap" in (info.sandbox or "")
    finally:
        service.close_blocking(session.id)
