"""The compiled methods of Pygent's dataclasses, kept beside its bytecode (pygent/dataclass_code.py).

Each case runs a fresh interpreter, as a launch is one, with its own bytecode folder
(``PYTHONPYCACHEPREFIX``) so that nothing here touches the checkout's ``__pycache__``.
"""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Defines Pygent's classes the way a launch does and reports what a user would see of them.
PROBE = """
import dataclasses, json
from pygent import dataclass_code
from pygent.agent import TurnResult
from pygent.events import MessageDelta, StopReason
import pygent.agent, pygent.runtime, pygent.cli

@dataclasses.dataclass
class MineAlone:
    a_field_of_the_users_own: int = 1

event = MessageDelta(text="hi")
try:
    event.text = "changed"
    frozen = False
except dataclasses.FrozenInstanceError:
    frozen = True
print(json.dumps({
    "compiled": dataclass_code.compiled_count(),
    "repr": repr(event),
    "equal": event == MessageDelta(text="hi") and event != MessageDelta(text="ho"),
    "hash": hash(event) == hash(MessageDelta(text="hi")),
    "frozen": frozen,
    "result": repr(TurnResult(StopReason.END_TURN, text="done", steps=2)),
    "mine": repr(MineAlone()),
}))
"""


def _env(prefix: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(ROOT), PYTHONPYCACHEPREFIX=str(prefix), **extra)
    return env


def _probe(env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr == ""  # nothing said at exit either (the cache is written then)
    return json.loads(out.stdout)


def _cache_file(prefix: Path) -> Path:
    found = list(prefix.rglob("dataclass-code.*.marshal"))
    assert len(found) == 1, found
    assert found[0].parent.name == "pygent"  # as the package's .pyc files are placed
    return found[0]


def test_a_second_launch_compiles_no_method_and_sees_the_same_classes(tmp_path: Path) -> None:
    env = _env(tmp_path / "pycache")
    first = _probe(env)
    assert first["compiled"] > 100  # every method of every class: nothing was kept yet
    cache = _cache_file(tmp_path / "pycache")
    second = _probe(env)
    assert second["compiled"] == 0
    assert {k: v for k, v in second.items() if k != "compiled"} == \
        {k: v for k, v in first.items() if k != "compiled"}
    assert second["repr"] == "MessageDelta(session_id='', task_id=None, text='hi')"
    assert second["equal"] and second["hash"] and second["frozen"]
    # A program's own dataclasses are its business: compiled as before, not kept.
    assert not any("a_field_of_the_users_own" in text for text in marshal.loads(cache.read_bytes()))


def test_a_damaged_cache_is_compiled_afresh_and_rewritten(tmp_path: Path) -> None:
    env = _env(tmp_path / "pycache")
    _probe(env)
    cache = _cache_file(tmp_path / "pycache")
    cache.write_bytes(b"\x00not marshal at all")
    assert _probe(env)["compiled"] > 100
    assert _probe(env)["compiled"] == 0  # rewritten whole by the run before


def test_a_cached_text_with_damaged_code_is_compiled_again(tmp_path: Path) -> None:
    env = _env(tmp_path / "pycache")
    _probe(env)
    cache = _cache_file(tmp_path / "pycache")
    stored = marshal.loads(cache.read_bytes())
    cache.write_bytes(marshal.dumps({text: b"garbage" for text in stored}))
    result = _probe(env)
    assert result["compiled"] > 100 and result["repr"] == "MessageDelta(session_id='', task_id=None, text='hi')"


def test_nothing_is_written_where_python_writes_no_bytecode(tmp_path: Path) -> None:
    prefix = tmp_path / "pycache"
    assert _probe(_env(prefix, PYTHONDONTWRITEBYTECODE="1"))["compiled"] > 100
    assert not list(prefix.rglob("dataclass-code.*"))


def test_where_the_cache_cannot_be_written_pygent_runs_without_it_and_says_nothing(
    tmp_path: Path,
) -> None:
    # A file where the folder should be: no folder can be made there, even by root (a
    # read-only install is the same case for a user).
    blocked = tmp_path / "pycache"
    blocked.write_text("a file, not a folder")
    assert _probe(_env(blocked))["compiled"] > 100
    assert _probe(_env(blocked))["compiled"] > 100
    assert blocked.read_text() == "a file, not a folder"
    assert [p.name for p in tmp_path.iterdir()] == ["pycache"]  # no temporary file left
