"""The Docker backend against a real engine: shell behaviour, isolation, limits, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from pygent.errors import RuntimeUnavailable, SandboxError
from pygent.runtime.docker_backend import DockerBackend, DockerOptions
from tests.docker_gate import TEST_IMAGE
from tests.processes import later, processes_matching

pytestmark = pytest.mark.docker

Make = Callable[..., Awaitable[DockerBackend]]


@pytest.fixture()
def client():
    import docker

    c = docker.from_env()
    yield c
    c.close()


@pytest.fixture()
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    made: list[DockerBackend] = []

    async def _make(**opts: object) -> DockerBackend:
        opts.setdefault("image", TEST_IMAGE)
        opts.setdefault("pull", False)
        backend = DockerBackend(tmp_path / f"ws{len(made)}", DockerOptions(**opts))  # type: ignore[arg-type]
        made.append(backend)
        await backend.start()
        return backend

    yield _make
    for backend in made:
        await backend.close()


#: Sleep durations unique to this run, so a check never sees another test's process.
U = random.randint(10_000, 99_999)


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# -- the shell ------------------------------------------------------------------------


async def test_describe_and_kind(make: Make) -> None:
    backend = await make()
    assert backend.kind == "docker"
    assert backend.describe() == f"Docker ({TEST_IMAGE})"


async def test_cd_export_and_functions_persist(make: Make) -> None:
    backend = await make()
    await backend.run(
        "mkdir -p sub && cd sub && export GREETING=hi && f() { echo fn-$1; }", timeout=10
    )
    result = await backend.run("pwd; echo $GREETING; f x", timeout=10)
    assert result.stdout.splitlines() == ["/workspace/sub", "hi", "fn-x"]


async def test_exit_code_stdout_and_stderr_are_kept(make: Make) -> None:
    backend = await make()
    result = await backend.run("echo out; echo err >&2; three() { return 3; }; three", timeout=10)
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 3)
    assert "[exit code 3]" in result.format()


async def test_streaming_callback_gets_output_while_the_command_runs(make: Make) -> None:
    backend = await make()
    seen: list[tuple[float, str, str]] = []
    start = time.monotonic()
    # A line longer than the end marker: PersistentShell holds back a marker's length.
    first = "one" * 40
    await backend.run(
        f"echo {first}; sleep 1; echo two >&2",
        timeout=10,
        on_output=lambda s, t: seen.append((time.monotonic() - start, s, t)),
    )
    assert "".join(t for _, s, t in seen if s == "stdout") == first + "\n"
    assert "".join(t for _, s, t in seen if s == "stderr") == "two\n"
    assert seen[0][1] == "stdout" and seen[0][0] < 0.8  # arrived before the sleep ended
    assert seen[-1][0] >= 0.9


async def test_timeout_kills_the_whole_process_tree_and_the_shell_survives(make: Make) -> None:
    backend = await make()
    await backend.run("cd /tmp && export KEEP=yes", timeout=10)
    start = time.monotonic()
    result = await backend.run(
        f"sleep {U}1 & (setsid sleep {U}2 &) ; nohup sleep {U}3 >/dev/null 2>&1 & sleep {U}4",
        timeout=1,
    )
    assert result.timed_out and "timed out" in result.format()
    assert time.monotonic() - start < 5
    await asyncio.sleep(0.3)
    assert not any(processes_matching(f"sleep {U}{i}") for i in range(1, 5))
    # The shell is restarted with the command (so a command list cannot go on after
    # the kill): the directory is kept, exported variables are reset, and it says so.
    assert "restarted in /tmp" in result.note
    after = await backend.run("pwd; echo ${KEEP:-unset}", timeout=10)
    assert after.stdout == "/tmp\nunset\n" and after.note == ""
    listed = await backend.run("sleep 100; touch /workspace/after-kill", timeout=1)
    assert listed.timed_out
    await asyncio.sleep(0.5)
    assert not (await backend.run("ls /workspace/after-kill", timeout=10)).ok


async def test_cancel_kills_the_running_command(make: Make) -> None:
    backend = await make()
    task = asyncio.ensure_future(backend.run(f"sleep {U}5", timeout=60))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await backend.run("echo ok", timeout=10)).stdout == "ok\n"
    assert not processes_matching(f"sleep {U}5")


async def test_stdin_is_eof_so_interactive_programs_return(make: Make) -> None:
    backend = await make()
    result = await backend.run(
        "cat; python3 -c 'import sys; print(repr(sys.stdin.read()))'; read x; echo rc=$?",
        timeout=10,
    )
    assert not result.timed_out and result.stdout == "''\nrc=1\n"


async def test_exit_restarts_the_shell_in_the_same_container(make: Make) -> None:
    backend = await make()
    container = backend.container_id
    await backend.run("mkdir -p d && cd d", timeout=10)
    result = await backend.run("exit 4", timeout=10)
    assert "shell" in result.note and "container" not in result.note
    after = await backend.run("pwd", timeout=10)
    assert after.stdout == "/workspace/d\n" and backend.container_id == container


async def test_kill_minus_one_inside_does_not_take_the_container_down(make: Make) -> None:
    backend = await make()
    container = backend.container_id
    await backend.run("echo kept > /tmp/state", timeout=10)
    await backend.run("kill -9 -1", timeout=10)
    after = await backend.run("cat /tmp/state", timeout=10)
    assert after.stdout == "kept\n" and backend.container_id == container


async def test_busybox_image_without_bash_or_ps(make: Make, client) -> None:
    import docker

    try:
        client.images.get("pygent-busybox:latest")
    except docker.errors.ImageNotFound:
        pytest.skip("pygent-busybox:latest missing: run .ci/docker-setup.sh")
    backend = await make(image="pygent-busybox:latest")
    assert backend._transport is not None and backend._transport.shell_name == "sh"
    await backend.run("cd /tmp && export V=7", timeout=10)
    assert (await backend.run("pwd; echo $V", timeout=10)).stdout == "/tmp\n7\n"
    result = await backend.run(f"sleep {U}6 & sleep {U}7", timeout=1)
    assert result.timed_out
    await asyncio.sleep(0.3)
    assert not processes_matching(f"sleep {U}6") and not processes_matching(f"sleep {U}7")
    assert (await backend.run("echo ok", timeout=10)).stdout == "ok\n"


# -- isolation ------------------------------------------------------------------------


async def test_host_secrets_never_reach_the_container(
    make: Make, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = f"sk-canary-{uuid.uuid4()}"
    monkeypatch.setenv("PYGENT_CANARY", canary)
    monkeypatch.setenv("OPENAI_API_KEY", canary + "-key")
    backend = await make(env={"MY_SETTING": "visible"})
    result = await backend.run(
        "env; for f in /proc/[0-9]*/environ; do cat $f; echo; done 2>/dev/null", timeout=10
    )
    assert "MY_SETTING=visible" in result.stdout and "PAGER=cat" in result.stdout
    assert "sk-canary" not in result.stdout
    pid1 = await backend.run("cat /proc/1/environ", timeout=10)
    assert "sk-canary" not in pid1.output
    config_env = client.api.inspect_container(backend.container_id)["Config"]["Env"] or []
    assert not any("sk-canary" in item or "MY_SETTING" in item for item in config_env)


async def test_no_network_by_default(make: Make) -> None:
    backend = await make()
    result = await backend.run(
        "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)\"",
        timeout=20,
    )
    assert result.exit_code != 0 and "OSError" in result.stderr or "unreachable" in result.stderr
    interfaces = await backend.run("tail -n +3 /proc/net/dev | cut -d: -f1", timeout=10)
    assert interfaces.stdout.split() == ["lo"]


async def test_network_can_be_turned_on(make: Make) -> None:
    backend = await make(network=True)
    interfaces = await backend.run("tail -n +3 /proc/net/dev | cut -d: -f1", timeout=10)
    assert "eth0" in interfaces.stdout.split()


async def test_no_capabilities_no_new_privileges_read_only_root(make: Make) -> None:
    backend = await make()
    status = await backend.run(
        "grep -E '^(CapEff|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status", timeout=10
    )
    fields = dict(line.split(":\t") for line in status.stdout.splitlines())
    assert fields == {
        "CapPrm": "0000000000000000",
        "CapEff": "0000000000000000",
        "NoNewPrivs": "1",
        "Seccomp": "2",
    }
    root = await backend.run("touch /usr/pwned", timeout=10)
    assert root.exit_code != 0 and "Read-only file system" in root.stderr
    writable = await backend.run(
        'touch /tmp/a "$HOME/b" /workspace/c && echo $HOME && hostname', timeout=10
    )
    assert writable.stdout == "/tmp/home\nsandbox\n"


async def test_files_created_inside_are_owned_by_the_host_user(make: Make) -> None:
    backend = await make()
    await backend.run("mkdir made && echo x > made/file", timeout=10)
    made = backend.workspace / "made"
    assert (made.stat().st_uid, made.stat().st_gid) == (os.getuid(), os.getgid())
    assert (made / "file").stat().st_uid == os.getuid()


async def test_an_explicit_user_is_used_inside(make: Make) -> None:
    backend = await make(user="4321:4321")
    ws = backend.workspace
    os.chmod(ws, 0o777)
    result = await backend.run("id -u; id -g; touch mine", timeout=10)
    assert result.stdout.split() == ["4321", "4321"]
    assert (ws / "mine").stat().st_uid == 4321


async def test_no_docker_socket_or_host_home_inside(make: Make, client) -> None:
    backend = await make()
    result = await backend.run(
        "ls -d /var/run/docker.sock /run/docker.sock /root/.ssh 2>&1; echo end", timeout=10
    )
    assert "No such file" in result.stdout or "Permission denied" in result.stdout
    mounts = client.api.inspect_container(backend.container_id)["Mounts"]
    assert [m["Destination"] for m in mounts] == ["/workspace"]


# -- resource limits --------------------------------------------------------------------


async def test_fork_bomb_is_contained_and_the_next_command_works(make: Make) -> None:
    backend = await make(pids_limit=128)
    start = time.monotonic()
    result = await backend.run("bomb() { bomb | bomb & }; bomb; sleep 20", timeout=4)
    assert result.timed_out or result.exit_code != 0
    assert time.monotonic() - start < 30
    after = await backend.run("ls /proc | grep -c '^[0-9]'; echo ok", timeout=20)
    assert after.stdout.endswith("ok\n"), after
    assert int(after.stdout.split()[0]) < 12  # init, keeper, shell, killer, these commands
    # The host is fine: a process starts at once.
    t = time.monotonic()
    proc = await asyncio.create_subprocess_exec("true")
    assert await proc.wait() == 0 and time.monotonic() - t < 2


async def test_memory_hog_is_killed_and_the_shell_survives(make: Make) -> None:
    backend = await make(memory="128m")
    result = await backend.run("python3 -c 'b = bytearray(400 * 1024 * 1024)'", timeout=60)
    assert result.exit_code == 137
    assert "out of memory" in result.note and "128m" in result.note
    assert (await backend.run("echo alive", timeout=10)).stdout == "alive\n"


async def test_a_gigabyte_of_output_is_capped_with_bounded_host_memory(make: Make) -> None:
    backend = await make()
    before = _rss_kb()
    start = time.monotonic()
    result = await backend.run("head -c 1000000000 /dev/zero | tr '\\0' x", timeout=120)
    assert result.truncated and not result.timed_out
    assert "bytes omitted" in result.stdout and len(result.stdout) < 100_000
    assert (_rss_kb() - before) < 50 * 1024, "host memory grew by more than 50 MB"
    assert time.monotonic() - start < 60
    assert not processes_matching("head -c 1000000000")
    assert (await backend.run("echo next", timeout=10)).stdout == "next\n"


async def test_endless_yes_is_killed_at_the_cap(make: Make) -> None:
    backend = await make()
    result = await backend.run("yes", timeout=60)
    assert result.truncated and not result.timed_out
    assert (await backend.run("echo next", timeout=10)).stdout == "next\n"


# -- recovery -------------------------------------------------------------------------


async def test_killed_container_is_replaced_and_the_next_command_works(make: Make, client) -> None:
    backend = await make()
    await backend.run(
        "echo state > /tmp/state && echo kept > /workspace/kept && mkdir -p sub", timeout=10
    )
    old = backend.container_id
    later(0.5, lambda: client.api.kill(old))
    start = time.monotonic()
    result = await backend.run("cd sub && sleep 60", timeout=None)
    assert time.monotonic() - start < 8
    assert "sandbox container died (exit 137, OOMKilled=false)" in result.note
    assert "new container" in result.note and "installed packages are gone" in result.note
    after = await backend.run("cat /workspace/kept; cat /tmp/state", timeout=10)
    assert after.stdout == "kept\n" and "No such file" in after.stderr
    assert backend.container_id != old


async def test_removed_container_is_replaced_before_the_next_command(make: Make, client) -> None:
    backend = await make()
    old = backend.container_id
    client.api.remove_container(old, force=True)
    await asyncio.sleep(0.2)  # between two commands (the model is thinking)
    result = await backend.run("echo hello", timeout=10)
    assert result.stdout == "hello\n" and "sandbox container was removed" in result.note
    assert backend.container_id != old
    assert (await backend.run("echo again", timeout=10)).note == ""


async def test_paused_container_does_not_hang_a_command(make: Make, client) -> None:
    backend = await make()
    later(0.5, lambda: client.api.pause(backend.container_id))
    start = time.monotonic()
    result = await backend.run(f"echo before; sleep {U}8", timeout=None)
    assert time.monotonic() - start < 12
    assert "paused" in result.note and "stopped" in result.note and not result.ok
    assert result.stdout == "before\n" and result.exit_code is None
    state = client.api.inspect_container(backend.container_id)["State"]
    assert state["Running"] and not state["Paused"]
    assert (await backend.run("echo ok", timeout=10)).stdout == "ok\n"
    assert not processes_matching(f"sleep {U}8")


async def test_removed_image_gives_a_clear_error_on_recovery(make: Make, client) -> None:
    doomed = f"pygent-test:doomed-{uuid.uuid4().hex[:8]}"
    client.images.get(TEST_IMAGE).tag(doomed)
    try:
        backend = await make(image=doomed)
        client.images.remove(doomed)
        client.api.kill(backend.container_id)
        await asyncio.sleep(0.3)
        with pytest.raises(SandboxError) as info:
            await backend.run("echo hi", timeout=10)
        assert doomed in str(info.value) and "docker pull" in info.value.user_message()
    finally:
        if client.images.list(name=doomed):
            client.images.remove(doomed)


# -- lifecycle ------------------------------------------------------------------------


_OWNER = """
import sys, time
from pathlib import Path
from pygent.runtime import Runtime
from pygent.settings import load_settings
ws = Path(sys.argv[1])
rt = Runtime(use_docker=True, workspace=ws, settings=load_settings(
    {"image": sys.argv[2]}, environ={}, cwd=ws.parent))
rt.wait_ready(120)
rt.run(f"nohup sleep {sys.argv[3]} >/dev/null 2>&1 &")
from tests.processes import processes_matching
deadline = time.monotonic() + 10  # the background job is forked; its exec may lag
while not processes_matching(f"sleep {sys.argv[3]}"):
    assert time.monotonic() < deadline, "the command did not start"
    time.sleep(0.01)
print(rt.backend.container_id, flush=True)
time.sleep(600)
"""


async def test_a_killed_pygent_leaves_nothing_running(tmp_path: Path, client) -> None:
    """kill -9 of the owning process: the commands it left are killed and the container
    stops within seconds (the reaper of the next Pygent removes it). Killed the moment
    its first command returned: the sandbox is ready only once what stops it is up."""
    import subprocess
    import sys

    import docker

    def status(cid: str) -> str:
        try:
            return str(client.containers.get(cid).status)
        except docker.errors.NotFound:  # another Pygent's reaper was quicker
            return "removed"

    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(tmp_path / "ws"), TEST_IMAGE, f"{U}9"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    try:
        cid = (await asyncio.to_thread(owner.stdout.readline)).strip()  # type: ignore[union-attr]
        owner.kill()  # at once: the owner saw its command running before it printed
        assert cid, "the owner did not start its sandbox"
        owner.wait(10)
        deadline = time.monotonic() + 15
        while status(cid) == "running" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert status(cid) in ("exited", "removed")
        assert not processes_matching(f"sleep {U}9")
    finally:
        owner.kill()
        if "cid" in locals() and cid:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                client.api.remove_container(cid, force=True)


async def test_close_removes_the_container_and_is_idempotent(make: Make, client) -> None:
    import docker

    backend = await make()
    cid = backend.container_id
    await backend.close()
    await backend.close()
    with pytest.raises(docker.errors.NotFound):
        client.api.inspect_container(cid)


async def test_close_removes_the_container_even_with_a_wedged_shell(make: Make, client) -> None:
    import docker

    backend = await make()
    cid = backend.container_id
    task = asyncio.ensure_future(backend.run("while :; do :; done", timeout=None))
    await asyncio.sleep(0.5)
    start = time.monotonic()
    await backend.close()
    assert time.monotonic() - start < 5
    with pytest.raises(docker.errors.NotFound):
        client.api.inspect_container(cid)
    result = await asyncio.wait_for(task, 10)
    assert result.exit_code is None and "closed" in result.note
    await asyncio.sleep(0.5)
    assert not client.api.containers(all=True, filters={"name": backend.container_name})


async def test_container_is_labelled_named_and_limited(make: Make, client) -> None:
    backend = await make()
    info = client.api.inspect_container(backend.container_id)
    labels = info["Config"]["Labels"]
    assert labels["pygent.managed"] == "1" and labels["pygent.owner_pid"] == str(os.getpid())
    assert labels["pygent.owner_start"].isdigit()
    assert info["Name"].startswith(f"/pygent-{os.getpid()}-")
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none" and host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["ReadonlyRootfs"]
    assert host["PidsLimit"] == 512 and host["Memory"] == host["MemorySwap"] == 2 << 30
    assert host["NanoCpus"] == 2_000_000_000 and host["Init"] and host["OomScoreAdj"] == 500
    ulimits = {u["Name"]: u["Hard"] for u in host["Ulimits"]}
    assert ulimits == {"nofile": 4096, "fsize": 2 << 30, "core": 0}


async def test_missing_image_is_a_clear_error_naming_the_image(tmp_path: Path, client) -> None:
    image = f"pygent-no-such-image:{uuid.uuid4().hex[:8]}"
    before = {c["Id"] for c in client.api.containers(all=True)}
    for pull in (False, True):
        backend = DockerBackend(tmp_path / "ws", DockerOptions(image=image, pull=pull))
        with pytest.raises(RuntimeUnavailable) as info:
            await backend.start()
        await backend.close()
        message = info.value.user_message()
        assert image in message and f"docker pull {image}" in message and "PYGENT_IMAGE" in message
        if pull:
            assert "pulling it failed" in message
    assert {c["Id"] for c in client.api.containers(all=True)} <= before


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"bin/sh": b"\x7fELF garbage, not a program", "bin/sleep": b"x"}, "exec format error"),
        ({"etc/hostname": b"no shell here\n"}, "no such file"),
    ],
    ids=["wrong-architecture", "no-shell"],
)
async def test_image_that_cannot_run_a_shell_is_a_clear_error(
    tmp_path: Path, client, files: dict[str, bytes], expected: str
) -> None:
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o755
            tar.addfile(info, io.BytesIO(content))
    image = f"pygent-broken:{uuid.uuid4().hex[:8]}"
    client.api.import_image_from_data(
        data.getvalue(), repository=image.split(":")[0], tag=image.split(":")[1]
    )
    try:
        backend = DockerBackend(tmp_path / "ws", DockerOptions(image=image, pull=False))
        with pytest.raises(SandboxError) as info:
            await backend.start()
        await backend.close()
        message = info.value.user_message()
        assert image in message and expected in message.lower(), message
        assert "PYGENT_IMAGE" in message
        # Nothing left of this image (other tests' containers may come and go meanwhile).
        assert client.api.containers(all=True, filters={"ancestor": image}) == []
    finally:
        client.images.remove(image, force=True)
