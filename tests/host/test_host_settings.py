"""The host's settings and the checks on its folder (no processes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pygent.errors import ConfigError
from pygent.lsp import host_socket as hs
from pygent.settings import load_settings


def test_idle_timeout_from_the_environment_and_the_host_table(tmp_path: Path) -> None:
    assert load_settings(environ={}, cwd=tmp_path).host_idle_timeout == 1800
    (tmp_path / "pygent.toml").write_text("[host]\nidle_timeout = 90\n")
    assert load_settings(environ={}, cwd=tmp_path).host_idle_timeout == 90
    env = {"PYGENT_HOST_IDLE_TIMEOUT": "0"}  # never
    assert load_settings(environ=env, cwd=tmp_path).host_idle_timeout is None
    (tmp_path / "pygent.toml").write_text("[host]\nidle_timeout = 'soon'\n")
    with pytest.raises(ConfigError, match="pygent.toml: key 'host_idle_timeout'"):
        load_settings(environ={}, cwd=tmp_path)


def test_lsp_host_mode_and_host_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(environ={}, cwd=tmp_path).lsp_host == "auto"
    assert load_settings(environ={"PYGENT_LSP_HOST": "Never"}, cwd=tmp_path).lsp_host == "never"
    with pytest.raises(ConfigError, match="PYGENT_LSP_HOST: expected one of auto, never, require"):
        load_settings(environ={"PYGENT_LSP_HOST": "sometimes"}, cwd=tmp_path)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert load_settings(environ={}, cwd=tmp_path).host_dir == tmp_path / "run" / "pygent"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert load_settings(environ={}, cwd=tmp_path).host_dir == Path(f"/tmp/pygent-{os.getuid()}")
    env = {"PYGENT_HOST_DIR": str(tmp_path / "h")}
    assert load_settings(environ=env, cwd=tmp_path).host_dir == tmp_path / "h"


def test_the_folder_is_created_private_and_checked(tmp_path: Path) -> None:
    made = hs.check_dir(tmp_path / "h")
    assert made.is_dir() and (made.stat().st_mode & 0o777) == 0o700
    (tmp_path / "link").symlink_to(made)
    with pytest.raises(hs.HostDirError, match="not a directory"):
        hs.check_dir(tmp_path / "link")
    made.chmod(0o750)
    with pytest.raises(hs.HostDirError, match="mode 0750"):
        hs.check_dir(made)
    deep = tmp_path / ("x" * 120)
    with pytest.raises(hs.HostDirError, match="too long"):
        hs.check_dir(deep)
    # Nothing to join where no socket is.
    assert hs.connect(tmp_path / "nowhere") is None
    assert hs.running_pid(tmp_path / "nowhere") is None
