"""Delegate a task to a sub-agent with its own sandbox, then collect its file."""

import time

from pygent import Runtime, TaskManager

rt = Runtime()
rt.write_file("spec.txt", "write result.txt containing the word done")
tm = TaskManager()
task_id = tm.start_task("read spec.txt and do what it says", rt, files=["spec.txt"])
while tm.status(task_id) in ("queued", "running"):
    time.sleep(0.1)
print("task", task_id, tm.status(task_id))
tm.collect_file(rt, task_id, "result.txt")
print(rt.read_file("result.txt"))
tm.shutdown()
rt.cleanup()
