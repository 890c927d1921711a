"""The ``pygent`` command: parses flags, then starts the REPL, runs one prompt
(``pygent -p``) or dispatches a subcommand.

Kept deliberately light: nothing heavy (rich, prompt_toolkit, openai, docker, the
agent core) is imported here, so ``pygent --version`` and ``pygent --help`` answer
at once and the REPL's start-up cost lives in :mod:`pygent.repl`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Subcommands and the module whose ``main(argv) -> int`` serves them
#: (``module:function`` names another entry point than ``main``).
SUBCOMMANDS = {
    "ui": ("pygent.web.server", "the web interface", "pip install 'pygent[ui]'"),
    "lsp": ("pygent.lsp.launch", "the language server for editors", "pip install pygent"),
    "serve": ("pygent.lsp.serve", "the session host", "pip install pygent"),
    "sessions": ("pygent.lsp.serve:sessions_main", "the session list", "pip install pygent"),
    "attach": ("pygent.repl.attach", "the terminal on a host's session", "pip install pygent"),
    "acp": ("pygent.acp.launch", "the Agent Client Protocol agent", "pip install 'pygent[acp]'"),
}
#: Flags that take a value: needed to find the subcommand word among the options.
_VALUE_FLAGS = {
    "-c",
    "--config",
    "-w",
    "--workspace",
    "--pyconfig",
    "-e",
    "--env",
    "--load",
    "--omit-tool",
    "--ban-cmd",
    "--model",
    "-p",
    "--print",
    "--output-format",
    "--approval-mode",
    "--max-steps",
    "--resume",
}
#: ``--output-format`` values of the one-shot mode.
OUTPUT_FORMATS = ("text", "json", "stream-json")
#: ``--approval-mode`` values (the same as PYGENT_APPROVAL_MODE's, without ``api``).
APPROVAL_MODES = ("auto", "confirm", "never", "read-only")


@dataclass
class ReplOptions:
    """What the command line asked of the REPL (flags not given are None or empty)."""

    use_docker: bool | None = None
    config: Path | None = None
    workspace: str | None = None
    cwd: bool = False
    pyconfig: Path | None = None
    env: list[str] = field(default_factory=list)
    load: Path | None = None
    omit_tools: list[str] = field(default_factory=list)
    confirm_bash: bool | None = None
    ban_cmds: list[str] = field(default_factory=list)
    model: str | None = None
    show_usage: bool = False
    prompt: str | None = None  # -p: run this one prompt ("": read it from stdin)
    output_format: str = "text"
    yes: bool = False
    approval_mode: str | None = None
    max_steps: int | None = None
    resume: str | None = None  # --resume: this id ("": pick one)
    continue_latest: bool = False

    @property
    def one_shot(self) -> bool:
        return self.prompt is not None


def _version() -> str:
    from pygent import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The REPL's argument parser (subcommands are dispatched before it runs)."""
    parser = argparse.ArgumentParser(
        prog="pygent",
        description="A coding assistant that runs every command inside an isolated sandbox "
        "(a Docker container when available).",
        epilog="subcommands:\n"
        "  pygent ui [ARGS]       start the web interface (also: pygent-ui)\n"
        "  pygent lsp [ARGS]      start the language server (pygent lsp --stdio)\n"
        "  pygent serve [ARGS]    run the session host: sessions outlive editor windows\n"
        "                         (--background, --stop, --status; docs/host.md)\n"
        "  pygent sessions        list the session host's live sessions (or the saved ones)\n"
        "  pygent attach [ID]     the terminal on a live session of the host\n"
        "  pygent version         print the version\n\n"
        "one prompt, no REPL: pygent -p 'fix the failing test' (or the prompt on stdin)\n"
        "Inside the REPL type /help for commands. Docs: docs/repl.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--docker",
        dest="use_docker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run commands in a Docker container (--no-docker: on this machine)",
    )
    # The runtime's Docker hints say "run with --local": the same as --no-docker.
    add(
        "--local",
        dest="use_docker",
        action="store_const",
        const=False,
        default=None,
        help="the same as --no-docker",
    )
    add("-c", "--config", type=Path, metavar="FILE", help="read settings from this pygent.toml")
    add(
        "-w",
        "--workspace",
        metavar="NAME",
        help="keep the workspace in this directory (created if missing) across sessions",
    )
    add("--cwd", action="store_true", help="use the current directory as the workspace")
    add(
        "--pyconfig",
        type=Path,
        metavar="FILE",
        help="run this Python start-up script (default: ./config.py when present)",
    )
    add(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="NAME=value",
        help="set a variable inside the sandbox (repeatable)",
    )
    add(
        "--omit-tool",
        dest="omit_tools",
        action="append",
        default=[],
        metavar="NAME",
        help="disable a tool (repeatable)",
    )
    add(
        "--confirm-bash",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ask before every command (--no-confirm-bash: never ask)",
    )
    add(
        "--ban-cmd",
        dest="ban_cmds",
        action="append",
        default=[],
        metavar="CMD",
        help="never run this command (repeatable)",
    )
    add("--model", metavar="NAME", help="the model name (default: PYGENT_MODEL or gpt-4.1-mini)")
    add(
        "--usage",
        dest="show_usage",
        action="store_true",
        help="show the token usage after every turn",
    )
    add(
        "--approval-mode",
        choices=APPROVAL_MODES,
        help="when to ask before a tool runs (default: PYGENT_APPROVAL_MODE or auto; "
        "docs/approvals.md)",
    )
    add("--max-steps", type=int, metavar="N", help="model calls per turn at most (default 50)")
    resume = parser.add_argument_group("saved sessions")
    resume.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="ID",
        help="resume a saved session (without ID: pick one from a list)",
    )
    resume.add_argument(
        "--continue",
        dest="continue_latest",
        action="store_true",
        help="resume the latest session started in this folder",
    )
    resume.add_argument(
        "--load",
        type=Path,
        metavar="DIR",
        help="resume a session saved with /save DIR (or set PYGENT_SNAPSHOT)",
    )
    once = parser.add_argument_group(
        "one-shot mode", "run one prompt, print the answer and exit (exit statuses: docs/repl.md)"
    )
    once.add_argument(
        "-p",
        "--print",
        dest="prompt",
        nargs="?",
        const="",
        metavar="PROMPT",
        help="run PROMPT (without it: the prompt read from stdin) and print the answer",
    )
    once.add_argument(
        "--output-format",
        choices=OUTPUT_FORMATS,
        default="text",
        help="text (the answer), json (one object) or stream-json (one event per line)",
    )
    once.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="allow the tool calls the approval mode would ask about (default: deny them)",
    )
    add("--version", action="version", version=f"pygent {_version()}")
    return parser


def parse_options(argv: Sequence[str]) -> ReplOptions:
    """Parse the REPL's flags (argparse exits with status 2 on a bad flag)."""
    ns = build_parser().parse_args(list(argv))
    return ReplOptions(**vars(ns))


def _find_subcommand(argv: Sequence[str]) -> int | None:
    """Index of the first positional word (``ui``, ``lsp``, ``version``), or None."""
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--":
            return None
        if arg.startswith("-"):
            skip = arg in _VALUE_FLAGS  # "--model x"; "--model=x" carries its value
            continue
        return i
    return None


def _run_subcommand(name: str, argv: list[str]) -> int:
    target, what, hint = SUBCOMMANDS[name]
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        entry = getattr(module, function or "main")
    except (ImportError, AttributeError) as exc:
        print(
            f"pygent {name}: {what} is not available ({exc}); install it with: {hint}",
            file=sys.stderr,
        )
        return 2
    return int(entry(argv) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pygent`` script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    at = _find_subcommand(args)
    if at is not None:
        word = args[at]
        if word in SUBCOMMANDS:
            # Options before the word go to the subcommand too (``pygent --no-docker ui``).
            return _run_subcommand(word, args[:at] + args[at + 1 :])
        if word == "version":
            print(_version())
            return 0
        build_parser().error(f"unknown command {word!r} (commands: ui, lsp, serve, sessions, attach, acp, version)")
    options = parse_options(args)
    if options.one_shot:
        from pygent.oneshot import run as run_once

        return run_once(options)
    from pygent.repl.app import run

    return run(options)


def ui_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pygent-ui`` script: the same as ``pygent ui``."""
    return _run_subcommand("ui", list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
