"""The runtime on its own: a persistent shell in the sandbox, and its files."""

from pygent import Runtime

with Runtime() as rt:
    print("sandbox:", rt.describe())
    print(rt.bash("mkdir -p demo && cd demo && export GREETING=hello"))
    print(rt.bash("pwd && echo $GREETING"))     # cd and export carried over
    rt.write_file("demo/data.txt", "some data")
    print(rt.read_file("demo/data.txt"))
    result = rt.run("sleep 5", timeout=1)        # killed with its children
    print("timed out:", result.timed_out)
