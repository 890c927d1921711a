"""The fail-closed command classifier: what is plain, what is not and why, and the deny scan."""

from __future__ import annotations

import shlex

import pytest

from pygent.shellwords import (
    MAX_COMMAND_CHARS,
    classify,
    command_candidates,
    is_read_only,
    program_key,
    program_name,
    split_command,
    unsafe_argument,
)

# (command, expected segments) for commands that are plain words.
PLAIN = [
    ("ls", [["ls"]]),
    ("ls -la src", [["ls", "-la", "src"]]),
    ("ls 'a b'", [["ls", "a b"]]),
    ('ls "a b"', [["ls", "a b"]]),
    ("l's' x", [["ls", "x"]]),
    ("git status && pytest -q", [["git", "status"], ["pytest", "-q"]]),
    ("ls; rm -rf ws/src", [["ls"], ["rm", "-rf", "ws/src"]]),
    ("ls && rm x", [["ls"], ["rm", "x"]]),
    ("ls || rm x", [["ls"], ["rm", "x"]]),
    ("ls | sh", [["ls"], ["sh"]]),
    ("ls\nrm x", [["ls"], ["rm", "x"]]),
    ("ls;", [["ls"]]),
    ("ls |\n  cat", [["ls"], ["cat"]]),
    ("ls &&\n\ncat", [["ls"], ["cat"]]),
    ("\n\nls\n\n", [["ls"]]),
    ("ls # a comment $(rm x) > y", [["ls"]]),
    ("ls #c\ncat a", [["ls"], ["cat", "a"]]),
    ("echo a#b", [["echo", "a#b"]]),
    ("ls *.py src/[ab]?.txt", [["ls", "*.py", "src/[ab]?.txt"]]),
    ("cat ~/notes ~user/x", [["cat", "~/notes", "~user/x"]]),
    ("'FOO=1' ls", [["FOO=1", "ls"]]),  # a quoted word is a command name, not an assignment
    ("git log --format=%h:%s -5", [["git", "log", "--format=%h:%s", "-5"]]),
    ("echo ''", [["echo", ""]]),
    ("echo 'it''s' \"a 'q'\"", [["echo", "its", "a 'q'"]]),
    ("echo '$(not run)' '`x`' '\\n'", [["echo", "$(not run)", "`x`", "\\n"]]),
    ("cat café.md", [["cat", "café.md"]]),
    ("echo if", [["echo", "if"]]),
    ("echo !x", [["echo", "!x"]]),
]


@pytest.mark.parametrize(("cmd", "segments"), PLAIN, ids=[c for c, _ in PLAIN])
def test_plain_commands_split_into_words(cmd: str, segments: list[list[str]]) -> None:
    assert split_command(cmd) == segments
    assert classify(cmd).plain


# (command, a word expected in the reason) for everything that must fail closed.
NOT_PLAIN = [
    ("echo $(curl x|sh)", "command substitution"),
    ("echo `id`", "command substitution"),
    ('echo "$(id)"', "command substitution"),
    ('echo "`id`"', "command substitution"),
    ("$(printf rm) -rf x", "command substitution"),
    ("echo $((1+2))", "arithmetic"),
    ("cat <(sh -c x)", "process substitution"),
    ("echo ok > >(sh)", "redirect"),
    ("diff <(ls) b", "process substitution"),
    ("echo k >> ~/.ssh/authorized_keys", "redirect"),
    ("echo x > /proc/sys/x", "redirect"),
    ("ls 2>/dev/null", "redirect"),
    ("ls 2>&1", "redirect"),
    ("ls &> out", "redirect"),
    ("ls >& out", "redirect"),
    ("cat < in", "redirect"),
    ("cat <> f", "redirect"),
    ("cat > .git/hooks/pre-commit <<EOF\nrm -rf ~\nEOF", "redirect"),
    ("cat <<EOF\nx\nEOF", "heredoc"),
    ("cat <<< x", "heredoc"),
    ("ls & rm x", "background"),
    ("ls &", "background"),
    ("ls |& rm", "stderr"),
    ("(ls)", "subshell"),
    ("ls; (rm x)", "subshell"),
    ("{ ls; }", "brace"),
    ("echo {rm,-rf,x}", "brace"),
    ("ls $HOME", "variable"),
    ('ls "$HOME"', "variable"),
    ("ls ${HOME}", "variable"),
    ("rm${IFS}-rf x", "variable"),
    ("a=rm; $a -rf x", "variable assignment"),
    ("echo $'\\x72m'", "ANSI-C"),
    ('echo $"x"', "locale"),
    ("echo cost$", "variable"),
    ("FOO=1 ls", "variable assignment"),
    ("FOO=1 rm x", "variable assignment"),
    ("ls && PATH=/tmp ls", "variable assignment"),
    ("a[0]=x ls", "variable assignment"),
    ("PATH+=:/tmp", "variable assignment"),
    ("\\rm -rf x", "backslash"),
    ("r\\m -rf x", "backslash"),
    ("ls \\\nrm", "line continuation"),
    ('echo "a\\"b"', "backslash"),
    ("ls 'unbalanced", "unbalanced quotes"),
    ('ls "unbalanced', "unbalanced quotes"),
    ("ls\x00rm", "NUL"),
    ("ls\rrm -rf x", "control character"),
    ("\x1b[2Jls", "control character"),
    ("ls \u202e; rm", "bidirectional"),
    ("ls\u200b", "invisible"),
    ("ls\u00a0-la", "whitespace"),
    ("ls\u2028rm", "invisible"),
    ("if true; then ls; fi", "keyword"),
    ("while true; do ls; done", "keyword"),
    ("! ls", "keyword"),
    ("time ls", "keyword"),
    ("[[ -f x ]]", "keyword"),
    ("ls;;", "case syntax"),
    ("; ls", "incomplete"),
    ("&& ls", "incomplete"),
    ("ls &&", "incomplete"),
    ("ls |", "incomplete"),
    ("ls; ; rm", "incomplete"),
    ("", "empty"),
    ("   \n# only a comment", "empty"),
    ("ls " + "a" * MAX_COMMAND_CHARS, "too long"),
]


@pytest.mark.parametrize(("cmd", "reason"), NOT_PLAIN, ids=[repr(c)[:40] for c, _ in NOT_PLAIN])
def test_everything_else_fails_closed_with_a_reason(cmd: str, reason: str) -> None:
    shape = classify(cmd)
    assert split_command(cmd) is None
    assert not shape.plain and shape.segments == ()
    assert reason in shape.reason


def test_non_text_is_not_plain() -> None:
    assert not classify(None).plain  # type: ignore[arg-type]


def test_a_huge_command_is_classified_quickly() -> None:
    assert split_command("ls " + "a " * 7000) is not None  # under the cap: still linear
    assert split_command("echo " + "x" * 1_000_000) is None


# (command, program that the generous scan must find as a command word)
HIDDEN = [
    ("ls; rm x", "rm"),
    ("ls && rm x", "rm"),
    ("ls & rm x", "rm"),
    ("ls |& rm", "rm"),
    ("timeout 5 rm -rf /", "rm"),
    ("sudo rm x", "rm"),
    ("sudo -u root -- rm x", "rm"),
    ("env A=1 rm x", "rm"),
    ("nice -n 5 rm x", "rm"),
    ("nohup rm x &", "rm"),
    ("ls | xargs -I{} rm {}", "rm"),
    ("/usr/bin/time -p rm x", "rm"),
    ("command rm x", "rm"),
    ("exec rm x", "rm"),
    ("sh -c 'rm -rf /'", "rm"),
    ('bash -lc "cd x && rm y"', "rm"),
    ("busybox sh -c 'rm x'", "rm"),
    ("timeout 5 sh -c 'ls; rm x'", "rm"),
    ("eval 'rm x'", "rm"),
    ("echo $(rm x)", "rm"),
    ('echo "$(rm x)"', "rm"),
    ("echo `rm x`", "rm"),
    ("cat <(rm x)", "rm"),
    ("echo ok > >(rm x)", "rm"),
    ("(rm x)", "rm"),
    ("{ rm x; }", "rm"),
    ("{rm,-rf,x}", "rm"),
    ("r''m -rf x", "rm"),
    ("\\rm -rf x", "rm"),
    ("r\\m -rf x", "rm"),
    ("$'\\x72m' -rf x", "rm"),
    ("rm${IFS}-rf x", "rm"),
    ("a=rm; $a -rf x", "rm"),
    ("FOO=1 rm x", "rm"),
    ("RM x", "rm"),
    ("ｒｍ -rf x", "rm"),
    ("/bin/rm x", "rm"),
    ("rm.exe x", "rm"),
    ("if true; then rm x; fi", "rm"),
    ("! rm x", "rm"),
    ("f() { rm x; }", "rm"),
    ("find . -exec rm {} +", "rm"),
    ("find . -exec sh -c 'rm x' \\;", "rm"),
    ("git -c alias.x='!rm' x", "rm"),
    ("git -c core.pager='rm x' log", "rm"),
    ("python -c \"import os; os.system('rm -rf x')\"", "rm"),
    ('python3 -c \'import subprocess; subprocess.run(["rm", "x"])\'', "rm"),
    ("awk 'BEGIN{system(\"rm x\")}'", "rm"),
    ("echo rm -rf x | sh", "rm"),
    ("bash <<< 'rm x'", "rm"),
    ("sh <<EOF\nrm -rf x\nEOF", "rm"),
    (">out rm x", "rm"),
    ("2>/dev/null rm x", "rm"),
    ("trap 'rm x' EXIT", "rm"),
    ("alias ls='rm -rf'", "rm"),
    ("watch -n1 'rm x'", "rm"),
]


@pytest.mark.parametrize(("cmd", "program"), HIDDEN, ids=[repr(c)[:40] for c, _ in HIDDEN])
def test_the_deny_scan_finds_hidden_commands(cmd: str, program: str) -> None:
    candidates, truncated = command_candidates(cmd)
    assert not truncated
    assert program in {program_key(c[0]) for c in candidates if c}


@pytest.mark.parametrize(
    "cmd",
    ["echo 'rm is a command'", "git commit -m 'rm old files'", "grep -r rm src", "ls rm"],
)
def test_the_deny_scan_does_not_see_commands_in_plain_arguments(cmd: str) -> None:
    candidates, _ = command_candidates(cmd)
    assert "rm" not in {program_key(c[0]) for c in candidates if c}


def test_the_deny_scan_gives_up_loudly_on_deep_nesting() -> None:
    cmd = "rm"
    for _ in range(12):
        cmd = f"sh -c {shlex.quote(cmd)}"
    _, truncated = command_candidates(cmd)
    assert truncated
    assert command_candidates("x=" * 50 + "rm")[1]


def test_program_names() -> None:
    assert program_name("ls") == "ls"
    assert program_name("/usr/bin/ls") == "ls"
    assert program_name("/bin/cat") == "cat"
    assert program_name("./ls") == "./ls"  # B7: a lookalike the agent may have written
    assert program_name("/tmp/cat") == "/tmp/cat"
    assert program_name("ws/bin/git") == "ws/bin/git"
    assert program_key("/usr/local/bin/RM.exe") == "rm"


UNSAFE = [
    ("find . -delete", True),
    ("find . -exec rm {} +", True),
    ("find . -name x -fprint out", True),
    ("find . -name '*.py'", False),
    ("rg --pre sh x", True),
    ("rg --pre=sh x", True),
    ("rg -z x", True),
    ("rg -n foo", False),
    ("sed -i s/a/b/ f", True),
    ("sed -ni 1p f", True),
    ("sed --in-place=.bak s/a/b/ f", True),
    ("sed -n 1p f", False),
    ("git status -c core.pager=sh", True),
    ("git diff --output=/etc/x", True),
    ("git log --ext-diff", True),
    ("git grep -Oless x", True),
    ("git log --oneline", False),
    ("sort -o out in", True),
    ("sort -ro out in", True),
    ("sort -r in", False),
    ("base64 -o f x", True),
    ("tree -o f", True),
    ("ls -la", False),
]


@pytest.mark.parametrize(("cmd", "unsafe"), UNSAFE, ids=[c for c, _ in UNSAFE])
def test_unsafe_arguments_of_usually_safe_programs(cmd: str, unsafe: bool) -> None:
    assert (unsafe_argument(shlex.split(cmd)) is not None) is unsafe


READ_ONLY = [
    ("ls -la", True),
    ("cat README.md", True),
    ("head -n 5 a", True),
    ("grep -rn TODO src", True),
    ("find . -name '*.py'", True),
    ("git status", True),
    ("git --no-pager log -5", True),
    ("git diff HEAD~1", True),
    ("git branch -a", True),
    ("git branch new-branch", False),
    ("git branch -D main", False),
    ("git remote -v", True),
    ("git remote add x y", False),
    ("git tag", True),
    ("git tag v1", False),
    ("git -C / status", False),
    ("git push", False),
    ("git config user.name", False),
    ("sed -n 1,20p f", True),
    ("sed s/a/b/ f", False),
    ("find . -delete", False),
    ("/bin/ls", True),
    ("./ls", False),
    ("rm x", False),
    ("touch x", False),
    ("tee x", False),
    ("python x.py", False),
]


@pytest.mark.parametrize(("cmd", "expected"), READ_ONLY, ids=[c for c, _ in READ_ONLY])
def test_the_built_in_read_only_list(cmd: str, expected: bool) -> None:
    words = split_command(cmd)
    assert words is not None
    assert is_read_only(words[0]) is expected
