"""Use a config file with task personas and delegate writing unit tests to a sub-agent.

    python examples/config_file_example.py

It needs a model: ``OPENAI_API_KEY`` (and ``OPENAI_BASE_URL`` for another
OpenAI-compatible server, such as the scripted one the tests use,
``python -m tests.openai_server``). Set ``PYGENT_USE_DOCKER=0`` to run without Docker.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pygent import Agent, PygentError, TaskManager, load_config


def main() -> int:
    load_config(Path(__file__).resolve().parent / "sample_config.toml")
    agent = Agent()
    manager = TaskManager()
    try:
        # The module to test, written straight into the main workspace.
        agent.runtime.write_file("calc.py", "def add(a, b):\n    return a + b\n")

        # A sub-agent with the "tester" persona gets its own sandbox and a copy of calc.py.
        task_id = manager.start_task(
            "Write pytest tests for calc.py in test_calc.py, run them, then stop.",
            agent.runtime,
            files=["calc.py"],
            persona="tester",
        )
        print(f"Started task {task_id} (persona {manager.info(task_id).persona})")

        # start_task returned at once; poll as the upstream API does (or manager.wait()).
        while manager.status(task_id) == "running":
            time.sleep(0.5)
        print("Status:", manager.status(task_id))

        try:
            print(manager.collect_file(agent.runtime, task_id, "test_calc.py"))
            print(agent.runtime.read_file("test_calc.py"))
        except PygentError as exc:  # the sub-agent did not write the file
            print(f"Nothing to collect: {exc}")
        return 0
    finally:
        manager.shutdown()  # cancels what still runs, removes every task sandbox
        agent.close()
        agent.runtime.cleanup()


if __name__ == "__main__":
    sys.exit(main())
