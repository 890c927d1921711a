"""The Docker sandbox on Podman's Docker-compatible API socket, rootful and rootless: the
Docker suite's core cases (persistent shell, file tools, change set, timeout and cancel,
cleanup, hardening) and the settings Podman needs (pygent.runtime.podman).

Pygent runs as root here. For rootless Podman the sandbox commands run as the podman
user's uid (``DockerOptions.user``), which is what Pygent run by that user does by
default, and the workspace is that user's folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from pygent.runtime.docker_backend import DockerBackend, DockerOptions
from pygent.runtime.podman import nproc_limit
from tests.docker_gate import TEST_IMAGE
from tests.podman.conftest import PodmanEngine

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

Make = Callable[..., Awaitable[DockerBackend]]
U = random.randint(10_000, 99_999)


@pytest.fixture()
def home(podman: PodmanEngine) -> Iterator[Path]:
    """A folder the sandbox user owns (rootless Podman runs as that user and must reach it)."""
    folder = Path(tempfile.mkdtemp(prefix="pygent-podman-", dir="/tmp"))
    os.chown(folder, podman.uid, podman.gid)
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
async def make(podman: PodmanEngine, home: Path) -> AsyncIterator[Make]:
    made: list[DockerBackend] = []

    async def _make(on_progress: Callable[[str], None] | None = None, **opts: object) -> DockerBackend:
        opts.setdefault("image", TEST_IMAGE)
        opts.setdefault("pull", False)
        opts.setdefault("user", f"{podman.uid}:{podman.gid}")
        workspace = home / f"ws{len(made)}"
        workspace.mkdir()
        os.chown(workspace, podman.uid, podman.gid)
        backend = DockerBackend(workspace, DockerOptions(**opts), on_progress=on_progress)  # type: ignore[arg-type]
        made.append(backend)
        await backend.start()
        return backend

    yield _make
    for backend in made:
        await backend.close()


def _client():  # type: ignore[no-untyped-def]
    import docker

    return docker.from_env(timeout=30)


def _mine() -> list[str]:
    """This process's containers on the engine DOCKER_HOST names."""
    client = _client()
    try:
        found = client.api.containers(all=True, filters={"label": f"pygent.owner_pid={os.getpid()}"})
        return [c["Id"] for c in found]
    finally:
        client.close()


async def test_podman_is_recognised_and_given_what_it_needs(make: Make, podman: PodmanEngine) -> None:
    backend = await make()
    assert backend.engine.podman and backend.engine.rootless == (podman.mode == "rootless")
    expected = "Podman rootless" if podman.mode == "rootless" else "Podman"
    assert backend.describe().startswith(f"{expected} ({TEST_IMAGE})")
    # nproc is set to a value Podman can give without CAP_SYS_RESOURCE (its default,
    # 1048576, fails here: "error setting rlimit type 6: operation not permitted").
    nproc = nproc_limit(local=True)
    assert 0 < nproc <= 4194304
    out = await backend.run("ulimit -u; ulimit -n", timeout=10)
    assert out.stdout.split() == [str(nproc), "4096"]
    if podman.mode == "rootless":
        # keep-id: the user's uid is itself inside (in the rootless namespace it is 0).
        uid_map = (await backend.run("cat /proc/self/uid_map", timeout=10)).stdout
        assert [str(podman.uid), "0", "1"] in [line.split() for line in uid_map.splitlines()]


async def test_persistent_shell_and_workspace_files_are_the_users(
    make: Make, podman: PodmanEngine
) -> None:
    backend = await make()
    assert (await backend.run("mkdir -p sub && cd sub && export GREETING=hi", timeout=10)).ok
    out = await backend.run("echo $GREETING; pwd; id -u", timeout=10)
    assert out.stdout == f"hi\n/workspace/sub\n{podman.uid}\n"
    assert (await backend.run("echo made > made.txt", timeout=10)).ok
    made = backend.workspace / "sub" / "made.txt"
    # Rootless: keep-id maps the user's uid to itself, so the file is the user's on the host.
    assert made.read_text() == "made\n" and made.stat().st_uid == podman.uid
    (backend.workspace / "from-host.txt").write_text("host\n")
    assert (await backend.run("cat /workspace/from-host.txt", timeout=10)).stdout == "host\n"
    assert "shell" in (await backend.run("exit 3", timeout=10)).note
    assert (await backend.run("pwd", timeout=10)).stdout == "/workspace/sub\n"


async def test_timeout_and_cancel_kill_the_command(make: Make) -> None:
    backend = await make()
    started = time.monotonic()
    out = await backend.run(f"sleep {U}1 & (setsid sleep {U}2 &); sleep {U}3; echo never", timeout=1.5)
    assert out.timed_out and "never" not in out.stdout
    assert time.monotonic() - started < 15
    await asyncio.sleep(0.3)
    left = await backend.run(f"ps -eo args | grep -c '^sleep {U}' || true", timeout=10)
    assert left.stdout.strip() == "0", "the whole process tree is gone"
    task = asyncio.ensure_future(backend.run(f"sleep {U}4", timeout=60))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    after = await backend.run(f"ps -eo args | grep -c '^sleep {U}4' || true; echo ok", timeout=10)
    assert after.stdout.split() == ["0", "ok"]


async def test_hardening_holds(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = f"sk-canary-{uuid.uuid4()}"
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    backend = await make()
    out = await backend.run(
        "grep -E '^(CapEff|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status; "
        "tail -n +3 /proc/net/dev | cut -d: -f1; touch /usr/x 2>&1 | head -c 80; echo; "
        "for f in /proc/[0-9]*/environ; do cat $f; echo; done 2>/dev/null | grep -c sk-canary; "
        "hostname",
        timeout=10,
    )
    lines = [line.strip() for line in out.stdout.splitlines()]
    assert "CapEff:\t0000000000000000" in out.stdout and "CapPrm:\t0000000000000000" in out.stdout
    assert "NoNewPrivs:\t1" in out.stdout and "Seccomp:\t2" in out.stdout
    assert "lo" in lines and "eth0" not in lines and "tap0" not in lines, "no network"
    assert any("Read-only file system" in line for line in lines)
    assert lines[-2:] == ["0", "sandbox"], "no host secret inside; the sandbox's hostname"


async def test_limits_apply_or_their_absence_is_said(make: Make, podman: PodmanEngine) -> None:
    """Rootful: the cgroup limits hold (pids, memory). Rootless Podman on this cgroup v1
    machine drops them silently: Pygent says so instead; the rlimits the shell sets
    itself (open files, file size) hold in both modes."""
    notices: list[str] = []  # what a session shows in its notices
    backend = await make(pids_limit=64, memory="256m", on_progress=notices.append)
    out = await backend.run("ulimit -n; ulimit -f", timeout=30)  # bash: -f in KiB
    assert out.stdout.split() == ["4096", str((2 << 30) // 1024)]
    cgroup = await backend.run(
        "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max "
        "/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null",
        timeout=10,
    )
    v1 = open("/proc/self/mountinfo").read().count(" - cgroup ") > 0
    if podman.mode == "rootful":
        assert backend.engine.limits_problem is None
        assert cgroup.stdout.split() == ["64", str(256 << 20)], cgroup
        # dash gives up at once when it cannot fork (bash retries for ~20 s); `read` is a
        # builtin: no fork needed while the sleeps hold every process slot
        bomb = await backend.run("sh -c 'for i in $(seq 100); do sleep 20 >/dev/null 2>&1 & done' 2>&1 | "
                                 "grep -c 'fork'; read n </sys/fs/cgroup/pids/pids.current; echo $n",
                                 timeout=60)
        refused, current = (int(x) for x in bomb.stdout.split())
        # pids.max holds back forks, not migrations: each `podman exec` process is moved
        # into the container's cgroup and may take it a few past the limit (cgroup v1's
        # pids controller), so the check allows those few.
        assert refused > 0 and current <= 64 + 8, bomb
    elif v1:
        problem = backend.engine.limits_problem
        assert problem is not None and "cgroup v1" in problem and "memory" in problem
        assert problem in notices
    else:  # cgroup v2: limits depend on the controllers delegated to the user
        assert backend.engine.limits_problem is None or "delegated" in backend.engine.limits_problem


async def test_close_leaves_no_container(podman: PodmanEngine, home: Path) -> None:
    workspace = home / "ws"
    workspace.mkdir()
    os.chown(workspace, podman.uid, podman.gid)
    backend = DockerBackend(workspace, DockerOptions(
        image=TEST_IMAGE, pull=False, user=f"{podman.uid}:{podman.gid}"))
    await backend.start()
    await backend.run("echo x > /workspace/x", timeout=10)
    assert backend.container_id in _mine()
    await backend.close()
    await backend.close()  # idempotent
    assert _mine() == []
    assert (workspace / "x").read_text() == "x\n", "the workspace is the user's, kept"


def test_a_session_on_rootful_podman_copy_on_write_change_set(
    podman: PodmanEngine, tmp_path: Path
) -> None:
    """An editor session over a folder: copy-on-write through Podman's own overlay mount
    (``:O``), the agent's edits come back as the change set, the folder is untouched
    until applied, and closing leaves no container."""
    from pygent.service import SessionOptions, SessionService
    from pygent.settings import load_settings

    if podman.mode != "rootless":
        settings = dataclasses.replace(load_settings(), image=TEST_IMAGE, use_docker=True,
                                       sessions_dir=tmp_path / "data" / "sessions")
    else:
        pytest.skip("a whole session runs its commands as Pygent's own uid (root here), which "
                    "rootless Podman maps to a subordinate uid: covered by the backend tests")
    folder = tmp_path / "proj"
    (folder / "old").mkdir(parents=True)
    (folder / "app.py").write_text("print('v1')\n")
    (folder / "old" / "a.txt").write_text("a\n")
    service = SessionService(settings)
    session = service.open_blocking(SessionOptions(workspace_folder=str(folder), runtime="docker"))
    try:
        assert session.sync_mode == "cow", session.notices
        assert session.runtime.describe().startswith("Podman")
        out = session.runtime.run("cd /workspace && sed -i s/v1/v2/ app.py && rm -r old && "
                                  "echo new > added.txt && cat app.py")
        assert out.stdout == "print('v2')\n", out
        changes = {c.path: c.status for c in session.sync.changes()}
        assert changes == {"app.py": "modified", "added.txt": "added", "old/a.txt": "deleted"}
        assert (folder / "app.py").read_text() == "print('v1')\n", "nothing applied yet"
        session.sync.write_to_folder()
        assert (folder / "app.py").read_text() == "print('v2')\n"
        assert not (folder / "old").exists() and (folder / "added.txt").read_text() == "new\n"
    finally:
        service.close_blocking(session.id)
    assert _mine() == []


async def test_a_limit_podman_cannot_set_is_a_clear_error_and_leaves_nothing(
    podman: PodmanEngine, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What Pygent without its nproc setting met here: Podman's own default raise of the
    process limit, refused because root lacks CAP_SYS_RESOURCE (the value is forced to
    Podman's default; the engine's answer is real)."""
    from pygent.errors import SandboxError
    from pygent.runtime import docker_backend

    if podman.mode == "rootless":
        pytest.skip("rootless Podman's Docker API drops ulimits: nothing to refuse")
    if "CAP_SYS_RESOURCE" in _capabilities():
        pytest.skip("root has CAP_SYS_RESOURCE here: Podman can raise the limit")
    monkeypatch.setattr(docker_backend, "host_config_extras",
                        lambda flavour, local: ({"nproc": 4194304}, None))
    workspace = home / "ws"
    workspace.mkdir()
    backend = DockerBackend(workspace, DockerOptions(image=TEST_IMAGE, pull=False))
    with pytest.raises(SandboxError) as caught:
        await backend.start()
    await backend.close()
    assert "rlimit" in str(caught.value) and "containers.conf" in caught.value.hint
    assert "nproc" in caught.value.hint
    assert _mine() == [], "the container that could not start is removed"


def _capabilities() -> set[str]:
    """This process's effective capabilities, by name (only the one the test needs)."""
    with open("/proc/self/status") as fh:
        eff = int(next(line for line in fh if line.startswith("CapEff:")).split()[1], 16)
    return {"CAP_SYS_RESOURCE"} if eff & (1 << 24) else set()


async def test_copy_on_write_workspace_change_set(podman: PodmanEngine, home: Path) -> None:
    """Podman's own overlay mount (``:O``) over the session's layers, rootful and rootless:
    the folder is never written, the change set is exact (a deleted lower folder is a
    whiteout in the upper layer), and closing leaves no container."""
    from pygent.cow import CowSync
    from pygent.runtime.overlay import OverlayLayers, OverlayWorkspace

    folder = home / "proj"
    (folder / "old").mkdir(parents=True)
    (folder / "app.py").write_text("v1\n")
    (folder / "old" / "a.txt").write_text("a\n")
    layers = OverlayLayers.create(home / "data", folder)
    for path in [home, *home.rglob("*")]:  # the user's folder and layers
        os.chown(path, podman.uid, podman.gid)
    backend = DockerBackend(home / "unused", DockerOptions(
        image=TEST_IMAGE, pull=False, user=f"{podman.uid}:{podman.gid}"), overlay=layers)
    await backend.start()
    try:
        out = await backend.run("cd /workspace && sed -i s/v1/v2/ app.py && rm -r old && "
                                "echo new > new.txt && cat app.py", timeout=30)
        assert out.stdout == "v2\n", out
        changes = CowSync(folder, OverlayWorkspace(layers, writer=backend)).changes()
        assert {c.path: c.status for c in changes} == {
            "app.py": "modified", "new.txt": "added", "old/a.txt": "deleted"}
        assert (folder / "app.py").read_text() == "v1\n" and (folder / "old" / "a.txt").exists()
        assert (layers.upper / "new.txt").stat().st_uid == podman.uid
    finally:
        await backend.close()
        layers.remove()
    assert _mine() == []
