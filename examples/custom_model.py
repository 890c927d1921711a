"""A custom model: anything with chat(messages, model, tools) returning a message."""

from pygent import Agent, openai_compat


class EchoModel:
    def chat(self, messages, model, tools):
        last = messages[-1]["content"]
        return openai_compat.Message(role="assistant", content=f"Echo: {last}")


ag = Agent(model=EchoModel())
print(ag.step("test").content)
ag.runtime.cleanup()
