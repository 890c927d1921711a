"""Builds the chat page with the VS Code extension's own build and copies it into ``pygent/web/static``.

One front end, built once: ``editors/vscode/scripts/build.mjs --production`` bundles
``webview/host/main.ts`` (the chat page with the extension's ``ChatController`` as its
host) to ``media/ui.js``; this script runs it in a scratch copy of ``editors/vscode``
(so the extension's working tree is left alone), copies ``ui.js`` and ``chat.css``
here and records a digest of the sources in ``BUILD.json``. The copies are committed, so ``pip install pygent[ui]`` needs no Node.

    python -m pygent.web.build_static           # rebuild (needs Node 20 and npm)
    python -m pygent.web.build_static --check   # exit 1 when the copies are stale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "editors" / "vscode"
STATIC = Path(__file__).resolve().parent / "static"
MANIFEST = STATIC / "BUILD.json"
BUILD_COMMAND = ["node", "scripts/build.mjs", "--production"]
#: What the extension's build reads (the extension's own sources are built too but not used).
_COPY_DIRS = ("webview", "src", "scripts", "media")
_COPY_FILES = ("package.json", "package-lock.json")
OUTPUTS = ("ui.js", "chat.css")


def source_files(extension: Path = EXTENSION) -> list[Path]:
    """The files the bundle is made of: the page and its host, the chat controller, the
    protocol types, the stylesheet and the build script."""
    files = [p for p in (extension / "webview").rglob("*.ts") if p.is_file()]
    files += [p for d in ("chat", "common") for p in (extension / "src" / d).glob("*.ts")]
    files += [
        extension / "src" / "protocol.ts",
        extension / "media" / "chat.css",
        extension / "scripts" / "build.mjs",
    ]
    return sorted(files)


def source_digest(extension: Path = EXTENSION) -> str:
    """SHA-256 over the page's sources (names and contents), as BUILD.json records it."""
    digest = hashlib.sha256()
    for path in source_files(extension):
        digest.update(path.relative_to(extension).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(command: list[str], cwd: Path) -> None:
    log.info("$ %s  (in %s)", " ".join(command), cwd)
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            f"build_static: {' '.join(command)} failed ({done.returncode}):\n"
            f"{done.stdout}{done.stderr}"
        )


def build(extension: Path = EXTENSION, static: Path = STATIC) -> dict[str, str]:
    """Run the extension's production build in a scratch copy and copy the page out;
    returns the digests of the copied files."""
    if shutil.which("node") is None:
        raise SystemExit("build_static: Node is needed (Node 20: apt-get install nodejs npm)")
    with tempfile.TemporaryDirectory(prefix="pygent-page-") as tmp:
        work = Path(tmp) / "vscode"
        work.mkdir()
        for name in _COPY_DIRS:
            shutil.copytree(extension / name, work / name)
        for path in [*(extension / n for n in _COPY_FILES), *extension.glob("tsconfig*.json")]:
            if path.is_file():
                shutil.copy2(path, work / path.name)
        modules = extension / "node_modules"
        if modules.is_dir():
            (work / "node_modules").symlink_to(modules, target_is_directory=True)
        else:
            _run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], work)
        _run(BUILD_COMMAND, work)
        static.mkdir(parents=True, exist_ok=True)
        for name in OUTPUTS:
            shutil.copyfile(work / "media" / name, static / name)
    files = {name: _sha(static / name) for name in OUTPUTS}
    manifest = {
        "built_by": "python -m pygent.web.build_static (editors/vscode: "
        + " ".join(BUILD_COMMAND)
        + ")",
        "sources": source_digest(extension),
        "files": files,
    }
    (static / MANIFEST.name).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return files


def stale_reason(extension: Path = EXTENSION, static: Path = STATIC) -> str | None:
    """Why the committed page is out of date with editors/vscode, or None when it is current."""
    manifest_path = static / MANIFEST.name
    if not manifest_path.is_file():
        return f"{manifest_path} is missing"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for name in OUTPUTS:
        if not (static / name).is_file():
            return f"{static / name} is missing"
        if manifest.get("files", {}).get(name) != _sha(static / name):
            return f"{static / name} was changed by hand (its digest is not the recorded one)"
    if extension.is_dir() and manifest.get("sources") != source_digest(extension):
        return (
            "editors/vscode/webview (or src/chat, src/common, chat.css, protocol.ts, build.mjs) "
            "changed since the last build"
        )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pygent.web.build_static",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check", action="store_true", help="only check that the copies are current"
    )
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check:
        reason = stale_reason()
        if reason:
            log.error("stale: %s; run python -m pygent.web.build_static", reason)
            return 1
        log.info("pygent/web/static is up to date with editors/vscode")
        return 0
    files = build()
    log.info("built %s", ", ".join(f"{name} {digest}" for name, digest in files.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
