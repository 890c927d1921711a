"""The ACP registry entry (``agent.json``) and the ``pygent acp`` command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_agent_json_is_a_registry_entry_for_this_version() -> None:
    entry = json.loads((ROOT / "agent.json").read_text())
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert version is not None
    project = {"version": version.group(1)}
    for key in ("id", "name", "version", "description", "repository", "authors", "license"):
        assert entry[key], key
    assert entry["version"] == project["version"]
    uvx = entry["distribution"]["uvx"]
    assert uvx == {"package": f"pygent[acp]=={project['version']}", "args": ["acp"]}
    assert re.search(r'^acp = \["agent-client-protocol', pyproject, re.MULTILINE)


def test_command_line_errors_are_clear() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pygent", "acp", "--approval-timeout", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "--approval-timeout must be > 0" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
    done = subprocess.run(
        [sys.executable, "-m", "pygent", "acp", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0 and "--sync" in done.stdout
