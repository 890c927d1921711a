"""Launch to the first model request on the wire: Pygent next to Codex CLI, in one run.

Every subject talks to one scripted model server in this process, which stamps each
request with ``time.monotonic()`` the moment its request line is read; the clock starts
just before the subject is spawned. Subjects:

- ``python -c pass``, start to exit: the floor every Python program pays;
- Pygent's Python API: ``python -c`` building ``Agent(runtime=Runtime(use_docker=False))``
  and calling ``agent.step('hi')``;
- Pygent one-shot: ``pygent --no-docker -p hi`` (the peer of ``codex exec hi``);
- Pygent's REPL in a pseudo-terminal: launch to the prompt, ``hi`` typed the moment
  the prompt shows, launch to the request; Ctrl-D once the answer is on screen;
- ``codex exec`` (npm ``@openai/codex``, through its Node launcher, as on a user's PATH)
  and its native binary alone, with a private ``CODEX_HOME`` whose provider is the same
  server's Responses route (``wire_api = "responses"``).

Each is also timed from launch to exit. Then a multi-step turn (``STEPS`` scripted
commands running ``true``, then an answer) through Pygent's API and ``codex exec``
gives the time between consecutive model requests and the peak memory of the whole
process tree (summed resident set, sampled every 10 ms). Runs alternate round by round,
in an order that rotates, after one warm-up run each (page cache, ``.pyc`` files,
Codex's state databases); the homes are kept across rounds, as a user's are.

    python bench/bench_launch.py [--rounds N] [--quick] [--codex-version V|latest]
                                 [--no-codex] [--write-docs]
    python bench/bench_launch.py --docs-only   # docs from bench/results/launch.json

Codex is installed from npm into ``/var/cache/pygent/codex-<version>`` when missing
(``PYGENT_BENCH_CACHE`` moves it). Writes ``bench/results/launch.json``; with
``--write-docs`` also the figures in the "Launch" section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# bench/ is the script's own directory, so its helper modules import by name.
import codex_cli  # noqa: E402
import launch_report  # noqa: E402
from children import (  # noqa: E402
    CHILDREN,
    Run,
    cpu_seconds,
    peak_rss_bytes,
    rss_bytes,
    spawn_and_wait,
    tree,
)

from tests.openai_server import ScriptedOpenAIServer  # noqa: E402

ANSWER = "pong"  # one word, so the REPL shows it unbroken
PROMPT = "vc> "
STEPS = 4  # commands in the multi-step turn
RUN_TIMEOUT = 60.0  # seconds any one run may take before it is killed
RESULTS = ROOT / "bench" / "results" / "launch.json"
DOCS = ROOT / "docs" / "performance.md"

API_STEP = (
    "from pygent import Agent, Runtime\n"
    "runtime = Runtime(use_docker=False)\n"
    "agent = Agent(runtime=runtime)\n"
    "print(agent.step('hi').content)\n"
    "runtime.cleanup()\n"
)
API_TURN = API_STEP.replace("agent.step('hi')", "agent.run_until_stop('hi')")

LABELS = {
    "python_c_pass": "`python -c pass` (start to exit)",
    "pygent_api": "Pygent API (`agent.step`)",
    "pygent_oneshot": "Pygent one-shot (`pygent --no-docker -p hi`)",
    "pygent_repl": "Pygent REPL (pty, typed at the prompt)",
    "codex_exec": "`codex exec` (npm launcher)",
    "codex_exec_native": "`codex exec` (native binary alone)",
    "pygent_api_turn": f"Pygent API, {STEPS} commands then an answer",
    "codex_exec_turn": f"`codex exec`, {STEPS} commands then an answer",
}


# --------------------------------------------------------------------------- the subjects


class Failed(Exception):
    """A run that did not do what it was scripted to do."""


@dataclass
class Bench:
    server: ScriptedOpenAIServer
    tmp: Path
    codex: codex_cli.CodexInstall | None
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    warm_up: dict[str, dict[str, Any]] = field(default_factory=dict)  # first runs, cold homes
    failures: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = self.tmp / "pygent-home"
        self.codex_home = self.tmp / "codex-home"  # CODEX_HOME
        self.codex_user = self.tmp / "codex-user"  # HOME, for the shells Codex starts
        self.work = self.tmp / "work"
        for d in (self.home, self.codex_user, self.work):
            d.mkdir(parents=True, exist_ok=True)
        if self.codex is not None:
            codex_cli.write_config(self.codex_home, self.server.base_url, "test-model")

    # --- environments

    def pygent_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PYGENT_", "OPENAI_", "XDG_")) and k not in ("COLUMNS", "LINES")
        }
        env.update(
            HOME=str(self.home),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            XDG_STATE_HOME=str(self.home / ".local" / "state"),
            OPENAI_BASE_URL=self.server.base_url,
            OPENAI_API_KEY="sk-bench",
            PYGENT_MODEL="test-model",
            PYGENT_USE_DOCKER="0",
            TERM="xterm-256color",
            PROMPT_TOOLKIT_NO_CPR="1",  # nothing answers cursor-position requests in pexpect
        )
        return env

    def codex_env(self, native: bool) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENAI_", "CODEX_", "RUST_")) and k not in ("COLUMNS", "LINES")
        }
        env.update(
            HOME=str(self.codex_user), CODEX_HOME=str(self.codex_home), TERM="xterm-256color"
        )
        env[codex_cli.KEY_VARIABLE] = "sk-bench"
        if native and self.codex is not None:
            env.update(self.codex.native_env())
        return env

    # --- one run of each

    def _script(self, steps: int, tool: str) -> None:
        self.server.reset()
        for _ in range(steps):
            self.server.add_tool_call(tool, {"cmd": "true"})
        self.server.add_text(ANSWER)

    def _model_times(self, started: float, expected: int) -> list[float]:
        got = self.server.model_requests
        if len(got) != expected:
            raise Failed(f"{len(got)} model requests, expected {expected}")
        return [(r.received_monotonic - started) * 1000 for r in got]

    def _check(self, run: Run) -> None:
        if run.timed_out:
            raise Failed(f"killed after {RUN_TIMEOUT:.0f} s; output: {run.output[-1500:]}")
        if run.code != 0 or ANSWER not in run.output:
            raise Failed(f"exit {run.code}, answer shown: {ANSWER in run.output}; "
                         f"output: {run.output[-1500:]}")  # fmt: skip

    def python_pass(self) -> dict[str, Any]:
        self.server.reset()
        run = spawn_and_wait([PYTHON[0], "-c", "pass"], self.pygent_env(), self.work,
                             log=self.tmp / "python.log", timeout=RUN_TIMEOUT)  # fmt: skip
        if run.code != 0 or run.timed_out:
            raise Failed(f"python -c pass: exit {run.code}")
        return {"exit_ms": (run.exited - run.started) * 1000, "cpu_ms": run.cpu_s * 1000}

    def _process(self, name: str, argv: list[str], env: dict[str, str], *, steps: int = 0,
                 stdin: str | None = None) -> dict[str, Any]:  # fmt: skip
        self._script(steps, "exec_command" if name.startswith("codex") else "bash")
        run = spawn_and_wait(argv, env, self.work, stdin=stdin, sample_memory=steps > 0,
                             log=self.tmp / f"{name}.log", timeout=RUN_TIMEOUT)  # fmt: skip
        self._check(run)
        times = self._model_times(run.started, steps + 1)
        out: dict[str, Any] = {
            "first_request_ms": times[0],
            "exit_ms": (run.exited - run.started) * 1000,
            "after_last_request_ms": (run.exited - run.started) * 1000 - times[-1],
            "cpu_ms": run.cpu_s * 1000,
            "max_process_rss_mb": run.max_rss / 2**20,
        }
        if steps:
            out["tree_peak_rss_mb"] = run.tree_peak / 2**20
            out["turn_ms"] = times[-1] - times[0]
            out["gaps_ms"] = [b - a for a, b in itertools.pairwise(times)]
        return out

    def pygent_api(self) -> dict[str, Any]:
        return self._process("pygent_api", [PYTHON[0], "-c", API_STEP], self.pygent_env())

    def pygent_api_turn(self) -> dict[str, Any]:
        argv = [PYTHON[0], "-c", API_TURN]
        return self._process("pygent_api_turn", argv, self.pygent_env(), steps=STEPS)

    def pygent_oneshot(self) -> dict[str, Any]:
        return self._process("pygent_oneshot", [*_pygent_argv(), "-p", "hi"], self.pygent_env())

    def codex_exec(self) -> dict[str, Any]:
        assert self.codex is not None
        argv = codex_cli.exec_argv(self.codex.launcher, "hi")
        return self._process("codex_exec", argv, self.codex_env(native=False))

    def codex_exec_native(self) -> dict[str, Any]:
        assert self.codex is not None
        argv = codex_cli.exec_argv(self.codex.native, "hi")
        return self._process("codex_exec_native", argv, self.codex_env(native=True))

    def codex_exec_turn(self) -> dict[str, Any]:
        assert self.codex is not None
        argv = codex_cli.exec_argv(self.codex.launcher, "hi")
        return self._process("codex_exec_turn", argv, self.codex_env(native=False), steps=STEPS)

    def pygent_repl(self) -> dict[str, Any]:
        """Launch to prompt, ``hi`` typed at once, the request, the answer, Ctrl-D, exit."""
        self._script(0, "bash")
        argv = _pygent_argv()
        started = time.monotonic()
        child = pexpect.spawn(argv[0], argv[1:], env=self.pygent_env(), cwd=str(self.work),
                              encoding="utf-8", codec_errors="replace", timeout=RUN_TIMEOUT,
                              dimensions=(50, 160))  # fmt: skip
        CHILDREN.add(child.pid)
        child.delaybeforesend = None  # typed the moment the prompt shows (pexpect waits 50 ms)
        try:
            child.expect_exact(PROMPT)
            prompt = time.monotonic()
            child.send("hi\r")
            child.expect_exact(ANSWER)
            answer = time.monotonic()
            cpu = cpu_seconds(child.pid)
            hwm = peak_rss_bytes(child.pid)
            tree_rss = sum(rss_bytes(p) for p in tree(child.pid))
            child.expect_exact(PROMPT)  # the turn is over
            quit_at = time.monotonic()
            child.send("\x04")
            child.expect(pexpect.EOF)
            exited = time.monotonic()
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            raise Failed(f"{type(exc).__name__}; screen: {(child.before or '')[-1500:]}") from None
        finally:
            child.close(force=True)
            CHILDREN.kill(child.pid)
        (first,) = self._model_times(started, 1)
        return {
            "prompt_ms": (prompt - started) * 1000,
            "first_request_ms": first,
            "prompt_to_request_ms": first - (prompt - started) * 1000,
            "answer_ms": (answer - started) * 1000,
            "quit_ms": (exited - quit_at) * 1000,
            "cpu_ms": cpu * 1000,
            "max_process_rss_mb": hwm / 2**20,
            "tree_rss_mb": tree_rss / 2**20,
        }

    # --- bookkeeping

    def measure(self, name: str, fn: Callable[[], dict[str, Any]], keep: bool = True) -> None:
        try:
            got = fn()
        except Failed as exc:
            self.failures.setdefault(name, []).append(str(exc))
            print(f"  {name}: FAILED: {str(exc)[:400]}", flush=True)
            return
        if not keep:
            self.warm_up[name] = {k: launch_report.rounded(v) for k, v in got.items()}
            return
        into = self.samples.setdefault(name, {})
        for key, value in got.items():
            into.setdefault(key, []).extend(value if isinstance(value, list) else [value])


#: The Python that runs Pygent (and ``python -c pass``): set by main() from --install.
PYTHON = [sys.executable]


def _pygent_argv() -> list[str]:
    script = Path(PYTHON[0]).with_name("pygent")
    if not script.is_file():
        raise SystemExit(f"no pygent script next to {PYTHON[0]}: pip install -e .")
    return [str(script), "--no-docker"]


def user_install() -> str:
    """A clean virtual environment with this checkout installed as a user installs it
    (``pip install .``, as pipx does): the Python that the Pygent subjects run.

    The environment and the dependencies are cached in ``PYGENT_BENCH_CACHE``; Pygent
    itself is reinstalled from the working tree on every run. A development Python
    carries start-up costs of its own (an editable-install finder, whatever ``.pth``
    files its site-packages holds: on this machine one imports certifi), which a
    user's ``pipx install pygent`` does not pay.
    """
    venv = codex_cli.CACHE / f"launch-venv-py{sys.version_info[0]}.{sys.version_info[1]}"
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "-q", "--disable-pip-version-check"]
    if not (venv / ".ready").is_file():
        print(f"making a clean environment for Pygent in {venv} (once)", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([*pip, "install", "setuptools>=68", "wheel", str(ROOT)], check=True)
        (venv / ".ready").touch()
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "--force-reinstall",
                    str(ROOT)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return str(python)


# --------------------------------------------------------------------------- main


def _node_version() -> str:
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.stdout.strip().lstrip("v") or "?"


def _on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that kill children


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=21, help="measured rounds (default 21)")
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--codex-version", default=codex_cli.DEFAULT_VERSION,
                        help=f"npm version of @openai/codex, or 'latest' (default "
                             f"{codex_cli.DEFAULT_VERSION})")  # fmt: skip
    parser.add_argument("--no-codex", action="store_true", help="measure Pygent only")
    parser.add_argument("--install", choices=("user", "dev"), default="user",
                        help="user: Pygent installed into a clean virtual environment, as "
                             "users install it (default); dev: this Python's install")  # fmt: skip
    parser.add_argument("--write-docs", action="store_true",
                        help="also write the figures into docs/performance.md")  # fmt: skip
    parser.add_argument("--docs-only", action="store_true",
                        help=f"only rewrite the docs from {RESULTS.relative_to(ROOT)}")  # fmt: skip
    args = parser.parse_args(argv)
    if args.docs_only:
        launch_report.write_docs(json.loads(RESULTS.read_text()), DOCS)
        print(f"updated the Launch figures in {DOCS}")
        return 0
    rounds = 3 if args.quick else args.rounds
    if args.install == "user":
        PYTHON[0] = user_install()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    codex: codex_cli.CodexInstall | None = None
    codex_info: dict[str, Any] = {"error": "--no-codex"}
    if not args.no_codex:
        try:
            version = codex_cli.resolve_version(args.codex_version)
            codex = codex_cli.ensure_installed(version)
            codex_info = {"version": codex.version, "node": _node_version(),
                          "launcher": str(codex.launcher), "native": str(codex.native)}  # fmt: skip
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            codex_info = {"error": str(exc)}
            print(f"Codex CLI unavailable, measuring Pygent alone: {exc}", flush=True)

    # Not under /tmp: Codex refuses to set up its helper links in a temporary directory.
    codex_cli.CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-launch-", dir=codex_cli.CACHE))
    load = [os.getloadavg()[0]]
    try:
        with ScriptedOpenAIServer() as server:
            bench = Bench(server, tmp, codex)
            subjects: list[tuple[str, Callable[[], dict[str, Any]]]] = [
                ("python_c_pass", bench.python_pass),
                ("pygent_api", bench.pygent_api),
                ("pygent_oneshot", bench.pygent_oneshot),
                ("pygent_repl", bench.pygent_repl),
                ("pygent_api_turn", bench.pygent_api_turn),
            ]
            if codex is not None:
                subjects += [
                    ("codex_exec", bench.codex_exec),
                    ("codex_exec_native", bench.codex_exec_native),
                    ("codex_exec_turn", bench.codex_exec_turn),
                ]
            print(f"warm-up, then {rounds} rounds of {len(subjects)} subjects", flush=True)
            for name, fn in subjects:
                bench.measure(name, fn, keep=False)
            for i in range(rounds):  # the order rotates, so no subject always goes first
                turn = subjects[i % len(subjects) :] + subjects[: i % len(subjects)]
                for name, fn in turn:
                    bench.measure(name, fn)
                print(f"  round {i + 1}/{rounds} done", flush=True)
    finally:
        CHILDREN.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
    load.append(os.getloadavg()[0])

    result: dict[str, Any] = {
        "benchmark": "launch to the first model request on the wire; Pygent and Codex CLI",
        "date": datetime.date.today().isoformat(),
        "rounds": rounds,
        "steps_in_turn": STEPS,
        "codex": codex_info,
        "subjects": {
            name: {
                "label": LABELS[name],
                **{k: launch_report.summary(v) for k, v in metrics.items()},
            }
            for name, metrics in bench.samples.items()
        },
        "warm_up_runs": bench.warm_up,
        "failures": bench.failures,
        "load_average_1min": [round(x, 2) for x in load],
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; Pygent "
        + ("installed into a clean virtual environment (pip install .)" if args.install == "user"
           else "from the development install"),
    }
    result["ratios"] = launch_report.ratios(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(launch_report.table(result))
    print(f"\nload {result['load_average_1min']}; written to {RESULTS}")
    if args.write_docs:
        launch_report.write_docs(result, DOCS)
        print(f"updated the Launch figures in {DOCS}")
    if bench.failures:
        print("failed runs:", {k: len(v) for k, v in bench.failures.items()})
    return 1 if bench.failures or codex is None and not args.no_codex else 0


if __name__ == "__main__":
    raise SystemExit(main())
