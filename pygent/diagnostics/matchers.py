"""The table of output matchers: which tool printed a problem, in which file, at which line.

Each :class:`Matcher` names a tool (``ruff``, ``pytest``...), the commands that run it
(a regular expression searched in the command line) and either a regular expression over
the whole output (named groups ``file``, ``line``, ``message`` and optionally ``col``,
``end_line``, ``end_col``, ``severity``, ``code``) or a parser function for formats that
need state (Python tracebacks, eslint's "stylish" file headers). :func:`recognise` runs
the matchers of the tools a command names; a command naming none (``make check``) is
tried against the whole table. Users add matchers with :func:`matcher_from_config`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pygent.diagnostics.problem import Problem, Severity, severity_of

log = logging.getLogger(__name__)

#: How long a user's pattern may search one command's output. Users' patterns are
#: compiled with the ``regex`` module, whose searches take a timeout and release the
#: GIL: a pattern that backtracks catastrophically (``(a+)+$``) costs this, once, and is
#: skipped for that output, instead of freezing the language server.
USER_PATTERN_TIMEOUT = 1.0

#: A parser for a format a single regular expression cannot read: output -> problems
#: (``command`` and ``tool`` are filled in by :func:`recognise`).
Parser = Callable[[str], Iterator[Problem]]


@dataclass(frozen=True)
class Matcher:
    """One way a tool prints problems."""

    tool: str
    #: Searched in the command line: does this command run the tool?
    commands: re.Pattern[str]
    #: An ``re`` pattern, or for users' matchers a ``regex`` one (same interface).
    pattern: re.Pattern[str] | Any = None
    parser: Parser | None = None
    #: The severity when the output does not say.
    severity: Severity = "error"
    #: code prefix -> severity (flake8's W..., ruff's syntax errors).
    code_severity: Mapping[str, Severity] = field(default_factory=dict)
    #: Where the message ends with the code (pyright's " (reportX)" after its last line).
    code_suffix: re.Pattern[str] | None = None
    #: Seconds a search of ``pattern`` may take (users' patterns: see USER_PATTERN_TIMEOUT).
    timeout: float | None = None

    def parse(self, output: str, command: str = "") -> Iterator[Problem]:
        """The problems this matcher reads in ``output`` (of ``command``)."""
        if self.parser is not None:
            for problem in self.parser(output):
                yield problem._replace(tool=self.tool, command=command)
            return
        assert self.pattern is not None
        default = self.severity
        if self.timeout is None:
            matches: Iterable[Any] = self.pattern.finditer(output)
        else:
            try:  # all at once: a timeout mid-way would leave half a run's problems
                users: Any = self.pattern  # a ``regex`` pattern: takes a timeout
                matches = list(users.finditer(output, concurrent=True, timeout=self.timeout))
            except TimeoutError:
                log.warning("the %s matcher's pattern took over %ss on the output of %r: "
                            "skipped (simplify the pattern)", self.tool, self.timeout, command)
                return
        for m in matches:
            g = m.groupdict()
            code = g.get("code") or ""
            message = g["message"]
            if self.code_suffix is not None and not code:
                tail = self.code_suffix.search(message)
                if tail:
                    code, message = tail.group("code"), message[: tail.start()]
            word = g.get("severity")
            severity = severity_of(word, default) if word else default
            if not word and code and self.code_severity:
                for prefix, value in self.code_severity.items():
                    if code.startswith(prefix):
                        severity = value
                        break
            col, end_line, end_col = g.get("col"), g.get("end_line"), g.get("end_col")
            yield Problem(
                g["file"].strip(),
                int(g["line"]),
                _message(message),
                self.tool,
                int(col) if col else 0,
                int(end_line) if end_line else 0,
                int(end_col) if end_col else 0,
                severity,
                code,
                command,
            )


def _message(text: str) -> str:
    """pytest's ``E`` lines and other multi-line messages, as the editor shows them."""
    if "\n" not in text and "\xa0" not in text and not text.startswith("E"):
        return text.strip()  # the common case, kept cheap (a flood of lint lines)
    text = text.replace("\xa0", " ")
    lines = [re.sub(r"^E(?:[ \t]|$)", "", ln).rstrip() for ln in text.strip("\n").split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    shown = [ln.strip() for ln in lines[:8]] if lines else [""]
    return "\n".join(shown).strip()


def _cmd(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.MULTILINE)


# --- parsers for formats with state ---------------------------------------------------------

_FRAME = re.compile(r'^[ \t]+File "(?P<file>[^"\n]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?$')
#: Frames in these folders are the interpreter's or a library's, not the user's code.
_LIBRARY = re.compile(r"(^<)|/lib/python\d|/site-packages/|/dist-packages/|/\.venv/|/usr/lib/")


def python_tracebacks(output: str) -> Iterator[Problem]:
    """Each ``Traceback (most recent call last):`` block: the innermost frame that is not
    the standard library's or a package's, with the exception line as the message."""
    lines = output.split("\n")
    i = 0
    while i < len(lines):
        if not lines[i].startswith("Traceback (most recent call last):"):
            i += 1
            continue
        frame: tuple[str, int] | None = None
        i += 1
        while i < len(lines) and (lines[i].startswith((" ", "\t")) or not lines[i]):
            m = _FRAME.match(lines[i])
            if m and not _LIBRARY.search(m.group("file")):
                frame = (m.group("file"), int(m.group("line")))
            i += 1
        if frame is not None and i < len(lines):
            yield Problem(path=frame[0], line=frame[1], message=lines[i].strip(), tool="python")
        i += 1


_STYLISH_ROW = re.compile(
    r"^\s+(?P<line>\d+):(?P<col>\d+)\s+(?P<severity>error|warning)\s+(?P<message>.+?)"
    r"(?:\s{2,}(?P<code>[@\w/-]+))?\s*$"
)


def eslint_stylish(output: str) -> Iterator[Problem]:
    """eslint's default format: a file name line, then ``  line:col  severity  message  rule``."""
    current: str | None = None
    for line in output.split("\n"):
        if not line.strip():
            current = None
            continue
        if not line[0].isspace():
            current = line.strip() if not line.startswith("✖") else None
            continue
        m = _STYLISH_ROW.match(line)
        if m and current:
            yield Problem(
                path=current,
                line=int(m.group("line")),
                column=int(m.group("col")),
                severity=severity_of(m.group("severity")),
                message=m.group("message"),
                code=m.group("code") or "",
                tool="eslint",
            )


# --- the table ------------------------------------------------------------------------------

_PATH = r"(?P<file>[^\s:(][^:\n(]*?)"
_GCC_LIKE = _re(
    "^"
    + _PATH
    + r":(?P<line>\d+):(?:(?P<col>\d+):)? (?P<severity>fatal error|error|warning|note): "
    r"(?P<message>.+?)(?: \[(?P<code>-W[^\]\n]+)\])?$"
)
_LINT_CONCISE = _re(
    "^"
    + _PATH
    + r":(?P<line>\d+):(?P<col>\d+): (?:(?P<code>[A-Z]+\d+) )?(?:\[\*\] )?(?P<message>.+)$"
)

BUILTIN: tuple[Matcher, ...] = (
    # pytest, long tracebacks (the default): the E lines, a blank line, then file:line: Error
    Matcher(
        "pytest",
        _cmd(r"\bpy\.?test\b"),
        _re(
            r"^(?P<message>E(?:[ \t].*)?\n(?:E(?:[ \t].*)?\n)*)\n?(?P<file>[^\s:][^:\n]*\.py):(?P<line>\d+): "
            r"(?:[A-Za-z_][\w.]*)$"
        ),
    ),
    # pytest --tb=short: "file:line: in test", the source lines, then the E lines
    Matcher(
        "pytest",
        _cmd(r"\bpy\.?test\b"),
        _re(
            r"^(?P<file>[^\s:][^:\n]*\.py):(?P<line>\d+): in \S+\n(?:[ \t].*\n)*"
            r"(?P<message>(?:^E(?:[ \t].*)?(?:\n|$))+)"
        ),
    ),
    # pytest --tb=line
    Matcher(
        "pytest",
        _cmd(r"\bpy\.?test\b"),
        _re(r"^(?P<file>/[^\s:][^:\n]*\.py):(?P<line>\d+): (?P<message>.+)$"),
    ),
    Matcher("pytest", _cmd(r"\bpy\.?test\b"), parser=python_tracebacks),
    Matcher(
        "unittest", _cmd(r"\bunittest\b|\btest\.py\b|\bmanage\.py test\b"), parser=python_tracebacks
    ),
    # ruff's default ("full") format: the code and message, then " --> file:line:col"
    Matcher(
        "ruff",
        _cmd(r"\bruff\b"),
        _re(
            r"^(?:(?P<code>[A-Z]+\d+) (?:\[\*\] )?|(?P<syntax>SyntaxError): )(?P<message>.+)\n"
            r"[ \t]*--> " + _PATH + r":(?P<line>\d+):(?P<col>\d+)$"
        ),
        severity="warning",
    ),
    Matcher("ruff", _cmd(r"\bruff\b"), _LINT_CONCISE, severity="warning"),
    Matcher(
        "flake8",
        _cmd(r"\bflake8\b"),
        _LINT_CONCISE,
        severity="warning",
        code_severity={"E9": "error", "F82": "error"},
    ),
    Matcher(
        "mypy",
        _cmd(r"\b[d]?mypy\b"),
        _re(
            r"^(?P<file>[^\s:][^:\n]*\.pyi?):(?P<line>\d+)(?::(?P<col>\d+))?"
            r"(?::(?P<end_line>\d+):(?P<end_col>\d+))?: (?P<severity>error|warning|note): "
            r"(?P<message>.+?)(?:  \[(?P<code>[\w-]+)\])?$"
        ),
    ),
    Matcher(
        "pyright",
        _cmd(r"\b(?:based)?pyright\b"),
        _re(
            r"^[ \t]+(?P<file>[^\s:][^:\n]*):(?P<line>\d+):(?P<col>\d+) - "
            r"(?P<severity>error|warning|information): "
            # Continuation lines start with non-breaking spaces; the rule ends the last.
            r"(?P<message>.+(?:\n[ \t]*\xa0.*)*)$"
        ),
        code_suffix=re.compile(r" \((?P<code>report\w+)\)$"),
    ),
    Matcher(
        "tsc",
        _cmd(r"\btsc\b|\bvue-tsc\b"),
        _re(
            r"^(?P<file>[^\s(:][^(\n:]*)\((?P<line>\d+),(?P<col>\d+)\): "
            r"(?P<severity>error|warning|message) (?P<code>TS\d+): (?P<message>.+)$"
        ),
    ),
    Matcher(
        "tsc",
        _cmd(r"\btsc\b|\bvue-tsc\b"),
        _re(
            "^" + _PATH + r":(?P<line>\d+):(?P<col>\d+) - (?P<severity>error|warning) "
            r"(?P<code>TS\d+): (?P<message>.+)$"
        ),
    ),
    Matcher(
        "eslint",
        _cmd(r"\beslint\b"),
        _re(
            "^" + _PATH + r":(?P<line>\d+):(?P<col>\d+): (?P<message>.+?) "
            r"\[(?P<severity>Error|Warning)(?:/(?P<code>[^\]\n]+))?\]$"
        ),
    ),
    Matcher("eslint", _cmd(r"\beslint\b"), parser=eslint_stylish),
    Matcher(
        "go",
        _cmd(r"\bgo\s+(?:vet|build|test|run|install)\b|\bgolangci-lint\b|\bstaticcheck\b"),
        _re(
            r"^(?:vet: )?(?P<file>[^\s:][^:\n]*\.go):(?P<line>\d+)(?::(?P<col>\d+))?: "
            r"(?P<message>.+)$"
        ),
    ),
    Matcher(
        "cargo",
        _cmd(r"\bcargo\b|\brustc\b|\bclippy-driver\b"),
        _re(
            r"^(?P<severity>error|warning)(?:\[(?P<code>[A-Z]\d+|[\w:]+)\])?: (?P<message>.+)\n"
            r"[ \t]*--> " + _PATH + r":(?P<line>\d+):(?P<col>\d+)$"
        ),
    ),
    Matcher(
        "gcc",
        _cmd(r"(?:^|[\s/;&|(])(?:gcc|g\+\+|cc|c\+\+|clang|clang\+\+)(?:-\d+)?\b"),
        _GCC_LIKE,
    ),
)


def matcher_from_config(entry: Mapping[str, Any]) -> Matcher:
    """A user's matcher: ``{"tool": "mylint", "command": "\\\\bmylint\\\\b",
    "pattern": "^(?P<file>...):(?P<line>\\\\d+): (?P<message>.+)$", "severity": "warning"}``.

    Raises ValueError naming what is wrong (a bad regular expression, a missing group).
    """
    tool = str(entry.get("tool") or "").strip()
    if not re.fullmatch(r"[\w.+-]{1,40}", tool):
        raise ValueError(f"matcher tool {tool!r}: expected a short name (letters, digits, _.+-)")
    import regex  # only for users' patterns: see USER_PATTERN_TIMEOUT

    try:
        # ``regex`` reads Python's syntax (V0), so a pattern means what it means in ``re``.
        pattern = regex.compile(str(entry.get("pattern") or ""), regex.MULTILINE)
        commands = _cmd(str(entry.get("command") or re.escape(tool)))
    except (re.error, regex.error) as exc:
        raise ValueError(f"matcher {tool!r}: bad regular expression: {exc}") from None
    missing = {"file", "line", "message"} - set(pattern.groupindex)
    if missing:
        raise ValueError(f"matcher {tool!r}: its pattern needs the groups {sorted(missing)}")
    severity = entry.get("severity", "error")
    if severity not in ("error", "warning", "information", "hint"):
        raise ValueError(
            f"matcher {tool!r}: severity {severity!r} is not error/warning/information/hint"
        )
    return Matcher(tool, commands, pattern, severity=severity, timeout=USER_PATTERN_TIMEOUT)


@dataclass(frozen=True)
class Recognised:
    """What a command's output said: its problems, and the tools it ran (each tool's
    earlier problems are replaced, even by none)."""

    problems: list[Problem]
    tools: frozenset[str]


#: Colour and style escapes (``tsc --pretty``, ``cargo --color always``).
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def tools_of(command: str, table: Iterable[Matcher]) -> list[Matcher]:
    """The matchers of the tools ``command`` runs."""
    return [m for m in table if m.commands.search(command)]


def recognise(output: str, command: str, table: Iterable[Matcher] = BUILTIN) -> Recognised:
    """The problems in ``output`` of ``command``, one per file and line for each tool.

    A command that names known tools is read with their matchers only; any other
    command (``make lint``, a script) with the whole table, first match first.
    """
    table = tuple(table)
    if "\x1b" in output:
        output = _ANSI.sub("", output)
    chosen = tools_of(command, table)
    # Unknown command: formats with a severity word first, so a gcc or mypy line is not
    # taken for a lint line (``file:line:col: message`` fits both).
    order = chosen or sorted(table, key=lambda m: m.tool in ("ruff", "flake8"))
    seen: set[tuple[Any, ...]] = set()
    claimed: set[tuple[str, int, int]] = set()  # positions earlier matchers read
    out: list[Problem] = []
    for matcher in order:
        mine: set[tuple[str, int, int]] = set()
        tool = matcher.tool
        if matcher.parser is python_tracebacks and not chosen:
            tool = "python"
        for problem in matcher.parse(output, command):
            position = (problem.path, problem.line, problem.column)
            # Unknown command: a line another format already read is not read again.
            if not chosen and position in claimed:
                continue
            # A test failure is printed in several forms (traceback, summary): one per
            # line. Otherwise one per position and message.
            if tool in ("pytest", "unittest", "python"):
                key: tuple[Any, ...] = (tool, problem.path, problem.line)
            else:
                key = (tool, *position, problem.message)
            if key in seen:
                continue
            seen.add(key)
            mine.add(position)
            out.append(problem if problem.tool == tool else problem._replace(tool=tool))
        claimed |= mine
    ran = {m.tool for m in chosen} if chosen else {p.tool for p in out}
    return Recognised(out, frozenset(ran))
