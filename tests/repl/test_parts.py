"""The REPL's pure parts: sanitising, folding, command parsing, snapshots, CLI dispatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pygent.cli import _find_subcommand, main, parse_options
from pygent.errors import ConfigError
from pygent.repl import slash, snapshot
from pygent.repl.fold import OutputFold
from pygent.repl.sanitize import make_visible, strip_terminal_codes


def test_output_is_stripped_of_terminal_codes() -> None:
    raw = "\x1b[31mred\x1b[0m \x1b]0;evil title\x07ok\x07\n10%\r50%\r100%\r\n\u202eabc"
    assert strip_terminal_codes(raw) == "red ok\n100%\nabc"


def test_approval_text_shows_hidden_characters() -> None:
    shown = make_visible("rm -rf x\x1b[8m hidden\r\u202e\u200b")
    assert shown == "rm -rf x\\x1b[8m hidden\\r<U+202E><U+200B>"


def test_fold_keeps_head_and_tail_and_separates_streams() -> None:
    fold = OutputFold(head=2, tail=2)
    fold.feed("1\n2\n3")
    fold.feed("oops\n", "stderr")
    fold.feed("\n4\n5\n6\n")
    assert fold.text() == "1\n2\n… 3 more lines …\n5\n6"
    assert fold.total_lines == 7


def test_fold_bounds_memory_for_endless_output() -> None:
    fold = OutputFold(head=3, tail=3)
    for _ in range(10_000):
        fold.feed("y\n" * 100)
    head, hidden, tail = fold.lines()
    assert len(head) == 3 and len(tail) == 3 and hidden == 1_000_000 - 6


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("/help", ("/help", "")),
        ("  /save  /tmp/x y ", ("/save", "/tmp/x y")),
        ("/CMD ls", ("/cmd", "ls")),
        ("/usr/bin/env is broken", None),
        ("//etc is a folder", None),
        ("hello /help", None),
        ("/", None),
    ],
)
def test_slash_command_lines(text: str, parsed: tuple[str, str] | None) -> None:
    assert slash.parse(text) == parsed


def test_double_slash_sends_one_slash() -> None:
    assert slash.unescape("//help me") == "/help me"
    assert slash.unescape("plain") == "plain"


def test_unknown_commands_get_the_closest_name() -> None:
    from pygent.repl.commands_builtin import COMMANDS

    assert COMMANDS.suggest("/hepl") == "/help"
    assert COMMANDS.suggest("/confirm") == "/confirm-bash"
    assert COMMANDS.suggest("/zzzzzz") is None


def test_cli_finds_subcommands_after_options() -> None:
    assert _find_subcommand(["--no-docker", "ui", "--port", "1"]) == 1
    assert _find_subcommand(["--model", "ui"]) is None  # "ui" is the model's name here
    assert _find_subcommand(["-e", "A=1", "--cwd"]) is None


def test_cli_parses_the_upstream_flags() -> None:
    options = parse_options(
        [
            "--no-docker",
            "-w",
            "ws",
            "-e",
            "A=1",
            "-e",
            "B=2",
            "--omit-tool",
            "bash",
            "--ban-cmd",
            "rm",
            "--confirm-bash",
            "--model",
            "m",
            "--load",
            "snap",
        ]
    )
    assert options.use_docker is False and options.workspace == "ws"
    assert options.env == ["A=1", "B=2"] and options.omit_tools == ["bash"]
    assert options.ban_cmds == ["rm"] and options.confirm_bash is True
    assert options.model == "m" and options.load == Path("snap")
    assert parse_options(["--local"]).use_docker is False
    assert parse_options([]).use_docker is None


def test_missing_subcommand_module_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pygent import cli

    monkeypatch.setitem(cli.SUBCOMMANDS, "ui", ("pygent.no_such_module", "the web UI", "pip x"))
    assert main(["ui"]) == 2
    assert "the web UI is not available" in capsys.readouterr().err


def test_load_refuses_a_directory_without_a_snapshot(tmp_path: Path) -> None:
    (tmp_path / "random.txt").write_text("x")
    with pytest.raises(ConfigError, match="holds no Pygent snapshot"):
        snapshot.load(tmp_path)
    with pytest.raises(ConfigError, match="no such directory"):
        snapshot.load(tmp_path / "missing")


def test_load_a_saved_session_directory_finds_its_workspace(tmp_path: Path) -> None:
    from pygent.store import HistoryFile

    workspace = tmp_path / "ws"
    workspace.mkdir()
    session = tmp_path / "sessions" / "20250101-000000-abcdef"
    session.mkdir(parents=True)
    with HistoryFile(session / "history.jsonl", meta={"workspace": str(workspace)}) as history:
        history.append({"role": "user", "content": "hi"})
    loaded = snapshot.load(session)
    assert loaded.workspace == workspace
    assert loaded.history_file == session / "history.jsonl"


def test_load_an_upstream_snapshot(tmp_path: Path) -> None:
    (tmp_path / "workspace").mkdir()
    (tmp_path / "history.json").write_text(json.dumps([{"role": "user", "content": "old"}]))
    loaded = snapshot.load(tmp_path)
    assert loaded.history_file == tmp_path / "history.json"
    assert loaded.workspace == tmp_path / "workspace"


def test_save_refuses_a_non_empty_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        snapshot.save(tmp_path, agent=None)
    assert (tmp_path / "precious.txt").read_text() == "mine"
