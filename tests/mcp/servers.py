"""Where .ci/mcp-setup.sh put the third-party MCP servers (host installs and the image).

The versions are read from the script itself, so a version bump there moves the tests
to the new folder and image with no second place to edit.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / ".ci" / "mcp-setup.sh"
CACHE = Path(os.environ.get("PYGENT_CACHE_DIR", "/var/cache/pygent"))


def _versions() -> dict[str, str]:
    text = SETUP.read_text()
    return dict(re.findall(r"^(MCP_SDK|GIT_SERVER|TIME_SERVER|EVERYTHING|NODE|IMAGE_REV)=(\S+?)(?:\s+#.*)?$", text, re.M))


def key() -> str:
    v = _versions()
    return (
        f"sdk{v['MCP_SDK']}-git{v['GIT_SERVER']}-time{v['TIME_SERVER']}"
        f"-everything{v['EVERYTHING']}-node{v['NODE']}-r{v['IMAGE_REV']}"
    )


def folder() -> Path:
    return CACHE / f"mcp-{key()}"


def image() -> str:
    return "pygent-mcp:" + re.sub(r"[^A-Za-z0-9_.-]", "_", key())


def git_server() -> Path:
    return folder() / "venv" / "bin" / "mcp-server-git"


def time_server() -> Path:
    return folder() / "venv" / "bin" / "mcp-server-time"


def everything_js() -> Path:
    return folder() / "npm" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"


def missing_host_servers() -> str | None:
    """Why the host installs are not there (None when they are)."""
    for path in (git_server(), time_server(), everything_js()):
        if not path.exists():
            return f"{path} is missing: run .ci/mcp-setup.sh"
    return None


def image_present() -> bool:
    done = subprocess.run(["docker", "image", "inspect", image()], capture_output=True, check=False)
    return done.returncode == 0
