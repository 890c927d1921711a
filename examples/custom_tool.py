"""Register a tool the model can call; it receives the runtime and its arguments."""

import pygent
from pygent import Agent


@pygent.tool(
    "word_count",
    "Count the words of a workspace file",
    {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)
def word_count(rt, path):
    return str(len(rt.read_file(path).split()))


ag = Agent()
ag.runtime.write_file("notes.txt", "three little words")
ag.run_until_stop("how many words are in notes.txt?")
print(ag.last_assistant_message().content)
ag.runtime.cleanup()
pygent.remove_tool("word_count")
