"""The approval policy: modes and rules that decide allow, ask or deny for each tool call.

Only Pygent decides: the decision depends on the mode, the runtime, the rules and the
call's command or path, never on any flag the model adds to its arguments (B9).

Mode matrix (``isolated`` = the ``docker``, ``bwrap`` or ``fake`` runtime; ``local`` = no sandbox).
Deny rules and banned commands win in every mode; protected paths (A17) ask in every
mode except read-only, where they are denied:

==========================  =====  ============  ==========  =======  ===  =========
tool kind                   api    auto iso/loc  confirm     never    ro   notes
==========================  =====  ============  ==========  =======  ===  =========
shell (``bash``)            allow  allow / ask   ask / ask   allow    (1)  allow rules
file write                  allow  allow / ask   allow / ask allow    deny allow rules
other tools (``exec``)      allow  allow / ask   allow / ask allow    deny allow rules
MCP read-only, sandboxed    allow  allow / ask   allow / ask allow    allow allow rules
MCP other, sandboxed (2)    allow  ask           ask         allow    deny allow rules
MCP on the host or remote   ask    ask           ask         allow    deny allow rules
file read, control          allow  allow         allow       allow    allow
widens the sandbox          ask    ask           ask         ask      deny
protected path write        ask    ask           ask         ask      deny
==========================  =====  ============  ==========  =======  ===  =========

(1) read-only mode allows only the built-in read-only commands
(:func:`pygent.shellwords.is_read_only`) and denies the rest.
(2) a tool that declares ``destructiveHint: false`` counts as ``exec``; MCP's default is
destructive. Rules may name a server's tools with a glob: ``mcp__git__*``.

Two more shell checks ask in every mode (and deny in read-only mode), like protected
paths: with the sandbox's network turned on (``network=True``), a command that uses a
network client (``curl``, ``ssh``, ``nslookup``, ``git push``...) asks, so data cannot
leave unseen (D5); and a command naming a path that a deny rule keeps from the file
tools asks, so ``cat secrets/k`` cannot read what ``read_file`` may not (B16). Where the
table says
"ask", an allow rule (configured, or from an "always allow" answer) allows instead; for
the shell only when the command is plain words (:func:`pygent.shellwords.classify`) and
every simple command in it matches an allow rule. A shell command that names a protected
path and is not read-only always asks.
"""

from __future__ import annotations

import fnmatch
import shlex
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pygent import shellwords as sw
from pygent.errors import ConfigError
from pygent.protected_paths import RUNS_CODE, is_protected, normalize, protected_mention


class Action(str, Enum):
    """What happens to a tool call."""

    ALLOW = "allow"
    ASK = "ask"
    DENY = "deny"


MODES = ("auto", "confirm", "never", "api", "read-only")
MODE_ALIASES = {
    "yolo": "never",
    "never-ask": "never",
    "no-confirm": "never",
    "readonly": "read-only",
    "read_only": "read-only",
}
#: Runtimes where commands cannot touch the host (the fake runtime only pretends to run).
ISOLATED_RUNTIMES = frozenset({"docker", "bwrap", "fake"})  # bwrap: pygent.runtime.bwrap

#: Tool kinds: "shell" (has a command), "read", "write" (have paths), "exec" (anything
#: else that acts), "control" (stop, ask_user, delegation), "escalate" (widens the sandbox).
DEFAULT_TOOL_KINDS: dict[str, str] = {
    "bash": "shell",
    "write_file": "write",
    "edit_file": "write",
    "delete_file": "write",
    "move_file": "write",
    "apply_patch": "write",
    "upload_file": "write",
    "collect_file": "write",
    "read_file": "read",
    "download_file": "read",
    "read_image": "read",
    "list_dir": "read",
    "grep": "read",
    "glob": "read",
    "stop": "control",
    "continue": "control",
    "ask_user": "control",
    "task_status": "control",
    "delegate_task": "control",
    "delegate_persona_task": "control",
}
COMMAND_KEYS = ("cmd", "command")
PATH_KEYS = ("path", "paths", "file_path", "filepath", "filename", "file", "target", "dest",
             "destination", "src", "source", "old_path", "new_path")  # fmt: skip

#: Programs whose second word says what they do: "always allow" keeps both ("git status").
SUBCOMMAND_PROGRAMS = frozenset(
    "git npm npx pnpm yarn cargo go docker podman kubectl pip pip3 uv poetry pipenv conda "
    "mamba make gh glab dotnet mvn gradle rustup bundle brew apt apt-get dnf yum systemctl "
    "terraform helm deno bun hatch nox tox".split()
)
#: Subcommands that run a named script: "always allow" keeps three words ("npm run test").
RUNNER_SUBCOMMANDS = frozenset({"run", "exec", "x", "dlx", "run-script"})
#: Programs an "always allow" never generalises: allowing `rm -rf build` must not allow
#: `rm -rf ~`, nor one `curl` every upload.
EXACT_ONLY_PROGRAMS = frozenset(
    "rm rmdir unlink shred dd mkfs truncate chmod chown chgrp mv ln kill pkill killall "
    "reboot shutdown curl wget ssh scp sftp rsync nc ncat socat telnet ftp".split()
)
#: Programs that send or fetch data over the network; with the network on they ask (D5).
#: Package installers are not listed: fetching packages is why the network is turned on.
NETWORK_PROGRAMS = frozenset(
    "curl wget nc ncat netcat socat telnet ftp tftp lftp ssh scp sftp rsync nslookup dig "
    "host ping ping6 http https xh aria2c gh".split()
)
#: git subcommands that talk to a remote.
NETWORK_GIT = frozenset("push fetch pull clone ls-remote remote submodule send-email".split())


def normalize_mode(mode: str) -> str:
    """The canonical mode name; raises :class:`ConfigError` for an unknown one."""
    text = str(mode).strip().lower()
    text = MODE_ALIASES.get(text, text)
    if text not in MODES:
        raise ConfigError(f"unknown approval mode {mode!r}", hint=f"use one of: {', '.join(MODES)}")
    return text


@dataclass(frozen=True)
class Rule:
    """One rule. ``pattern`` is, for the shell, a command prefix in words (``git status``,
    ``npm run *``; glob characters match within a word); for file tools, a path glob
    (``src/**``; a directory also covers what is below it); other tools ignore it.
    ``exact`` rules match the whole command text or path exactly. A rule for ``bash``
    covers every shell tool; a rule for ``*`` covers every tool."""

    tool: str
    pattern: str = "*"
    action: Action = Action.ASK
    reason: str = ""
    exact: bool = False
    source: str = "config"  # "config", "session" (from an answer) or "banned"

    def describe(self) -> str:
        """Short text for front ends: ``git status``, ``write_file src/a.py``."""
        if self.tool in ("bash", "*"):
            return self.pattern
        return self.tool if self.pattern in ("", "*") else f"{self.tool} {self.pattern}"


@dataclass(frozen=True)
class Decision:
    """The policy's verdict on one call: ``reason`` is shown to the user (and, for a
    deny, to the model); ``protected`` marks a protected-path ask (no "always")."""

    action: Action
    reason: str
    preview: str = ""
    rule: Rule | None = None
    protected: bool = False


def _fold(word: str) -> str:
    return unicodedata.normalize("NFKC", word).casefold()


def _pattern_words(pattern: str) -> list[str]:
    shape = sw.classify(pattern)
    words = list(shape.segments[0]) if shape.plain and len(shape.segments) == 1 else pattern.split()
    while words and words[-1] == "*":  # "npm run *" is the prefix "npm run"
        words.pop()
    return words


def _command_rule_hits(rule: Rule, text: str, candidates: Sequence[tuple[str, ...]]) -> bool:
    """Generous match for deny and ask rules: the pattern's program as any command word,
    its other words in order anywhere after it (``git -C x push`` hits ``git push``)."""
    if rule.exact:
        return text.strip() == rule.pattern.strip()
    words = _pattern_words(rule.pattern)
    if not words:
        return True
    first, rest = sw.program_key(words[0]), [_fold(w) for w in words[1:]]
    for cand in candidates:
        if not cand or not fnmatch.fnmatchcase(sw.program_key(cand[0]), first):
            continue
        remaining = iter(_fold(w) for w in cand[1:])
        if all(any(fnmatch.fnmatchcase(w, p) for w in remaining) for p in rest):
            return True
    return False


def _allow_rule_hits(rule: Rule, segment: Sequence[str]) -> bool:
    """Strict match for allow rules: the pattern is a word prefix of the simple command."""
    words = _pattern_words(rule.pattern)
    if len(segment) < len(words):
        return False
    program = sw.program_name(segment[0])
    return all(
        fnmatch.fnmatchcase(program if i == 0 else segment[i], p) for i, p in enumerate(words)
    )


def _path_rule_hits(rule: Rule, path: str, *, fold: bool) -> bool:
    pattern = normalize(rule.pattern) if rule.pattern not in ("", "*") else "*"
    if fold:  # deny and ask rules: generous, as file systems may ignore case
        path, pattern = path.casefold(), pattern.casefold()
    if rule.exact:
        return path == pattern
    return (
        fnmatch.fnmatchcase(path, pattern)
        or path == pattern
        or path.startswith(pattern.rstrip("/") + "/")
    )


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, str)]
    return []


def _command_text(args: Mapping[str, Any]) -> str | None:
    """Every command argument, joined: a second key cannot hide a command (B9)."""
    texts = [args[k] for k in COMMAND_KEYS if k in args]
    if not texts or not all(isinstance(t, str) for t in texts):
        return None
    return "\n".join(dict.fromkeys(texts))


def _paths(args: Mapping[str, Any]) -> list[str]:
    return [p for k in PATH_KEYS if k in args for p in _strings(args[k])]


def _prefix_for(segment: Sequence[str]) -> str | None:
    """The rule an "always" answer derives for one simple command, or None for "exact"."""
    program = sw.program_name(segment[0])
    if "/" in program or program in sw.WRAPPERS or program in sw.INTERPRETERS:
        return None  # never generalise wrappers and interpreters (B4)
    if program in EXACT_ONLY_PROGRAMS:
        return None
    if sw.unsafe_argument(segment):
        return None
    words = [program]
    if program in SUBCOMMAND_PROGRAMS and len(segment) > 1:
        if segment[1].startswith("-"):
            return None  # global options (`git -C dir status`): keep the exact command
        words.append(segment[1])
        if segment[1] in RUNNER_SUBCOMMANDS and len(segment) > 2:
            if segment[2].startswith("-"):
                return None
            words.append(segment[2])
    if any(ch in w for w in words for ch in "*?[ \t\n"):
        return None
    return " ".join(words)


def command_patterns(cmd: str) -> list[tuple[str, bool]]:
    """The ``(pattern, exact)`` pairs an "always" answer derives for a shell command."""
    shape = sw.classify(cmd)
    if not shape.plain:
        return [(cmd.strip(), True)]
    patterns: list[str] = []
    for segment in shape.segments:
        prefix = _prefix_for(segment)
        if prefix is None:
            return [(cmd.strip(), True)]
        patterns.append(prefix)
    return [(p, False) for p in dict.fromkeys(patterns)]


@dataclass
class Policy:
    """Mode, runtime and rules for one session (see the module docstring for the matrix).

    Args:
        mode: ``auto``, ``confirm``, ``never`` (alias ``yolo``), ``api`` or ``read-only``.
        runtime_kind: ``docker``, ``local`` or ``fake`` (``decide`` may override it).
        rules: configured rules; "always" answers and bans are appended.
        tool_kinds: tool name to kind (``shell``, ``read``, ``write``, ``exec``,
            ``control``, ``escalate``); unknown tools are ``exec``.
        shell_tools: tools whose ``cmd``/``command`` argument is a shell command.
    """

    mode: str = "api"
    runtime_kind: str = "docker"
    rules: list[Rule] = field(default_factory=list)
    tool_kinds: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TOOL_KINDS))
    shell_tools: set[str] = field(default_factory=lambda: {"bash"})
    workspace_root: str | None = None
    network: bool = False  # the sandbox can reach the network (PYGENT_NETWORK)

    def __post_init__(self) -> None:
        self.mode = normalize_mode(self.mode)

    @classmethod
    def for_mode(
        cls,
        mode: str,
        runtime_kind: str = "docker",
        *,
        banned: Iterable[str] = (),
        rules: Iterable[Rule] = (),
    ) -> Policy:
        """The policy for an approval mode and runtime, with banned commands and rules."""
        policy = cls(mode=mode, runtime_kind=runtime_kind, rules=list(rules))
        for command in banned:
            policy.ban(command)
        return policy

    # -- rules -----------------------------------------------------------------------

    def add_rule(self, rule: Rule) -> Rule:
        """Add ``rule`` (once) and return it."""
        if rule not in self.rules:
            self.rules.append(rule)
        return rule

    def remove_rule(self, rule: Rule) -> bool:
        """Remove ``rule``; False when it was not there."""
        if rule in self.rules:
            self.rules.remove(rule)
            return True
        return False

    def ban(self, command: str) -> Rule:
        """Deny ``command`` (``rm``, ``git push``) anywhere in a shell command."""
        text = " ".join(str(command).split())
        if not text:
            raise ConfigError("a banned command cannot be empty")
        return self.add_rule(
            Rule("bash", text, Action.DENY, reason=f"banned command: {text}", source="banned")
        )

    def unban(self, command: str) -> bool:
        """Lift a ban; False when ``command`` was not banned."""
        text = " ".join(str(command).split())
        found = [r for r in self.rules if r.source == "banned" and r.pattern == text]
        for rule in found:
            self.rules.remove(rule)
        return bool(found)

    def banned_commands(self) -> tuple[str, ...]:
        return tuple(r.pattern for r in self.rules if r.source == "banned")

    def session_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.source == "session")

    def allow_always(
        self, tool: str, arguments: Mapping[str, Any], *, tool_kind: str | None = None
    ) -> tuple[Rule, ...]:
        """Add the session rules an "always allow" answer means, and return them.

        Shell: one rule per simple command, its program (``pytest``) or program and
        subcommand (``git status``, ``npm run test``); the exact command text when it is
        not plain or uses a wrapper, an interpreter, a destructive or network program
        (``rm``, ``curl``) or a risky option. File tools: each path. Other tools: the
        tool. Protected paths still ask.
        """
        rules = self.always_rules(tool, arguments, Action.ALLOW, tool_kind=tool_kind)
        return tuple(self.add_rule(r) for r in rules)

    def reject_always(
        self, tool: str, arguments: Mapping[str, Any], *, tool_kind: str | None = None
    ) -> tuple[Rule, ...]:
        """Add the session deny rules a "reject always" answer means, and return them."""
        rules = self.always_rules(tool, arguments, Action.DENY, tool_kind=tool_kind)
        return tuple(self.add_rule(r) for r in rules)

    def always_rules(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        action: Action = Action.ALLOW,
        *,
        tool_kind: str | None = None,
    ) -> tuple[Rule, ...]:
        """The rules an "always" answer would add, without adding them (for prompts)."""
        args = arguments if isinstance(arguments, Mapping) else {}
        kind = self.kind_of(tool, tool_kind)
        verb = "always allowed" if action is Action.ALLOW else "rejected for this session"
        if kind == "shell":
            cmd = _command_text(args)
            if cmd is None:
                return ()
            pairs = command_patterns(cmd)
        elif kind in ("read", "write"):
            pairs = [(normalize(p, self.workspace_root), False) for p in _paths(args)]
        else:
            pairs = [("*", False)]
        rules = []
        for pattern, exact in pairs:
            shown = Rule(tool, pattern).describe()
            rules.append(Rule(tool, pattern, action, f"{verb}: {shown}", exact, "session"))
        return tuple(rules)

    # -- deciding --------------------------------------------------------------------

    def kind_of(self, tool: str, tool_kind: str | None = None) -> str:
        """The kind of ``tool``: shell by name first, then the registry's kind, then ours."""
        if tool in self.shell_tools:
            return "shell"
        if tool_kind:
            return tool_kind
        if tool in self.tool_kinds:
            return self.tool_kinds[tool]
        return "control" if tool.startswith("delegate") else "exec"

    def _rules(self, tool: str, kind: str, action: Action) -> list[Rule]:
        return [
            r
            for r in self.rules
            if r.action is action
            and (
                r.tool in ("*", tool)
                or (r.tool == "bash" and kind == "shell")
                # a glob over tool names: ``mcp__git__*`` (an MCP server's tools)
                or ("*" in r.tool and fnmatch.fnmatchcase(tool, r.tool))
            )
        ]

    def _default(self, kind: str, isolated: bool) -> tuple[Action, str]:
        """The mode's answer when no rule applies (the matrix in the module docstring)."""
        if self.mode in ("api", "never"):
            return Action.ALLOW, f"{self.mode} mode"
        if kind == "shell" and self.mode == "confirm":
            return Action.ASK, "confirm mode (--confirm-bash): every command asks"
        if isolated:
            return Action.ALLOW, "sandboxed"
        what = {"shell": "commands run", "write": "file changes happen"}.get(kind, "this tool runs")
        return Action.ASK, f"local mode: {what} on your machine without a sandbox"

    def decide(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        runtime_kind: str | None = None,
        tool_kind: str | None = None,
    ) -> Decision:
        """Allow, ask or deny one call.

        Args:
            tool: the tool name.
            arguments: the call's arguments (only the command or paths are read).
            runtime_kind: ``docker``/``local``/``fake``; default: the policy's.
            tool_kind: the registry's kind for the tool (``read``, ``write``, ``exec``,
                ``control``); default: :data:`DEFAULT_TOOL_KINDS`, else ``exec``.
        """
        args = arguments if isinstance(arguments, Mapping) else {}
        isolated = (runtime_kind or self.runtime_kind) in ISOLATED_RUNTIMES
        kind = self.kind_of(tool, tool_kind)
        if kind == "shell":
            return self._decide_shell(tool, args, isolated)
        if kind in ("read", "write"):
            return self._decide_files(tool, kind, args, isolated)
        return self._decide_other(tool, kind, isolated)

    def _decide_shell(self, tool: str, args: Mapping[str, Any], isolated: bool) -> Decision:
        read_only_mode = self.mode == "read-only"
        cmd = _command_text(args)
        if cmd is None:
            action = Action.DENY if read_only_mode else Action.ASK
            return Decision(action, "the command is missing or not text", repr(dict(args))[:2000])
        candidates, truncated = sw.command_candidates(cmd)
        for rule in self._rules(tool, "shell", Action.DENY):
            if _command_rule_hits(rule, cmd, candidates):
                return Decision(
                    Action.DENY, rule.reason or f"denied by rule: {rule.pattern}", cmd, rule
                )
        fallback = Action.DENY if read_only_mode else Action.ASK
        if truncated and self._rules(tool, "shell", Action.DENY):
            return Decision(
                fallback, "too large or nested to check against the banned commands", cmd
            )

        shape = sw.classify(cmd)
        read_only = shape.plain and all(sw.is_read_only(s) for s in shape.segments)
        mention = None if read_only else _protected_in_command(cmd, candidates)
        if mention:
            return Decision(
                fallback, f"the command may change {mention}: {RUNS_CODE}", cmd, protected=True
            )
        sends = _network_use(candidates) if self.network else None
        if sends:
            return Decision(
                fallback,
                f"the sandbox has network access and `{sends}` can send data out of it",
                cmd,
                protected=True,
            )
        hidden = self._denied_path_in(candidates)
        if hidden:
            return Decision(fallback, hidden, cmd)
        if read_only_mode:
            if read_only:
                return Decision(Action.ALLOW, "read-only command", cmd)
            why = shape.reason or "not on the read-only list"
            return Decision(
                Action.DENY, f"read-only mode: only read-only commands run ({why})", cmd
            )
        for rule in self._rules(tool, "shell", Action.ASK):
            if _command_rule_hits(rule, cmd, candidates):
                return Decision(
                    Action.ASK, rule.reason or f"rule: ask before {rule.pattern}", cmd, rule
                )
        allow_rules = self._rules(tool, "shell", Action.ALLOW)
        for rule in allow_rules:
            if rule.exact and rule.pattern.strip() == cmd.strip():
                return Decision(Action.ALLOW, rule.reason or "allowed by rule", cmd, rule)
        action, why = self._default("shell", isolated)
        if action is Action.ALLOW:
            return Decision(action, why, cmd)
        if not shape.plain:
            return Decision(Action.ASK, f"{why}; allow rules do not apply ({shape.reason})", cmd)
        used: list[Rule] = []
        for segment in shape.segments:
            text = shlex.join(segment)
            unsafe = sw.unsafe_argument(segment)
            if unsafe:
                return Decision(Action.ASK, f"{why}; {unsafe}", cmd)
            match = next(
                (r for r in allow_rules if not r.exact and _allow_rule_hits(r, segment)), None
            )
            if match is None:
                return Decision(Action.ASK, f"{why}; no allow rule for `{text}`", cmd)
            used.append(match)
        names = ", ".join(dict.fromkeys(r.describe() for r in used))
        return Decision(Action.ALLOW, f"allowed by rules: {names}", cmd, used[0])

    def _denied_path_in(self, candidates: Sequence[tuple[str, ...]]) -> str | None:
        """Why a command names a path that a deny rule keeps from the file tools (B16)."""
        rules = [
            r
            for r in self.rules
            if r.action is Action.DENY
            and r.pattern not in ("", "*")
            and self.kind_of(r.tool) in ("read", "write")
        ]
        if rules:
            for cand in candidates:
                for word in cand[1:]:
                    if any(ch in word for ch in "*?["):  # a wildcard may match the path
                        return (
                            f"the command uses a wildcard ({word}) and a rule keeps some "
                            f"paths from the file tools ({rules[0].describe()})"
                        )
        for rule in rules:
            for cand in candidates:
                for word in cand[1:]:
                    path = normalize(word.lstrip("@<>="), self.workspace_root)
                    if path not in ("", ".") and _path_rule_hits(rule, path, fold=True):
                        return (
                            f"the command names {word}, which a rule keeps from the file tools "
                            f"({rule.describe()}); commands are checked by their text only"
                        )
        return None

    def _decide_files(
        self, tool: str, kind: str, args: Mapping[str, Any], isolated: bool
    ) -> Decision:
        paths = [normalize(p, self.workspace_root) for p in _paths(args)]
        preview = ", ".join(paths)
        for rule in self._rules(tool, kind, Action.DENY):
            if any(_path_rule_hits(rule, p, fold=True) for p in paths):
                return Decision(
                    Action.DENY, rule.reason or f"denied by rule: {rule.pattern}", preview, rule
                )
        read_only_mode = self.mode == "read-only"
        if kind == "write":
            if not paths:
                action = Action.DENY if read_only_mode else Action.ASK
                return Decision(action, "could not tell which file this call changes", preview)
            for path in paths:
                reason = is_protected(path)
                if reason:
                    action = Action.DENY if read_only_mode else Action.ASK
                    return Decision(action, f"{path}: {reason}", preview, protected=True)
            if read_only_mode:
                return Decision(Action.DENY, "read-only mode: files cannot be changed", preview)
        for rule in self._rules(tool, kind, Action.ASK):
            if any(_path_rule_hits(rule, p, fold=True) for p in paths):
                return Decision(
                    Action.ASK, rule.reason or f"rule: ask for {rule.pattern}", preview, rule
                )
        if kind == "read":
            return Decision(Action.ALLOW, "reading the workspace", preview)
        action, why = self._default(kind, isolated)
        if action is Action.ALLOW:
            return Decision(action, why, preview)
        allow_rules = self._rules(tool, kind, Action.ALLOW)
        matched = [
            next((r for r in allow_rules if _path_rule_hits(r, p, fold=False)), None) for p in paths
        ]
        first = matched[0] if matched else None
        if first is not None and all(matched):
            return Decision(Action.ALLOW, f"allowed by rule: {first.describe()}", preview, first)
        return Decision(action, why, preview)

    def _decide_other(self, tool: str, kind: str, isolated: bool) -> Decision:
        def applies(rule: Rule) -> bool:  # patterns mean commands or paths: only "*" fits
            return rule.tool == tool or rule.pattern in ("", "*")

        for rule in self._rules(tool, kind, Action.DENY):
            if applies(rule):
                return Decision(Action.DENY, rule.reason or f"denied by rule for {tool}", "", rule)
        if kind == "control":
            return Decision(Action.ALLOW, "control tool", "")
        if self.mode == "read-only" and kind != "mcp_read":
            return Decision(Action.DENY, f"read-only mode: {tool} is not allowed", "")
        if kind == "escalate":
            return Decision(Action.ASK, f"{tool} widens the sandbox", "")
        for rule in self._rules(tool, kind, Action.ASK):
            if applies(rule):
                return Decision(Action.ASK, rule.reason or f"rule: ask before {tool}", "", rule)
        action, why = self._default(kind, isolated)
        # MCP tools (pygent/mcp/manager.py): a server on the host asks in every mode; a
        # sandboxed tool not declared read-only or non-destructive asks in auto/confirm.
        if kind == "mcp_host" and self.mode != "never":
            action, why = Action.ASK, "an MCP server outside the sandbox (on the host or remote)"
        elif kind == "mcp_destructive" and self.mode in ("auto", "confirm"):
            action, why = Action.ASK, "the MCP tool may change things (not declared read-only)"
        if action is Action.ASK:
            allow = next((r for r in self._rules(tool, kind, Action.ALLOW) if applies(r)), None)
            if allow:
                return Decision(
                    Action.ALLOW, allow.reason or f"allowed by rule for {tool}", "", allow
                )
        return Decision(action, why, "")


def _network_use(candidates: Sequence[tuple[str, ...]]) -> str | None:
    """The simple command that uses a network client, or None (best effort)."""
    for cand in candidates:
        if not cand:
            continue
        program = sw.program_key(cand[0])
        if program in NETWORK_PROGRAMS or (
            program == "git" and any(_fold(w) in NETWORK_GIT for w in cand[1:])
        ):
            return " ".join(cand)[:300]
    return None


def _protected_in_command(cmd: str, candidates: Sequence[tuple[str, ...]]) -> str | None:
    """A protected path the command may write, by its text (best effort)."""
    mention = protected_mention(cmd)
    if mention:
        return mention
    for cand in candidates:  # `git config core.fsmonitor=...` writes .git/config unnamed
        if cand and sw.program_key(cand[0]) == "git" and "config" in (_fold(w) for w in cand[1:]):
            return ".git/config (git config)"
    return None
