"""Protected paths: workspace files that make the user's machine, editor, CI or Pygent run code.

A write to one of these always asks (with the warning returned by :func:`is_protected`),
in every approval mode, and is denied in read-only mode (ADVERSARIAL A17, B15).
Matching is generous: case-insensitive (macOS and Windows file systems), at any depth
for directories that tools look for anywhere (``.git``, ``.vscode``, ``.envrc``), and
only at the workspace root for files read only there (``config.py``, ``.gitlab-ci.yml``).
"""

from __future__ import annotations

import posixpath
import re

RUNS_CODE = "this file can run code on your machine"
RUNS_IN_CI = "this file can run code in CI, with the repository's secrets"
CHANGES_PYGENT = "this file can change Pygent's settings and approvals and run code on your machine"

#: Where the workspace appears inside the sandbox; a path under it is workspace-relative.
SANDBOX_MOUNTS = ("/workspace",)

#: Directories whose every file is protected, at any depth.
_PROTECTED_DIRS = {
    ".vscode": RUNS_CODE,  # tasks.json, settings.json (terminal profiles, interpreters)
    ".idea": RUNS_CODE,  # run configurations, external tools
    ".devcontainer": RUNS_CODE,  # postCreateCommand and friends
    ".husky": RUNS_CODE,  # git hooks under another name
    ".pygent": CHANGES_PYGENT,
}
#: Files protected at any depth (tools look for them in every directory).
_PROTECTED_FILES = {".envrc": RUNS_CODE, "pygent.toml": CHANGES_PYGENT}
#: Files protected only at the workspace root (tools read them only there).
_ROOT_FILES = {
    "config.py": CHANGES_PYGENT,  # Pygent runs it at start-up
    ".gitlab-ci.yml": RUNS_IN_CI,
    ".gitlab-ci.yaml": RUNS_IN_CI,
    ".pre-commit-config.yaml": RUNS_CODE,
    ".pre-commit-config.yml": RUNS_CODE,
}

#: The patterns, as documented (``docs/approvals.md``).
PROTECTED_PATTERNS = (
    ".git (the directory itself, hooks/**, config, config.worktree, at any depth)",
    ".vscode/**",
    ".idea/**",
    ".devcontainer/**",
    ".husky/**",
    ".pygent/**",
    ".envrc",
    "pygent.toml",
    ".github/workflows/**",
    ".github/actions/**",
    ".gitlab-ci.yml (root)",
    ".pre-commit-config.yaml (root)",
    "config.py (root)",
)


def _fold(component: str) -> str:
    """One path component as the file system may see it: case-folded, Windows-trimmed."""
    text = component.casefold()
    if "::" in text:  # NTFS stream syntax: `config::$DATA` is `config`
        text = text.split("::", 1)[0]
    trimmed = text.rstrip(" .")  # Windows drops trailing dots and spaces
    return trimmed if trimmed else text


def normalize(path: str, workspace_root: str | None = None) -> str:
    """``path`` as a lexically normalised, workspace-relative POSIX path (``..`` kept)."""
    text = str(path).replace("\\", "/").strip()
    for root in (workspace_root, *SANDBOX_MOUNTS):
        if not root:
            continue
        root = root.replace("\\", "/").rstrip("/")
        if text == root or text.startswith(root + "/"):
            text = text[len(root) :].lstrip("/") or "."
            break
    text = posixpath.normpath(text) if text else "."
    return text[2:] if text.startswith("./") else text


def is_protected(rel_path: str, *, workspace_root: str | None = None) -> str | None:
    """Why writing ``rel_path`` needs a person's approval, or None if it does not.

    Args:
        rel_path: a workspace-relative path (absolute paths under ``workspace_root`` or
            ``/workspace`` are made relative first).
        workspace_root: the workspace on the host, when known.

    Returns:
        ``"this file can run code on your machine"`` (or the CI or settings variant),
        or None.
    """
    norm = normalize(rel_path, workspace_root)
    parts = [_fold(p) for p in norm.split("/") if p not in ("", ".")]
    reason: str | None = None
    for idx, part in enumerate(parts):
        rest = parts[idx + 1 :]
        if part == ".git":
            # The .git entry itself (a `.git` file can point git at another directory),
            # hooks anywhere below it (also .git/modules/x/hooks) and config files.
            if not rest or "hooks" in rest or rest[-1] in ("config", "config.worktree"):
                reason = RUNS_CODE
        elif part in _PROTECTED_DIRS:
            reason = _PROTECTED_DIRS[part]
        elif part in _PROTECTED_FILES and not rest:
            reason = _PROTECTED_FILES[part]
        elif part == ".github" and rest and rest[0] in ("workflows", "actions"):
            reason = RUNS_IN_CI
        if reason:
            break
    if reason is None and len(parts) == 1 and parts[0] in _ROOT_FILES:
        reason = _ROOT_FILES[parts[0]]
    return reason


# Text of a shell command that names a protected path (or a command that writes one
# without naming it, such as `git config`). Generous on purpose: a match only means
# "ask" for commands that are not read-only.
_MENTION = re.compile(
    r"""(?ix)
      (?:^|[^\w.-])\.git(?=$|[/\s'"`;&|()<>:])      # the .git directory (hooks, config)
    | \.(?:vscode|idea|devcontainer|husky|pygent)(?![\w-])
    | \.envrc | pygent\.toml
    | \.github[/\\]+(?:workflows|actions)
    | \.gitlab-ci\.ya?ml | \.pre-commit-config\.ya?ml
    | (?:^|[\s'"=;&|<>(])(?:\./)?config\.py(?![\w.-])  # root config.py
    | hookspath | fsmonitor
    """
)


def protected_mention(text: str) -> str | None:
    """The protected path a shell command's text names, or None (best effort)."""
    match = _MENTION.search(text)
    if not match:
        return None
    end = match.end()
    while end < len(text) and text[end] not in _TOKEN_END:  # show the whole path
        end += 1
    return text[match.start() : end].strip(_TOKEN_END + "=")


_TOKEN_END = " \t\n'\"`;&|()<>"
