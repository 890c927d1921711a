"""Real OpenAI-compatible model servers as child processes: find the builds, start, wait, kill.

The builds come from ``.ci/model-servers-setup.sh``, which writes their paths as
``KEY=VALUE`` lines to ``$PYGENT_CACHE_DIR/model-servers.env`` (default
``/var/cache/pygent``); a variable of the same name in the environment wins. Every
server runs in its own process group, so a kill takes its children with it, and gets
``SIGKILL`` if the test process dies first (``PR_SET_PDEATHSIG``), so no run leaves a
server behind on any exit path.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.processes import processes_matching

CACHE_DIR = Path(os.environ.get("PYGENT_CACHE_DIR", "/var/cache/pygent"))
ENV_FILE = CACHE_DIR / "model-servers.env"
KEYS = (
    "PYGENT_LLAMA_CPP_PYTHON",
    "PYGENT_LLAMA_SERVER",
    "PYGENT_LITELLM",
    "PYGENT_TEST_GGUF",
    "PYGENT_TOOL_TEMPLATE",
)
#: The name Pygent sends as ``model``: the llama.cpp servers serve any name, LiteLLM routes it.
MODEL_NAME = "local"  # the name docs/models.md's snippets use
#: The window every server gets; the overflow test writes a prompt longer than this.
N_CTX = 4096
#: One thread each: with two, llama.cpp's threads spin-wait on each other, and any other
#: busy process on the 2 cores (the test itself, a build) slows generation ~7x.
THREADS = "1"
LLAMA_CPP_PYTHON = "llama-cpp-python"
LLAMA_SERVER = "llama-server"
LITELLM = "litellm"
KINDS = (LLAMA_CPP_PYTHON, LLAMA_SERVER, LITELLM)
#: What each kind needs from the setup script.
NEEDS = {
    LLAMA_CPP_PYTHON: ("PYGENT_LLAMA_CPP_PYTHON", "PYGENT_TEST_GGUF"),
    LLAMA_SERVER: ("PYGENT_LLAMA_SERVER", "PYGENT_TEST_GGUF", "PYGENT_TOOL_TEMPLATE"),
    LITELLM: ("PYGENT_LITELLM", "PYGENT_LLAMA_SERVER", "PYGENT_TEST_GGUF", "PYGENT_TOOL_TEMPLATE"),
}

#: The environment the servers get: as the run began, not as a test has patched it (a
#: shared server may be started from inside any test).
_BASE_ENV = dict(os.environ)
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl  # resolved here: the child after fork must not load anything


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL it when the test process dies."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def build_paths() -> dict[str, str]:
    """The setup script's KEY=VALUE lines, overridden by the environment."""
    paths: dict[str, str] = {}
    try:
        for line in ENV_FILE.read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key in KEYS:
                paths[key] = value
    except OSError:
        pass  # not built here: missing_reason() says so
    for key in KEYS:
        if os.environ.get(key):
            paths[key] = os.environ[key]
    return paths


def missing_reason(kind: str) -> str | None:
    """None when ``kind`` can be started here, else why not (with the fix)."""
    paths = build_paths()
    for key in NEEDS[kind]:
        value = paths.get(key)
        if not value:
            return f"{key} is not set and not in {ENV_FILE}: run .ci/model-servers-setup.sh"
        if not Path(value).is_file():
            return f"{key}={value} does not exist: run .ci/model-servers-setup.sh"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0, api_key: str = "unused") -> tuple[int, bytes]:
    """A plain GET: (status, body); status 0 when nothing answers."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


_LIVE: set[ServerProcess] = set()


@dataclass(eq=False)
class ServerProcess:
    """One server: its argv (built for a port), its log file, its process group.

    ``argv_for(port)`` makes the command line, so a restart can reuse the port.
    """

    kind: str
    argv_for: Callable[[int], list[str]]
    log_path: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] | None = None
    api_key: str = "unused"  # what clients send as the bearer token
    backend: ServerProcess | None = None  # the server a proxy forwards to
    ready_timeout: float = 90.0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` should be."""
        return f"{self.root_url}/v1"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> ServerProcess:
        """Start and wait until ``GET /v1/models`` answers 200 (the model is loaded)."""
        assert not self.alive, f"{self.kind} is already running"
        self.starts += 1
        log = open(self.log_path, "ab")  # appended: a restart keeps the first run's lines
        log.write(f"\n===== start {self.starts}: port {self.port} =====\n".encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(
                self.argv_for(self.port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # its own process group: one killpg ends it all
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        _LIVE.add(self)
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not self.alive:
                self.kill()
                raise RuntimeError(f"{self.kind} exited while starting:\n{self.log_tail()}")
            status, _ = http_get(f"{self.base_url}/models", timeout=2, api_key=self.api_key)
            if status == 200:
                return
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(
            f"{self.kind} did not answer GET /v1/models within {self.ready_timeout:g}s:\n"
            f"{self.log_tail()}"
        )

    def kill(self) -> None:
        """SIGKILL the whole process group and reap it; safe to call twice."""
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the group is gone already
        proc.wait(10)
        # The group's other members (if any) die with the same signal; wait until the
        # port is no longer held by anything started for it.
        deadline = time.monotonic() + 10
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> ServerProcess:
        """Kill it (if alive) and start it again on the same port."""
        self.kill()
        return self.start()

    def leftovers(self) -> list[str]:
        """Live processes started for this server (its port is on their command line)."""
        return processes_matching(f"--port {self.port}")

    def log_tail(self, limit: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-limit:]


@atexit.register
def _kill_all() -> None:
    """A run that ends without fixture teardown (sys.exit in a hook) still leaves none."""
    for server in list(_LIVE):
        server.kill()


# --------------------------------------------------------------------------- command lines


def llama_cpp_python(log_dir: Path) -> ServerProcess:
    paths = build_paths()
    python, gguf = paths["PYGENT_LLAMA_CPP_PYTHON"], paths["PYGENT_TEST_GGUF"]
    # fmt: off
    return ServerProcess(
        LLAMA_CPP_PYTHON,
        lambda port: [
            python, "-m", "llama_cpp.server", "--model", gguf,
            "--host", "127.0.0.1", "--port", str(port),
            "--chat_format", "chatml-function-calling", "--n_ctx", str(N_CTX),
            "--n_threads", THREADS, "--n_threads_batch", THREADS,
        ],
        log_dir / f"{LLAMA_CPP_PYTHON}.log",
        env=dict(_BASE_ENV),
    )
    # fmt: on


def llama_server(log_dir: Path, *, own_template: bool = False) -> ServerProcess:
    """llama-server with a ChatML template that describes tools, or (``own_template``)
    with the model's own, which does not."""
    paths = build_paths()
    binary, gguf = paths["PYGENT_LLAMA_SERVER"], paths["PYGENT_TEST_GGUF"]
    template = [] if own_template else ["--chat-template-file", paths["PYGENT_TOOL_TEMPLATE"]]
    name = f"{LLAMA_SERVER}-own-template" if own_template else LLAMA_SERVER
    # fmt: off
    return ServerProcess(
        LLAMA_SERVER,
        lambda port: [
            binary, "-m", gguf, "--host", "127.0.0.1", "--port", str(port),
            "--jinja", *template, "-c", str(N_CTX), "--threads", THREADS,
        ],
        log_dir / f"{name}.log",
        env=dict(_BASE_ENV),
    )
    # fmt: on


def litellm(log_dir: Path, backend: ServerProcess) -> ServerProcess:
    """A LiteLLM proxy routing ``MODEL_NAME`` to ``backend`` (an OpenAI-compatible server)."""
    binary = build_paths()["PYGENT_LITELLM"]
    config = log_dir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL_NAME}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL_NAME}\n"
        f"      api_base: {backend.base_url}\n"
        "      api_key: unused\n"
    )
    # It refuses to start without a master key; clients must then send it.
    key = f"sk-{secrets.token_hex(24)}"
    env = dict(_BASE_ENV)
    # No network here: the bundled model price map, no telemetry.
    env.update(
        LITELLM_MASTER_KEY=key, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False"
    )
    return ServerProcess(
        LITELLM,
        lambda port: [binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        log_dir / f"{LITELLM}.log",
        env=env,
        api_key=key,
        backend=backend,
        ready_timeout=120.0,
    )
