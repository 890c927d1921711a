"""Hello world: one agent, one step, then clean up (Docker when available, else local)."""

from pygent import Agent

ag = Agent()
ag.step("echo 'Hello World'")
print(ag.last_assistant_message().content)
ag.runtime.cleanup()
