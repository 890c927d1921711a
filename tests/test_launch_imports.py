"""What each front end has loaded, and asked the server, when its first model request leaves.

Guards the launch path (issue 14, docs/performance.md "Launch") without timing anything:
the real program runs against the scripted server, and an audit hook in the child
writes down ``sys.modules`` the moment the first model request connects to it. Modules
that serve later work (tool previews, folder sync, MCP, other sandboxes, other front
ends) must not be there yet, and nothing else may reach the server before the model
request (the context-window probe comes after it; the REPL's key check is skipped when
a line already waits).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from tests.openai_server import ScriptedOpenAIServer
from tests.repl.conftest import terminal_env

#: Loaded by none of the launch paths before their first model request.
NOT_BEFORE_THE_FIRST_REQUEST = (
    # other front ends and their libraries
    "rich",
    "prompt_toolkit",
    "pygls",
    "lsprotocol",
    "pygent.lsp",
    "pygent.web",
    "pygent.acp",
    "acp",
    # the official SDKs: the model layer speaks through httpcore2 (pygent.http_stack),
    # neither through the openai SDK nor through httpx2 above httpcore2
    "openai",
    "httpx2",
    "mcp",
    "docker",
    # another event loop's, hidden while httpcore2 loads (pygent.http_stack)
    "trio",
    # asked by httpcore2 for its own version only: it reads it from its .dist-info
    # folder's name instead (pygent.http_stack)
    "importlib.metadata",
    # sessions with no MCP server, no editor folder, no Docker never need these
    "pygent.mcp.session",
    "pygent.mcp.config",
    "pygent.changes",
    "pygent.cow",
    "pygent.runtime.overlay",
    "pygent.runtime.pool",
    "pygent.runtime.docker_backend",
    "pygent.runtime.docker_engine",
    "pygent.runtime.remote",
    "pygent.runtime.transfer",
    "pygent.runtime.bwrap",
    "pygent.runtime.gvisor",
    "pygent.runtime.podman",
    "pygent.diagnostics.editor",
    # the first tool call's
    "pygent.tools.preview",
    "difflib",
    # no pygent.toml here: its parser waits for one
    "tomllib",
)

#: The REPL's own, which its first request has no use for either.
REPL_NOT_BEFORE_THE_FIRST_REQUEST = (
    "pygent.repl.commands_builtin",  # the slash commands: loaded at the first one
    # the display loads behind a prompt typed at once (pygent/repl/late_view.py)
    "rich",
    # and the line editor: the line was typed at the prompt drawn before it loaded
    # (pygent/repl/early_prompt.py)
    "prompt_toolkit",
    "pygent.repl.render",
    "pygent.repl.approver",
    "pygent.repl.slash",
    "pygent.repl.snapshot",
    "pygent.diagnostics",
    "openai",
    "mcp",
    "docker",
    "pygent.changes",
    "pygent.runtime.pool",
    "pygent.runtime.docker_backend",
    "pygent.tools.preview",
    "tomllib",
    "trio",
)

#: Runs in the child before the program: records the modules at the first connection
#: to the model server from anything but the REPL's reachability probe (a bare socket).
HOOK = """
import json, os, sys, threading
def _pygent_launch_hook(event, args):
    if event != "socket.connect" or getattr(_pygent_launch_hook, "done", False):
        return
    address = args[1]
    if not (isinstance(address, tuple) and address[1:2] == (int(os.environ["LAUNCH_PORT"]),)):
        return
    if threading.current_thread().name == "pygent-probe":
        return
    _pygent_launch_hook.done = True
    with open(os.environ["LAUNCH_OUT"], "w") as f:
        json.dump(sorted(sys.modules), f)
sys.addaudithook(_pygent_launch_hook)
"""

ONE_SHOT = "sys.argv = ['pygent', '--no-docker', '--output-format', 'json', '-p', 'hi']\n" \
    "from pygent.cli import main\nraise SystemExit(main())\n"
API = (
    "from pygent import Agent, Runtime\n"
    "runtime = Runtime(use_docker=False)\n"
    "print(Agent(runtime=runtime).step('hi').content)\n"
    "runtime.cleanup()\n"
)
REPL = "sys.argv = ['pygent', '--no-docker']\nfrom pygent.cli import main\nraise SystemExit(main())\n"


@pytest.fixture
def launch_env(tmp_path: Path, openai_server: ScriptedOpenAIServer) -> dict[str, str]:
    env = terminal_env(
        tmp_path / "home",
        OPENAI_BASE_URL=openai_server.base_url,
        OPENAI_API_KEY="sk-test-key",
        PYGENT_MODEL="test-model",
        PYGENT_USE_DOCKER="0",
        LAUNCH_PORT=str(openai_server.port),
        LAUNCH_OUT=str(tmp_path / "modules.json"),
    )
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)  # this checkout
    (tmp_path / "cwd").mkdir()
    return env


def _loaded(env: dict[str, str]) -> set[str]:
    return set(json.loads(Path(env["LAUNCH_OUT"]).read_text()))


def _early(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == n or m.startswith(n + ".") for n in names))


def _paths(server: ScriptedOpenAIServer) -> list[str]:
    return [f"{r.method} {r.path.split('?')[0]}" for r in server.requests]


def _run(code: str, env: dict[str, str], tmp_path: Path) -> str:
    import subprocess

    out = subprocess.run([sys.executable, "-c", HOOK + code], env=env, cwd=tmp_path / "cwd",
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.parametrize("front_end", ["one-shot", "api"])
def test_first_request_leaves_before_the_rest_is_loaded(
    front_end: str, launch_env: dict[str, str], openai_server: ScriptedOpenAIServer,
    tmp_path: Path,
) -> None:
    openai_server.model_info["test-model"] = {"context_length": 12345}
    openai_server.add_text("pong")
    stdout = _run(ONE_SHOT if front_end == "one-shot" else API, launch_env, tmp_path)
    assert _early(_loaded(launch_env), NOT_BEFORE_THE_FIRST_REQUEST) == []
    # The model request goes first; the context-window probe follows its answer.
    paths = _paths(openai_server)
    assert paths[0] == "POST /v1/chat/completions", paths
    assert "GET /v1/models" in paths[1:], paths
    if front_end == "one-shot":
        result = json.loads(stdout)
        assert result["answer"] == "pong"
        # ...and its answer still counts: the window the server reported is the session's.
        assert result["usage"]["context_window"] == 12345


def test_a_resumed_conversation_asks_for_the_window_before_its_request(
    launch_env: dict[str, str], openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """With something to compact, the window decides whether to: it is asked first."""
    openai_server.model_info["test-model"] = {"context_length": 12345}
    openai_server.add_text("first")
    first = json.loads(_run(ONE_SHOT, launch_env, tmp_path))
    openai_server.reset()
    openai_server.add_text("second")
    resume = ONE_SHOT.replace("'-p', 'hi'", f"'--resume', '{first['session_id']}', '-p', 'again'")
    _run(resume, launch_env, tmp_path)
    paths = _paths(openai_server)
    assert paths.index("GET /v1/models") < paths.index("POST /v1/chat/completions"), paths


def test_repl_prompt_typed_at_once_is_the_first_request(
    launch_env: dict[str, str], openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """Typed the moment the prompt shows: no key check before it, no slash commands loaded."""
    openai_server.add_text("pong")
    child = pexpect.spawn(sys.executable, ["-c", HOOK + REPL], env=launch_env,
                          cwd=str(tmp_path / "cwd"), encoding="utf-8", timeout=60,
                          dimensions=(40, 120))
    # At once: pexpect's default 50 ms pause before sending would let the session finish
    # loading first, and a line typed after that is a slow typist's (the key check and
    # the display load before it then, as they should).
    child.delaybeforesend = None
    try:
        child.expect_exact("vc> ")
        child.send("hi\r")
        child.expect_exact("pong")
        child.expect_exact("vc> ")
        child.send("\x04")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert _early(_loaded(launch_env), REPL_NOT_BEFORE_THE_FIRST_REQUEST) == []
    paths = _paths(openai_server)
    assert paths[0] == "POST /v1/chat/completions", paths
    assert "GET /v1/models" in paths[1:], paths  # the window, asked after the answer


def test_hook_sees_what_it_is_meant_to(
    launch_env: dict[str, str], openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """The check can fail: a program that loads a listed module first is caught."""
    openai_server.add_text("pong")
    _run("import difflib\n" + API, launch_env, tmp_path)
    assert _early(_loaded(launch_env), NOT_BEFORE_THE_FIRST_REQUEST) == ["difflib"]
    assert os.path.getsize(launch_env["LAUNCH_OUT"]) > 0


def test_repl_prompt_typed_at_once_shows_everything_and_asks_for_approval(
    launch_env: dict[str, str], openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """The display loads behind that request: what the turn said meanwhile is all shown,
    in order, and an approval asked before the display was up waits for it."""
    openai_server.add_tool_call("bash", {"cmd": "echo held-approval-ran"})
    openai_server.add_text("the command ran")
    child = pexpect.spawn(sys.executable, ["-c", HOOK + REPL], env=launch_env,
                          cwd=str(tmp_path / "cwd"), encoding="utf-8", timeout=60,
                          dimensions=(40, 120))  # fmt: skip
    child.delaybeforesend = None  # typed at once (see above)
    try:
        child.expect_exact("vc> ")
        child.send("run it\r")
        child.expect(r"allow\? \[y/n/a/d/m\]")  # local mode: every command asks
        child.send("y\r")
        child.expect_exact("held-approval-ran")
        child.expect_exact("the command ran")
        child.expect_exact("vc> ")
        child.send("\x04")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert _early(_loaded(launch_env), REPL_NOT_BEFORE_THE_FIRST_REQUEST) == []
    assert [r.path for r in openai_server.model_requests] == ["/v1/chat/completions"] * 2
