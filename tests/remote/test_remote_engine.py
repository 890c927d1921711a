"""The Docker sandbox on an engine that cannot see this machine's folders (over TCP and
ssh://): the workspace is transferred, and the core Docker cases hold there."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import pytest

from pygent.runtime import Runtime, remote
from pygent.service import SessionOptions, SessionService
from pygent.settings import load_settings
from tests.docker_gate import TEST_IMAGE
from tests.remote.conftest import remote_docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


@pytest.fixture()
def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    return dataclasses.replace(
        load_settings(), image=TEST_IMAGE, sessions_dir=tmp_path / "data" / "sessions",
        use_docker=True,
    )


@pytest.fixture()
def runtime(engine: str, settings):  # type: ignore[no-untyped-def]
    rt = Runtime(use_docker=True, settings=settings)
    yield rt
    rt.cleanup()


def _mine(remote_engine: dict[str, str], kind: str) -> list[str]:
    """This process's containers or volumes on the second engine."""
    flt = f"label=pygent.owner_pid={os.getpid()}"
    if kind == "volume":
        return remote_docker(remote_engine, "volume", "ls", "-q", "--filter", flt).split()
    return remote_docker(remote_engine, "ps", "-aq", "--filter", flt).split()


def test_the_engine_cannot_see_the_folder_so_the_workspace_is_transferred(
    runtime: Runtime, tmp_path: Path
) -> None:
    assert "workspace transferred" in runtime.describe()
    assert any("cannot see this machine's folders" in n for n in runtime.notices)
    # The engine really does not see this machine's test folder.
    out = runtime.run(f"ls -d {tmp_path} 2>&1; echo $?")
    assert out.stdout.strip().endswith("2") or "No such file" in out.stdout


def test_persistent_shell_and_file_tools(runtime: Runtime) -> None:
    assert runtime.run("cd /workspace && mkdir -p sub && cd sub && export GREETING=hi").exit_code == 0
    out = runtime.run("echo $GREETING; pwd")
    assert out.stdout == "hi\n/workspace/sub\n"
    # A file tool's write reaches the container; the container's write comes back.
    runtime.write_file("notes/a.txt", "from the file tool\n")
    assert runtime.run("cat /workspace/notes/a.txt").stdout == "from the file tool\n"
    runtime.run("printf 'line1\\nline2\\n' > /workspace/notes/b.txt; rm /workspace/notes/a.txt")
    assert runtime.read_file("notes/b.txt") == "line1\nline2\n"
    assert not (runtime.workspace / "notes" / "a.txt").exists()
    # A link to a host file comes back as a link, and host-side reads do not follow it.
    runtime.run("ln -s /etc/hostname /workspace/link")
    assert (runtime.workspace / "link").is_symlink()
    with pytest.raises(Exception):  # noqa: B017 - the workspace refuses links out
        runtime.read_file("link")


def test_timeout_and_cancel_kill_the_command(runtime: Runtime) -> None:
    started = time.monotonic()
    out = runtime.run("sleep 60 & sleep 61; echo never", timeout=1.5)
    assert out.timed_out and "never" not in out.stdout
    assert time.monotonic() - started < 15
    assert runtime.run("ps -eo args | grep -c '^sleep 6[01]' || true").stdout.strip() == "0"
    assert runtime.run("echo still here").stdout == "still here\n"


def test_hardening_holds_on_the_remote_engine(runtime: Runtime) -> None:
    out = runtime.run(
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; ls /sys/class/net; "
        "touch /etc/x 2>&1 | head -c 60; echo; cat /proc/1/environ | tr '\\0' '\\n' | "
        "grep -c OPENAI || true"
    )
    lines = out.stdout.splitlines()
    assert "CapEff:\t0000000000000000" in lines and "NoNewPrivs:\t1" in lines
    assert "lo" in lines and "eth0" not in lines, "no network"
    assert any("Read-only file system" in line for line in lines)
    assert lines[-1] == "0", "no host secret in the container's environment"


def test_cleanup_leaves_nothing_on_the_remote_engine(engine: str, settings,  # type: ignore[no-untyped-def]
                                                     remote_engine: dict[str, str]) -> None:
    rt = Runtime(use_docker=True, settings=settings)
    rt.run("echo x > /workspace/x")
    mirror = rt.workspace
    assert len(_mine(remote_engine, "container")) == 1
    assert len(_mine(remote_engine, "volume")) == 1
    rt.cleanup()
    assert _mine(remote_engine, "container") == []
    assert _mine(remote_engine, "volume") == []
    assert not mirror.exists()


def test_an_editor_session_gets_the_copy_mode_change_set(engine: str, settings,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "app.py").write_text("print('v1')\n")
    (folder / "keep.txt").write_text("keep\n")
    service = SessionService(settings)
    session = service.open_blocking(SessionOptions(workspace_folder=str(folder), runtime="docker"))
    try:
        assert session.sync_mode == "copy"
        assert any("cannot see this machine's folders" in n for n in session.notices)
        rt = session.runtime
        out = rt.run("cd /workspace && sed -i s/v1/v2/ app.py && echo new > added.txt && "
                     "rm keep.txt && cat app.py")
        assert out.stdout == "print('v2')\n"
        changes = {c.path: c for c in session.sync.changes()}
        assert {p: c.status for p, c in changes.items()} == {
            "app.py": "modified", "added.txt": "added", "keep.txt": "deleted"}
        assert "+print('v2')" in changes["app.py"].diff
        assert (folder / "app.py").read_text() == "print('v1')\n", "nothing applied yet"
        # The editor changes a file: the incremental sync carries it into the sandbox.
        (folder / "later.txt").write_text("from the editor\n")
        session.sync.mark_dirty([str(folder / "later.txt")])
        session.sync.sync()
        assert rt.run("cat /workspace/later.txt").stdout == "from the editor\n"
        session.sync.write_to_folder()
        assert (folder / "app.py").read_text() == "print('v2')\n"
        assert not (folder / "keep.txt").exists()
    finally:
        service.close_blocking(session.id)


def test_a_dropped_ssh_connection_mid_command_reconnects_with_the_workspace(
    engine: str, settings
) -> None:
    if engine != "ssh":
        pytest.skip("the tcp case: see test_a_cut_tcp_connection_mid_command")
    rt = Runtime(use_docker=True, settings=settings)
    try:
        rt.run("echo kept > /workspace/kept.txt")
        container = rt.backend.container_id  # type: ignore[attr-defined]
        tunnel = remote.tunnel_for(os.environ["DOCKER_HOST"])
        threading.Timer(1.0, tunnel.drop).start()
        started = time.monotonic()
        out = rt.run("sleep 30; echo finished", timeout=60)
        took = time.monotonic() - started
        assert "finished" not in out.stdout and took < 20, (out, took)
        assert "connection to the Docker engine" in out.note, out.note
        # Reconnected: the next command works, the workspace is intact.
        again = rt.run("cat /workspace/kept.txt")
        assert again.stdout == "kept\n", again
        assert rt.backend.container_id == container, "the same container, reconnected"  # type: ignore[attr-defined]
        assert tunnel.reconnects >= 1
        assert rt.read_file("kept.txt") == "kept\n"
    finally:
        rt.cleanup()


class _Proxy:
    """A TCP relay to the engine whose connections can be cut (a flaky network)."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket

        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b) -> None:  # type: ignore[no-untyped-def]
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(2)
                except OSError:
                    pass

    def cut(self) -> None:
        """Every open connection ends now; new ones still work."""
        conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(2)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.closed = True
        self.server.close()
        self.cut()


def test_a_cut_tcp_connection_mid_command(remote_engine: dict[str, str], settings,  # type: ignore[no-untyped-def]
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    host, port = remote_engine["PYGENT_REMOTE_TCP"].removeprefix("tcp://").split(":")
    proxy = _Proxy((host, int(port)))
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{proxy.port}")
    rt = Runtime(use_docker=True, settings=settings)
    try:
        rt.run("echo kept > /workspace/kept.txt")
        container = rt.backend.container_id  # type: ignore[attr-defined]
        threading.Timer(1.0, proxy.cut).start()
        started = time.monotonic()
        out = rt.run("sleep 30; echo finished", timeout=60)
        assert "finished" not in out.stdout and time.monotonic() - started < 20, out
        assert "connection to the Docker engine" in out.note, out.note
        again = rt.run("cat /workspace/kept.txt")
        assert again.stdout == "kept\n", again
        assert rt.backend.container_id == container, "the same container, reconnected"  # type: ignore[attr-defined]
        assert rt.read_file("kept.txt") == "kept\n"
    finally:
        rt.cleanup()
        proxy.close()


def test_the_keeper_and_the_reaper_work_remotely(engine: str, remote_engine: dict[str, str],
                                                 tmp_path: Path) -> None:
    """A Pygent killed with SIGKILL: its container stops by itself (the keeper, after
    REMOTE_OWNER_GRACE seconds in which a reconnection would have kept it) and the next
    Pygent's reaper removes it and its workspace volume from the remote engine."""
    if engine != "ssh":
        pytest.skip("the keeper is the engine's side: one transport is enough (ssh: the "
                    "tunnel dies with Pygent)")
    import signal
    import subprocess
    import sys

    from pygent.runtime.docker_backend import _reap_volumes
    from pygent.runtime.docker_engine import connect, reap_orphans

    script = tmp_path / "hold.py"
    script.write_text(
        "import dataclasses, sys, time\n"
        "from pygent.runtime import Runtime\n"
        "from pygent.settings import load_settings\n"
        f"s = dataclasses.replace(load_settings(), image={TEST_IMAGE!r})\n"
        "rt = Runtime(use_docker=True, settings=s)\n"
        "rt.run('echo x > /workspace/x')\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        flt = f"label=pygent.owner_pid={proc.pid}"
        assert remote_docker(remote_engine, "ps", "-q", "--filter", flt).split()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    from pygent.runtime.docker_backend import REMOTE_OWNER_GRACE

    deadline = time.monotonic() + REMOTE_OWNER_GRACE + 20
    while remote_docker(remote_engine, "ps", "-q", "--filter", flt).split():
        assert time.monotonic() < deadline, "the keeper did not stop the container"
        time.sleep(0.2)
    assert remote_docker(remote_engine, "ps", "-aq", "--filter", flt).split(), "stopped, not gone"
    client = connect()
    try:
        reaped = reap_orphans(client)
        _reap_volumes(client)
    finally:
        client.close()
    assert reaped and remote_docker(remote_engine, "ps", "-aq", "--filter", flt).split() == []
    assert remote_docker(remote_engine, "volume", "ls", "-q", "--filter", flt).split() == []


def test_what_comes_back_is_only_files_folders_and_links_inside(runtime: Runtime) -> None:
    """A FIFO stays in the sandbox, a hard link comes back as a plain copy, a link to /
    comes back as a link that host-side readers refuse, and nothing is written through it."""
    import stat

    out = runtime.run(
        "cd /workspace && echo a > a.txt && ln a.txt hard.txt && mkfifo pipe && "
        "ln -s / root && mkdir -p d && ln -s /etc d/etc && echo ok"
    )
    assert out.stdout == "ok\n", out
    ws = runtime.workspace
    assert not (ws / "pipe").exists() and not (ws / "pipe").is_symlink()
    assert (ws / "hard.txt").read_text() == "a\n"
    assert os.stat(ws / "hard.txt").st_ino != os.stat(ws / "a.txt").st_ino
    assert stat.S_ISLNK(os.lstat(ws / "root").st_mode) and os.readlink(ws / "root") == "/"
    with pytest.raises(Exception):  # noqa: B017 - the workspace refuses links out
        runtime.read_file("root/etc/hostname")
    # Editing through the host side never writes outside the mirror.
    runtime.run("rm /workspace/d/etc && mkdir /workspace/d/etc && echo x > /workspace/d/etc/f")
    assert (ws / "d" / "etc" / "f").read_text() == "x\n" and not (ws / "d" / "etc").is_symlink()


def test_the_warm_pool_serves_a_remote_engine(engine: str, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Pooled sandboxes on the remote engine get a transferred workspace; an editor session
    over a folder takes one (copy mode) and its edits come back as the change set."""
    import asyncio

    from pygent.runtime.facade import docker_options
    from pygent.runtime.pool import SandboxPool

    if engine != "tcp":
        pytest.skip("one transport is enough for the pool (the transfer is the same)")
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "a.txt").write_text("hi\n")
    service = SessionService(settings)
    pool = service.pool = SandboxPool(settings, size=1, idle=600.0)
    pool.start(warm=docker_options(settings))
    try:
        deadline = time.monotonic() + 120
        while pool.status()["ready"] < 1:
            assert time.monotonic() < deadline, pool.status()
            time.sleep(0.05)
        assert pool.transfers
        session = service.open_blocking(
            SessionOptions(workspace_folder=str(folder), runtime="docker"))
        assert pool.status()["hits"] == 1
        assert session.sync_mode == "copy"
        out = session.runtime.run("cat /workspace/a.txt; echo b > /workspace/b.txt")
        assert out.stdout == "hi\n"
        assert [c.path for c in session.sync.changes()] == ["b.txt"]
        service.close_blocking(session.id)
    finally:
        asyncio.run(service.aclose())


def test_a_docker_context_names_the_remote_engine(remote_engine: dict[str, str], settings,  # type: ignore[no-untyped-def]
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`docker context create` + DOCKER_CONTEXT (no DOCKER_HOST): that engine is used, and
    the workspace is transferred."""
    import subprocess

    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text("{}")  # the SDK finds contexts beside it
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    subprocess.run(["docker", "context", "create", "pygent-remote-test", "--docker",
                    f"host={remote_engine['PYGENT_REMOTE_TCP']}"],
                   check=True, capture_output=True, env={**os.environ})
    monkeypatch.setenv("DOCKER_CONTEXT", "pygent-remote-test")
    where = remote.endpoint()
    assert where.context == "pygent-remote-test" and where.url.startswith("tcp://")
    rt = Runtime(use_docker=True, settings=settings)
    try:
        assert "context pygent-remote-test" in rt.describe() and "transferred" in rt.describe()
        assert rt.run("echo hi > /workspace/h; cat /workspace/h").stdout == "hi\n"
        assert rt.read_file("h") == "hi\n"
        flt = f"label=pygent.owner_pid={os.getpid()}"
        assert remote_docker(remote_engine, "ps", "-q", "--filter", flt).split()
    finally:
        rt.cleanup()
    missing = "no-such-context"
    monkeypatch.setenv("DOCKER_CONTEXT", missing)
    from pygent.errors import RuntimeUnavailable

    with pytest.raises(RuntimeUnavailable, match=missing):
        remote.endpoint()
