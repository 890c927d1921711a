"""A fail-closed reader of POSIX shell commands: plain words or "must ask", plus a generous scan for deny rules.

Two readers with opposite biases live here:

* :func:`split_command` / :func:`classify` are strict. They accept only plain words
  (unquoted, ``'single'`` or ``"double"`` quoted without ``$``, backquote or
  backslash) joined by ``&&``, ``||``, ``;``, ``|`` or newlines, and return ``None`` /
  ``plain=False`` for anything else. Only such commands may be auto-allowed by rules.
* :func:`command_candidates` is generous. It never fails; it returns every word
  sequence that *might* start a command anywhere in the text (after ``;``, inside
  ``$(...)``, after wrappers such as ``sudo``/``timeout``/``xargs``, inside
  ``sh -c '...'`` strings, in interpreter code), for deny and ask rules.

Neither is a security boundary: the sandbox is. They decide how often a person is asked.
"""

from __future__ import annotations

import codecs
import posixpath
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

#: Longer commands are never auto-allowed: a person should look at them.
MAX_COMMAND_CHARS = 16_384

#: Reserved words that make a command compound (not a simple command).
KEYWORDS = frozenset(
    "if then else elif fi case esac for select while until do done function time coproc "
    "[[ ]] ! { } in".split()
)

#: Programs that run another command given as arguments or text (unwrapped for deny rules).
WRAPPERS = frozenset(
    "sudo doas env timeout nice ionice nohup xargs command builtin exec time stdbuf setsid "
    "unbuffer strace ltrace chroot flock watch su runuser taskset chrt script parallel "
    "busybox toybox eval trap alias source . sh bash zsh dash ksh mksh ash fish csh tcsh "
    "rbash nsenter unshare systemd-run firejail bwrap".split()
)

#: Shells: fed commands on stdin (``... | sh``) they run every word of the pipeline.
SHELLS = frozenset("sh bash zsh dash ksh mksh ash fish csh tcsh rbash busybox".split())

#: Interpreters whose inline code may call a shell (``python -c "os.system('rm x')"``).
INTERPRETERS = frozenset(
    "python python2 python3 perl ruby node nodejs deno bun php lua awk gawk mawk nawk "
    "Rscript tclsh osascript pwsh powershell".split()
)

#: Only these directories make ``/usr/bin/ls`` the same program as ``ls`` (B7: ``./ls``
#: or ``/tmp/cat`` may have been written by the agent).
SYSTEM_BIN_DIRS = frozenset({"/bin", "/usr/bin"})

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_@*#?$!-]")
_QUOTED_IN_CODE = re.compile(r"'([^']*)'|\"([^\"]*)\"|`([^`]*)`")
_SHELL_META = frozenset(" \t\n;&|`$(){}<>'\"\\=!")


@dataclass(frozen=True)
class CommandShape:
    """What :func:`classify` saw: plain words in simple commands, or why not."""

    plain: bool
    segments: tuple[tuple[str, ...], ...] = ()
    reason: str = ""  # why the command is not plain ("redirect", "command substitution", ...)


def _not_plain(reason: str) -> CommandShape:
    return CommandShape(False, (), reason)


def _bad_character(cmd: str) -> str | None:
    """A character that could hide what runs (B6, B10), or None."""
    for ch in cmd:
        if ch == "\x00":
            return "NUL byte"
        code = ord(ch)
        if (code < 32 and ch not in "\t\n") or code == 127 or 0x80 <= code < 0xA0:
            return f"control character U+{code:04X}"
        if code < 128:
            continue
        category = unicodedata.category(ch)
        if category in ("Cf", "Zl", "Zp", "Co", "Cs", "Cn"):
            return f"invisible or bidirectional character U+{code:04X}"
        if category == "Zs":
            return f"unusual whitespace U+{code:04X}"
    return None


def _dollar_reason(nxt: str, after: str) -> str:
    if nxt == "(":
        return "arithmetic expansion" if after == "(" else "command substitution"
    if nxt == "'":
        return "ANSI-C quoting ($'...')"
    if nxt == '"':
        return 'locale quoting ($"...")'
    return "variable expansion"


def classify(cmd: str) -> CommandShape:
    """Read ``cmd`` strictly: plain words joined by ``&&``, ``||``, ``;``, ``|``, newlines.

    Args:
        cmd: the command text exactly as it will be run.

    Returns:
        ``CommandShape(plain=True, segments=...)`` with quotes removed, or
        ``plain=False`` with the first reason found (anything unusual fails closed).
    """
    if not isinstance(cmd, str):
        return _not_plain("not text")
    if len(cmd) > MAX_COMMAND_CHARS:
        return _not_plain(f"too long to check ({len(cmd)} characters)")
    bad = _bad_character(cmd)
    if bad:
        return _not_plain(bad)

    segments: list[tuple[str, ...]] = []
    words: list[str] = []
    raws: list[str] = []  # each word as written, to tell `FOO=1` from `'FOO=1'`
    buf: list[str] = []
    start = -1  # index where the current word began, -1 when between words
    pending = False  # after `&&`, `||`, `|`: a command must follow
    i, n = 0, len(cmd)

    def end_word(at: int) -> None:
        nonlocal start
        if start >= 0:
            words.append("".join(buf))
            raws.append(cmd[start:at])
            buf.clear()
            start = -1

    def end_command() -> str | None:
        """Close the current simple command; a reason if it is not a plain one."""
        nonlocal pending
        if not words:
            return None
        first = raws[0]
        if _ASSIGNMENT.match(first):
            return "variable assignment"
        if first == words[0] and words[0] in KEYWORDS:
            return f"shell keyword ({words[0]})"
        segments.append(tuple(words))
        words.clear()
        raws.clear()
        pending = False
        return None

    while i < n:
        c = cmd[i]
        nxt = cmd[i + 1] if i + 1 < n else ""
        if c in " \t":
            end_word(i)
            i += 1
        elif c == "\n":
            end_word(i)
            if reason := end_command():
                return _not_plain(reason)
            i += 1
        elif c == "#" and start < 0:
            # A comment runs to the end of the line; what it says never runs.
            while i < n and cmd[i] != "\n":
                i += 1
        elif c == "'":
            close = cmd.find("'", i + 1)
            if close < 0:
                return _not_plain("unbalanced quotes")
            if start < 0:
                start = i
            buf.append(cmd[i + 1 : close])
            i = close + 1
        elif c == '"':
            j = i + 1
            while j < n and cmd[j] != '"':
                if cmd[j] == "$":
                    after = cmd[j + 2] if j + 2 < n else ""
                    return _not_plain(_dollar_reason(cmd[j + 1] if j + 1 < n else "", after))
                if cmd[j] == "`":
                    return _not_plain("command substitution")
                if cmd[j] == "\\":
                    return _not_plain("backslash escape")
                j += 1
            if j >= n:
                return _not_plain("unbalanced quotes")
            if start < 0:
                start = i
            buf.append(cmd[i + 1 : j])
            i = j + 1
        elif c == "$":
            return _not_plain(_dollar_reason(nxt, cmd[i + 2] if i + 2 < n else ""))
        elif c == "`":
            return _not_plain("command substitution")
        elif c == "\\":
            return _not_plain("line continuation" if nxt == "\n" else "backslash escape")
        elif c in "<>":
            if nxt == "(":
                return _not_plain("process substitution")
            if c == "<" and nxt == "<":
                return _not_plain("heredoc")
            return _not_plain("redirect")
        elif c in "&|;":
            op = c
            if c == "&":
                if nxt == ">":
                    return _not_plain("redirect")
                if nxt != "&":
                    return _not_plain("background job (&)")
                op = "&&"
            elif c == "|":
                if nxt == "&":
                    return _not_plain("pipe of stderr (|&)")
                op = "||" if nxt == "|" else "|"
            elif nxt == ";":
                return _not_plain("case syntax (;;)")
            end_word(i)
            if not words:
                return _not_plain(f"incomplete command (nothing before {op})")
            if reason := end_command():
                return _not_plain(reason)
            pending = op != ";"
            i += len(op)
        elif c in "()":
            return _not_plain("subshell or group")
        elif c in "{}":
            return _not_plain("brace group or expansion")
        else:
            if start < 0:
                start = i
            buf.append(c)
            i += 1
    end_word(n)
    if reason := end_command():
        return _not_plain(reason)
    if pending:
        return _not_plain("incomplete command (nothing after the last operator)")
    if not segments:
        return _not_plain("empty command")
    return CommandShape(True, tuple(segments), "")


def split_command(cmd: str) -> list[list[str]] | None:
    """The simple commands of ``cmd`` as word lists, or None when it is not plain.

    None means "ask": substitution, redirects, background jobs, groups, variables,
    assignments, escapes, heredocs, unbalanced quotes and control characters all
    give None. Comments are dropped; globs and ``~`` stay as words.
    """
    shape = classify(cmd)
    return [list(seg) for seg in shape.segments] if shape.plain else None


# -- programs ---------------------------------------------------------------------------


def program_name(word: str) -> str:
    """The program a command word names, strictly: ``/usr/bin/ls`` is ``ls``; ``./ls`` is not."""
    if "/" in word:
        head, tail = posixpath.split(word)
        return tail if head in SYSTEM_BIN_DIRS and tail else word
    return word


def program_key(word: str) -> str:
    """The program a word *might* name, generously (for deny rules): folded, no dir, no ``.exe``."""
    text = unicodedata.normalize("NFKC", word).strip().casefold().lstrip("\\")
    text = text.rsplit("/", 1)[-1]
    return text[:-4] if text.endswith(".exe") else text


#: Per program: option words (``--x`` matches every word starting so) and short-option letters
#: that make a usually read-only program write files or run commands (B5).
_UNSAFE_OPTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "find": (("-exec", "-execdir", "-ok", "-okdir", "-delete", "-fls", "-fprint", "-fprint0",
              "-fprintf"), ""),
    "rg": (("--pre", "--hostname-bin", "--search-zip"), "z"),
    "git": (("-c", "--config", "--config-env", "--output", "--ext-diff", "--exec-path", "--exec",
             "--open-files-in-pager", "--upload-pack", "--receive-pack"), "O"),
    "sed": (("--in-place",), "i"),
    "sort": (("--output", "--compress-program"), "o"),
    "base64": (("-o", "--output"), ""),
    "tree": (("-o", "--output"), ""),
    "date": (("-s", "--set"), ""),
    "file": (("-C", "--compile"), ""),
}  # fmt: skip


def _unsafe_word(word: str, options: tuple[str, ...], letters: str) -> bool:
    for opt in options:
        # `--output` also catches `--output=x` and `--output-directory`: fail closed.
        if word == opt or (opt.startswith("--") and word.startswith(opt)):
            return True
    if letters and word.startswith("-") and not word.startswith("--"):
        return any(ch in word[1:] for ch in letters)
    return False


def unsafe_argument(words: Sequence[str]) -> str | None:
    """An argument that makes a usually read-only program write or run code (B5), or None."""
    if not words:
        return None
    prog = program_name(words[0])
    options, letters = _UNSAFE_OPTIONS.get(prog, ((), ""))
    for word in words[1:]:
        if _unsafe_word(word, options, letters):
            return f"{prog} {word} can write files or run commands"
    return None


#: Programs that only read (with :func:`unsafe_argument` and the checks below): the
#: auto-safe set of read-only mode, and what may mention a protected path unasked.
READ_ONLY_PROGRAMS = frozenset(
    "cat ls pwd echo head tail wc grep egrep fgrep rg find nl true false which file stat du "
    "df tree basename dirname realpath readlink cut tr diff cmp md5sum sha1sum sha256sum "
    "sha512sum od hexdump strings whoami id uname printenv column test [ cd sed git sort "
    "base64 tac rev ps".split()
)

_GIT_READ_ONLY = frozenset(
    "status log diff show rev-parse ls-files blame describe shortlog cat-file ls-tree grep "
    "branch remote tag".split()
)
_GIT_BRANCH_WRITES = frozenset(
    "-d -D -m -M -c -C -f -u --delete --move --copy --force --set-upstream-to "
    "--unset-upstream --edit-description --track --no-track".split()
)
_SED_PRINT = re.compile(r"^\d+(,\d+)?p$")


def _git_read_only(args: Sequence[str]) -> bool:
    rest = list(args)
    if rest and rest[0] == "--no-pager":
        rest = rest[1:]
    if not rest or rest[0] not in _GIT_READ_ONLY:
        return False  # global options (-C, -c, --git-dir) or a writing subcommand
    sub, opts = rest[0], rest[1:]
    if sub == "branch":
        return all(w.startswith("-") and w.split("=")[0] not in _GIT_BRANCH_WRITES for w in opts)
    if sub == "remote":
        return all(w in ("-v", "--verbose") for w in opts)
    if sub == "tag":
        return not opts or (
            opts[0] in ("-l", "--list")
            and not any(
                w in ("-d", "--delete", "-f", "--force", "-a", "-s", "-m", "-F") for w in opts
            )
        )
    return True


def is_read_only(words: Sequence[str]) -> bool:
    """True when this simple command only reads (the built-in auto-safe list)."""
    if not words:
        return False
    prog = program_name(words[0])
    if prog not in READ_ONLY_PROGRAMS or unsafe_argument(words):
        return False
    args = words[1:]
    if prog == "git":
        return _git_read_only(args)
    if prog == "sed":  # only `sed -n 'N,Mp' file...`: sed scripts can write (w) or run (e)
        return (
            len(args) >= 2
            and args[0] == "-n"
            and bool(_SED_PRINT.match(args[1]))
            and not any(w.startswith("-") for w in args[2:])
        )
    return True


# -- the generous scan for deny rules ------------------------------------------------------


class _Scan:
    """Collects candidate command word sequences; gives up (``truncated``) past a budget."""

    MAX_CANDIDATE_WORDS = 64
    MAX_CANDIDATES = 50_000
    MAX_CHARS = 512_000  # bounds the time spent (~0.3 s); beyond it the caller asks
    MAX_DEPTH = 8

    def __init__(self) -> None:
        self.candidates: list[tuple[str, ...]] = []
        self.chars = 0
        self.truncated = False

    def emit(self, words: Sequence[str]) -> None:
        if len(self.candidates) >= self.MAX_CANDIDATES:
            self.truncated = True
            return
        self.candidates.append(tuple(words[: self.MAX_CANDIDATE_WORDS]))

    def text(self, text: str, depth: int) -> None:
        if not text.strip():
            return
        self.chars += len(text)
        if depth > self.MAX_DEPTH or self.chars > self.MAX_CHARS:
            self.truncated = True
            return
        segments, nested, overflow = _loose_split(text)
        if overflow:
            self.truncated = True
        stdin_shell = any(
            program_key(seg[0]) in SHELLS and all(w.startswith("-") for w in seg[1:])
            for seg in segments
        )
        for seg in segments:
            if stdin_shell:  # `echo rm x | sh`: any word may be a command
                for j in range(len(seg)):
                    self.emit(seg[j : j + self.MAX_CANDIDATE_WORDS])
            self.segment(seg, depth)
        for inner in nested:
            self.text(inner, depth + 1)

    def segment(self, words: Sequence[str], depth: int) -> None:
        i = 0
        while i < len(words) and _ASSIGNMENT.match(words[i]):
            self.text(words[i].split("=", 1)[1], depth + 1)  # `a=rm; $a -rf x`
            i += 1
        if i >= len(words):
            return
        self.emit(words[i : i + self.MAX_CANDIDATE_WORDS])
        prog, rest = program_key(words[i]), words[i + 1 :]
        if prog in WRAPPERS:
            # Never unwrap precisely: every later word may be the wrapped command.
            for j, word in enumerate(rest):
                self.emit(rest[j : j + self.MAX_CANDIDATE_WORDS])
                if any(ch in _SHELL_META for ch in word):
                    self.text(word, depth + 1)
        elif prog in KEYWORDS:
            self.segment(rest, depth)
        elif prog in INTERPRETERS:
            for word in rest:  # each quoted string in the code may be a shell command
                for groups in _QUOTED_IN_CODE.findall(word):
                    self.text("".join(groups), depth + 1)
        elif prog == "find":
            for j, word in enumerate(rest):
                if word in ("-exec", "-execdir", "-ok", "-okdir"):
                    self.segment(rest[j + 1 : j + 1 + self.MAX_CANDIDATE_WORDS], depth)
        elif prog == "git":
            for word in rest:  # `git -c core.pager='sh -c x'`, `-c alias.x=!rm`
                if "=" in word:
                    self.text(word.split("=", 1)[1].lstrip("!"), depth + 1)
        for word in rest:
            if word.startswith("!") and len(word) > 1:
                self.text(word[1:], depth + 1)


def _until_close(text: str, start: int) -> str:
    """The text of ``$( ... )`` from ``start`` to its closing parenthesis (or the end)."""
    depth = 1
    for k in range(start, len(text)):
        if text[k] == "(":
            depth += 1
        elif text[k] == ")":
            depth -= 1
            if depth == 0:
                return text[start:k]
    return text[start:]


def _ansi_c(body: str) -> str:
    try:
        return codecs.decode(body, "unicode_escape")
    except (UnicodeDecodeError, ValueError):
        return body


def _loose_split(text: str) -> tuple[list[list[str]], list[str], bool]:
    """Split generously into word lists; never fails.

    Returns the word lists, the substitutions found inside double quotes (to scan
    again) and whether some were left out to bound the time spent.
    """
    segments: list[list[str]] = []
    nested: list[str] = []
    nested_chars = 0
    overflow = False
    words: list[str] = []
    buf: list[str] = []
    in_word = False
    skip_next = False  # the word after a redirect is a file name, not a command
    brace = 0
    i, n = 0, len(text)

    def end_word() -> None:
        nonlocal in_word, skip_next
        if in_word:
            word = "".join(buf)
            buf.clear()
            in_word = False
            if skip_next:
                skip_next = False
            else:
                words.append(word)

    def end_segment() -> None:
        end_word()
        if words:
            segments.append(words.copy())
            words.clear()

    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if (c.isspace() and c != "\n") or (c == "," and brace > 0):
            end_word()
            i += 1
        elif c == "\n":
            end_segment()
            i += 1
        elif c == "#" and not in_word:
            while i < n and text[i] != "\n":
                i += 1
        elif c == "\\":
            if nxt and nxt != "\n":
                buf.append(nxt)
                in_word = True
            i += 2
        elif c == "'":
            close = text.find("'", i + 1)
            close = n if close < 0 else close
            buf.append(text[i + 1 : close])
            in_word = True
            i = close + 1
        elif c == '"':
            j, part = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    part.append(text[j + 1])
                    j += 2
                    continue
                if text[j] == "`" or text[j : j + 2] == "$(":
                    if nested_chars > 2 * n + 4096:
                        overflow = True  # do not spend quadratic time; the caller asks
                    elif text[j] == "`":
                        close = text.find("`", j + 1)
                        nested.append(text[j + 1 : n if close < 0 else close])
                    else:
                        nested.append(_until_close(text, j + 2))
                    nested_chars += len(nested[-1]) if nested else 0
                part.append(text[j])
                j += 1
            buf.append("".join(part))
            in_word = True
            i = j + 1
        elif c == "$":
            if nxt == "(":
                end_segment()  # what follows `$(` is a command
                i += 2
            elif nxt == "'":
                close = i + 2
                while close < n and text[close] != "'":
                    close += 2 if text[close] == "\\" else 1
                buf.append(_ansi_c(text[i + 2 : close]))
                in_word = True
                i = close + 1
            elif nxt == "{":
                end_word()  # `rm${IFS}-rf`: an expansion splits words
                close = text.find("}", i)
                i = n if close < 0 else close + 1
            elif nxt and _NAME_CHAR.match(nxt):
                end_word()
                i += 2
                while i < n and (text[i].isalnum() or text[i] == "_"):
                    i += 1
            else:
                i += 1
        elif c in "`;&|()":
            end_segment()
            i += 1
        elif c in "{}":
            brace = brace + 1 if c == "{" else max(brace - 1, 0)
            end_segment()
            i += 1
        elif c in "<>":
            if nxt == "(":
                skip_next = False  # `> >(cmd)`: the target is a command, not a file
                end_segment()
                i += 2
                continue
            if in_word and "".join(buf).isdigit():  # `2>file`: the 2 is a descriptor
                buf.clear()
                in_word = False
            end_word()
            j = i
            while j < n and text[j] in "<>&|":
                j += 1
            op = text[i:j]
            if op == "<<" and j < n and text[j] == "-":  # `<<-EOF`
                j += 1
            fd_start = j
            while op.endswith("&") and j < n and (text[j].isdigit() or text[j] == "-"):
                j += 1
            i = j
            # `2>&1` names a descriptor; `<<<` (here-string) feeds the next word to the
            # command, so keep it as a word; otherwise the next word is a file name.
            skip_next = op != "<<<" and j == fd_start
        else:
            buf.append(c)
            in_word = True
            i += 1
    end_segment()
    return segments, nested, overflow


def command_candidates(cmd: str) -> tuple[list[tuple[str, ...]], bool]:
    """Every word sequence that may start a command in ``cmd``, generously.

    Used for deny and ask rules: a banned ``rm`` is found in ``ls; rm x``, ``sudo rm``,
    ``timeout 5 rm``, ``sh -c 'rm x'``, ``$(rm x)``, ``{rm,-rf,x}``, ``r''m``, ``\\rm``,
    ``rm${IFS}x``, ``a=rm`` and ``python -c "os.system('rm x')"``. Text matching is best
    effort (``$(printf rm)`` is not found); the sandbox is the boundary.

    Returns:
        ``(candidates, truncated)``; ``truncated`` is True when the text was too big or
        nested too deeply to scan completely (callers should then ask).
    """
    scan = _Scan()
    scan.text(cmd if isinstance(cmd, str) else str(cmd), 0)
    return scan.candidates, scan.truncated
