"""Call the built-in tools from Python: write a file, then run it with bash."""

from pygent import Runtime
from pygent.openai_compat import ToolCall, ToolCallFunction
from pygent.tools import execute_tool

rt = Runtime()
write = ToolCall("1", function=ToolCallFunction("write_file", '{"path": "hello.py", "content": "print(6 * 7)"}'))
run = ToolCall("2", function=ToolCallFunction("bash", '{"cmd": "python3 hello.py"}'))
print(execute_tool(write, rt))
print(execute_tool(run, rt))
rt.cleanup()
