"""Run the real tools on the sample sources and record their output: the matcher fixtures.

``python -m tests.diagnostics.capture [CASE...]`` writes ``fixtures/CASE.out`` (the tool's
output, the scratch folder shown as ``/workspace``, as in a Docker sandbox) and
``fixtures/CASE.json`` (the problems :func:`pygent.diagnostics.matchers.recognise` reads
from it, checked by hand before committing). ``test_matchers.py`` runs the same cases
live wherever the tool is installed and compares with these files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pygent.diagnostics.matchers import recognise

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
FIXTURES = HERE / "fixtures"
#: Where the npm tools (tsc, eslint, pyright) are, when .ci/run installed them.
NODE_TOOLS = os.environ.get(
    "PYGENT_NODE_TOOLS", "/var/cache/pygent/diagnostics-node/node_modules/.bin"
)


@dataclass(frozen=True)
class Case:
    folder: str  # under cases/
    command: str
    needs: str  # the executable that must be installed


CASE_TABLE: dict[str, Case] = {
    "ruff": Case("python", "ruff check --no-cache calc.py", "ruff"),
    "ruff_concise": Case("python", "ruff check --no-cache --output-format=concise calc.py", "ruff"),
    "flake8": Case("python", "flake8 calc.py", "flake8"),
    "mypy": Case("python", "mypy --cache-dir=/dev/null calc.py", "mypy"),
    "mypy_columns": Case(
        "python",
        "mypy --cache-dir=/dev/null --show-column-numbers --show-error-end calc.py",
        "mypy",
    ),
    "pytest": Case("python", "python3 -m pytest -q -p no:cacheprovider test_calc.py", "pytest"),
    "pytest_short": Case(
        "python", "python3 -m pytest -q -p no:cacheprovider --tb=short test_calc.py", "pytest"
    ),
    "pytest_line": Case(
        "python", "python3 -m pytest -q -p no:cacheprovider --tb=line test_calc.py", "pytest"
    ),
    "unittest": Case("python", "python3 -m unittest test_unit", "python3"),
    "pyright": Case("python", "pyright calc.py", "pyright"),
    "tsc": Case("ts", "tsc -p . --pretty false", "tsc"),
    "tsc_pretty": Case("ts", "tsc -p . --pretty true", "tsc"),
    "eslint": Case("js", "eslint app.js", "eslint"),
    "eslint_unix": Case("js", "eslint --format unix app.js", "eslint"),
    "go_vet": Case("go", "go vet .", "go"),
    "go_build": Case("go", "go build ./...", "go"),
    "cargo": Case("rust", "cargo check --offline --color never", "cargo"),
    "rustc": Case(
        "rust",
        "rustc --color never --edition 2021 --emit=metadata -o /dev/null src/main.rs",
        "rustc",
    ),
    "gcc": Case("c", "gcc -Wall -fdiagnostics-color=never -c bad.c -o /dev/null", "gcc"),
    "clang": Case("c", "clang -Wall -fno-color-diagnostics -c bad.c -o /dev/null", "clang"),
}


def tool_path() -> str:
    return os.pathsep.join([NODE_TOOLS, os.environ.get("PATH", "/usr/bin:/bin")])


def available(case: Case) -> bool:
    return shutil.which(case.needs, path=tool_path()) is not None


def run(case: Case) -> str:
    """The tool's output (stdout then stderr) on a scratch copy of the case folder, with the
    scratch folder's path written as ``/workspace``."""
    with tempfile.TemporaryDirectory(prefix="pygent-diag-") as scratch:
        work = Path(scratch) / "workspace"
        shutil.copytree(CASES / case.folder, work)
        home = Path(scratch) / "home"
        home.mkdir()
        env = {
            "PATH": tool_path(),
            "HOME": str(home),
            "GOCACHE": str(home / "gocache"),
            "GOPATH": str(home / "go"),
            "GOFLAGS": "-mod=mod",
            "GOTOOLCHAIN": "local",
            "CARGO_TARGET_DIR": str(home / "target"),
            "CARGO_HOME": os.environ.get("CARGO_HOME", str(Path.home() / ".cargo")),
            "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(Path.home() / ".rustup")),
            "NO_COLOR": "1",
            # eslint finds its formatters (eslint-formatter-unix) beside itself.
            "NODE_PATH": str(Path(NODE_TOOLS).parent),
            "LANG": "C.UTF-8",
        }
        done = subprocess.run(
            case.command, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=300
        )
        out = done.stdout + done.stderr
        return out.replace(str(work.resolve()), "/workspace").replace(str(work), "/workspace")


def problems(case: Case, output: str) -> list[dict[str, object]]:
    found = recognise(output, case.command).problems
    return [{k: v for k, v in p._asdict().items() if k != "command"} for p in found]


def main(names: list[str]) -> int:
    FIXTURES.mkdir(exist_ok=True)
    for name in names or list(CASE_TABLE):
        case = CASE_TABLE[name]
        if not available(case):
            print(f"{name}: {case.needs} is not installed, kept the committed fixture")
            continue
        output = run(case)
        (FIXTURES / f"{name}.out").write_text(output)
        found = problems(case, output)
        (FIXTURES / f"{name}.json").write_text(json.dumps(found, indent=1) + "\n")
        print(f"{name}: {len(found)} problems")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
