"""The docs cannot rot: every example and every Python block in the docs runs for real.

Each runs in a fresh process against the scripted OpenAI-compatible server, with the
local runtime (PYGENT_USE_DOCKER=0) and a throw-away HOME, and what it prints is
checked. A block can opt out with an HTML comment ``<!-- skip-test -->`` on the line
before its fence (used for blocks that need a real provider).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.openai_server import text_reply, tool_call_reply

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _run(script: Path, server, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYGENT_", "OPENAI_"))}
    env.update({"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-docs-test",
                "PYGENT_MODEL": "test-model", "PYGENT_USE_DOCKER": "0",
                "HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)})
    (tmp_path / "home").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


EXPECTED = {
    "api_example.py": ([text_reply("Hello from the model")], ["Hello from the model"]),
    "custom_model.py": ([], ["Echo: test"]),
    "custom_model_with_tool.py": ([], ["$ echo hi", "hi"]),
    "custom_tool.py": ([tool_call_reply("word_count", {"path": "notes.txt"}), text_reply("notes.txt has 3 words")],
                       ["notes.txt has 3 words"]),
    "write_file_demo.py": ([], ["Wrote 12 bytes to hello.py", "42"]),
    "runtime_example.py": ([], ["sandbox: local", "hello", "some data", "timed out: True"]),
    "delegate_example.py": ([tool_call_reply("write_file", {"path": "result.txt", "content": "done"}),
                             text_reply("wrote it")], ["finished", "done"]),
}


def test_every_example_is_covered() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts - {"config_file_example.py"} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, openai_server, tmp_path: Path) -> None:
    replies, expected = EXPECTED[name]
    openai_server.add(*replies)
    proc = _run(EXAMPLES / name, openai_server, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in expected:
        assert text in proc.stdout, f"{text!r} not in output:\n{proc.stdout}\n{proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr


def test_config_file_example_runs(openai_server, tmp_path: Path) -> None:
    script = EXAMPLES / "config_file_example.py"
    if not script.exists():
        pytest.fail("examples/config_file_example.py is missing")
    openai_server.set_responder(lambda body: text_reply("ok"))
    shutil.copy(EXAMPLES / "sample_config.toml", tmp_path / "sample_config.toml")
    proc = _run(script, openai_server, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert openai_server.chat_requests, "the example never asked the model"


FENCE = re.compile(r"(<!-- skip-test -->\s*\n)?[ \t]*```python\n(.*?)```", re.S)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, match in enumerate(FENCE.finditer(page.read_text())):
            if match.group(1):
                continue
            found.append((f"{page.relative_to(ROOT)}#{i + 1}", textwrap.dedent(match.group(2))))
    return found


@pytest.mark.parametrize("where,code", _blocks(), ids=[w for w, _ in _blocks()])
def test_docs_python_block_runs(where: str, code: str, openai_server, tmp_path: Path) -> None:
    openai_server.set_responder(lambda body: text_reply("ok"))
    script = tmp_path / "block.py"
    # Blocks refer to files the docs mention; give them something to find.
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    script.write_text(code)
    proc = _run(script, openai_server, tmp_path)
    assert proc.returncode == 0, f"{where} failed:\n{code}\n---\n{proc.stderr[-3000:]}"


def test_mkdocs_builds_strictly(tmp_path: Path) -> None:
    if shutil.which("mkdocs") is None:
        pytest.fail("mkdocs is not installed: pip install -e '.[docs]'")
    proc = subprocess.run(["mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
