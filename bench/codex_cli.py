"""Codex CLI as a bench subject: installed from npm into a cache keyed by version, and
configured to talk to the scripted model server through its Responses API route.

The npm package ``@openai/codex`` is a small Node launcher (``bin/codex.js``) and a
native binary in an optional dependency (``@openai/codex-linux-x64`` here), which npm
installs as usual. Both are measured: the launcher is what ``codex`` on a user's PATH
runs; the native binary is Codex without Node in front.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "@openai/codex"
#: The version the published figures were measured with; ``--codex-version latest`` asks npm.
DEFAULT_VERSION = "0.171.0"
#: Outside the clone, shared by every checkout on the machine.
CACHE = Path(os.environ.get("PYGENT_BENCH_CACHE", "/var/cache/pygent"))
#: The environment variable Codex reads the key from (``env_key`` in its provider table).
KEY_VARIABLE = "SCRIPTED_API_KEY"


@dataclass(frozen=True)
class CodexInstall:
    version: str
    launcher: Path  # node_modules/.bin/codex: Node, then the native binary
    native: Path  # the native binary alone
    package_root: Path  # node_modules/@openai/codex

    def native_env(self) -> dict[str, str]:
        """What the launcher adds to the environment before it starts the native binary."""
        return {"CODEX_MANAGED_PACKAGE_ROOT": str(self.package_root), "CODEX_MANAGED_BY_NPM": "1"}


def resolve_version(wanted: str) -> str:
    """``latest`` becomes the registry's current version; anything else is kept."""
    if wanted != "latest":
        return wanted
    out = subprocess.run(
        ["npm", "view", PACKAGE, "version"], capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"npm view {PACKAGE} version failed: {out.stderr.strip()[-500:]}")
    return out.stdout.strip()


def _find(prefix: Path, version: str) -> CodexInstall | None:
    launcher = prefix / "node_modules" / ".bin" / "codex"
    arch = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
    natives = sorted(
        (prefix / "node_modules" / "@openai").glob(f"codex-linux-{arch}/vendor/*/bin/codex")
    )
    if launcher.is_file() and natives:
        package_root = (prefix / "node_modules" / "@openai" / "codex").resolve()
        return CodexInstall(version, launcher, natives[0], package_root)
    return None


def ensure_installed(version: str, say=print) -> CodexInstall:
    """The cached install of ``version``, installing it first when missing (and saying so)."""
    prefix = CACHE / f"codex-{version}"
    found = _find(prefix, version)
    if found is not None:
        return found
    if shutil.which("npm") is None:
        raise RuntimeError("npm is not installed: apt-get install npm")
    say(f"installing Codex CLI {version} into {prefix} (npm, once per version)")
    prefix.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
         "--loglevel=error", f"{PACKAGE}@{version}"],
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    found = _find(prefix, version)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"npm install {PACKAGE}@{version} failed: {out.stderr.strip()[-800:]}")
    return found


def write_config(codex_home: Path, base_url: str, model: str) -> None:
    """A ``config.toml`` whose default provider is the scripted server's Responses route.

    Plugins and analytics are off: on start Codex otherwise syncs its curated plugin
    marketplace from GitHub (``git ls-remote``) and posts analytics, which this machine
    has no network for. Pygent makes neither kind of request, so both sides stay local.
    """
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        f"""model = "{model}"
model_provider = "scripted"

[model_providers.scripted]
name = "Scripted test server"
base_url = "{base_url}"
env_key = "{KEY_VARIABLE}"
wire_api = "responses"

[features]
plugins = false

[analytics]
enabled = false
""",
        encoding="utf-8",
    )


def exec_argv(binary: Path, prompt: str) -> list[str]:
    """``codex exec`` run non-interactively: no git repository needed, no approvals and
    no sandbox (Pygent's ``--no-docker`` runs commands on the host too)."""
    return [
        str(binary),
        "exec",
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
        prompt,
    ]
