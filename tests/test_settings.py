"""Settings: every upstream variable, pygent.toml, precedence and clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pygent.config import load_config
from pygent.errors import ConfigError
from pygent.persona import Persona
from pygent.settings import load_settings, set_loaded_layer


@pytest.fixture(autouse=True)
def _isolated_layer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import pygent.settings as s

    monkeypatch.setattr(s, "_loaded_layer", {})
    monkeypatch.setattr(s, "_loaded_sources", [])
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_every_upstream_variable_is_read(tmp_path: Path) -> None:
    env = {
        "OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "http://h/v1", "PYGENT_MODEL": "m1",
        "PYGENT_IMAGE": "img:1", "PYGENT_USE_DOCKER": "0", "PYGENT_MAX_TASKS": "5",
        "PYGENT_HISTORY_FILE": str(tmp_path / "h.jsonl"), "PYGENT_WORKSPACE": str(tmp_path / "ws"),
        "PYGENT_STEP_TIMEOUT": "7", "PYGENT_TASK_TIMEOUT": "9", "PYGENT_PERSONA_NAME": "Bot",
        "PYGENT_PERSONA": "a bot", "PYGENT_TASK_PERSONAS": os.pathsep.join(["tester", "dev"]),
        "PYGENT_INIT_FILES": os.pathsep.join(["a.py", "b.py"]), "PYGENT_SNAPSHOT": str(tmp_path / "snap"),
        "PYGENT_CONFIRM_BASH": "1", "PYGENT_BANNED_COMMANDS": os.pathsep.join(["rm", "curl"]),
    }
    s = load_settings(environ=env, cwd=tmp_path)
    assert (s.api_key, s.base_url, s.model, s.image) == ("sk-x", "http://h/v1", "m1", "img:1")
    assert s.use_docker is False and s.max_tasks == 5
    assert s.history_file == tmp_path / "h.jsonl" and s.workspace == tmp_path / "ws"
    assert (s.step_timeout, s.task_timeout) == (7.0, 9.0)
    assert s.main_persona == Persona("Bot", "a bot")
    assert [p.name for p in s.task_personas] == ["tester", "dev"]
    assert s.init_files == ["a.py", "b.py"] and s.snapshot == tmp_path / "snap"
    assert s.confirm_bash is True and s.effective_approval_mode() == "confirm"
    assert s.banned_commands == ["rm", "curl"]


def test_personas_json_overrides_the_plain_list(tmp_path: Path) -> None:
    env = {"PYGENT_TASK_PERSONAS": "a", "PYGENT_TASK_PERSONAS_JSON": '[{"name": "t", "description": "tests"}]'}
    assert load_settings(environ=env, cwd=tmp_path).task_personas == [Persona("t", "tests")]


def test_toml_fills_only_unset_variables(tmp_path: Path) -> None:
    (tmp_path / "pygent.toml").write_text(
        'persona_name = "FriendlyBot"\npersona = "a friendly bot"\nmodel = "from-toml"\n'
        'initial_files = ["bootstrap.py"]\n'
        '[[task_personas]]\nname = "tester"\ndescription = "runs tests"\n'
    )
    s = load_settings(environ={"PYGENT_MODEL": "from-env"}, cwd=tmp_path)
    assert s.persona_name == "FriendlyBot" and s.model == "from-env"
    assert s.init_files == ["bootstrap.py"]
    assert s.task_personas == [Persona("tester", "runs tests")]
    assert s.config_files == [tmp_path / "pygent.toml"]


def test_cli_overrides_win_over_environment(tmp_path: Path) -> None:
    s = load_settings({"model": "cli", "use_docker": None}, environ={"PYGENT_MODEL": "env", "PYGENT_USE_DOCKER": "1"}, cwd=tmp_path)
    assert s.model == "cli" and s.use_docker is True


def test_broken_toml_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "pygent.toml").write_text('model = "ok"\npersona = \n')
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, cwd=tmp_path)
    assert "pygent.toml" in str(info.value) and "line 2" in str(info.value)


def test_bad_variable_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PYGENT_MAX_TASKS: expected a whole number, got 'lots'"):
        load_settings(environ={"PYGENT_MAX_TASKS": "lots"}, cwd=tmp_path)


def test_unknown_toml_key_is_a_warning_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "pygent.toml").write_text("colour = 'blue'\n")
    s = load_settings(environ={}, cwd=tmp_path)
    assert any("unknown key 'colour'" in w for w in s.warnings)


def test_load_config_applies_to_later_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "custom.toml"
    cfg.write_text('persona_name = "Loaded"\nmax_tasks = 2\n')
    load_config(cfg)
    s = load_settings(environ={}, cwd=tmp_path / "elsewhere")
    assert s.persona_name == "Loaded" and s.max_tasks == 2
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_public_dict_has_no_secret(tmp_path: Path) -> None:
    s = load_settings(environ={"OPENAI_API_KEY": "sk-secret-value", "PYGENT_ENV": "TOKEN=abc"}, cwd=tmp_path)
    text = repr(s.public_dict()) + repr(s)
    assert "sk-secret-value" not in text and "abc" not in text
    set_loaded_layer({}, None)


def test_overrides_are_converted_like_every_other_source(tmp_path: Path) -> None:
    s = load_settings(
        {"sessions_dir": str(tmp_path / "s"), "max_steps": "5", "use_docker": "no",
         "step_timeout": 3, "banned_commands": ("rm",), "task_personas": [Persona("t", "tests")],
         "PYGENT_IMAGE": "img:2"},
        environ={}, cwd=tmp_path,
    )
    assert s.sessions_dir == tmp_path / "s" and isinstance(s.sessions_dir, Path)
    assert (s.max_steps, s.use_docker, s.step_timeout) == (5, False, 3.0)
    assert s.banned_commands == ["rm"] and s.task_personas == [Persona("t", "tests")]
    assert s.image == "img:2"
    with pytest.raises(ConfigError, match="'max_steps'.*whole number"):
        load_settings({"max_steps": "many"}, environ={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings({"no_such": 1}, environ={}, cwd=tmp_path)


def test_an_agent_accepts_string_paths_from_the_api(tmp_path: Path) -> None:
    # The upstream bug: a str sessions_dir reached Agent, which called .parent on it.
    from pygent.agent import Agent
    from pygent.runtime import Runtime

    s = load_settings({"sessions_dir": str(tmp_path / "s"), "use_docker": False,
                       "api_key": "sk-test"}, environ={}, cwd=tmp_path)
    runtime = Runtime(settings=s, workspace=tmp_path / "ws")
    try:
        agent = Agent(runtime=runtime, settings=s, history_file=str(tmp_path / "h.jsonl"))
        assert agent.checkpoints is not None
        agent.close()
    finally:
        runtime.cleanup()
