"""Remote Docker engines: per-command overhead and the workspace transfer, each against a
baseline from the same run.

    python bench/bench_remote.py [--commands N] [--files N] [--write-docs]

Needs the local engine and the second engine of ``.ci/remote-engine-setup.sh`` (run
first, it is idempotent): a dockerd that cannot see this machine's folders, over TCP on
127.0.0.1 and over ssh:// through a local sshd. Measures:

- a trivial command (``true``) in a session's sandbox: the local engine (mounted
  workspace) against the second engine over TCP and over ssh:// (transferred workspace:
  each command also lists /workspace once);
- the first command after a 10k-file folder entered the workspace (the whole folder goes
  in as one tar through the engine API) against ``tar -c | ssh host tar -x`` of the same
  folder to the same machine.

Writes ``bench/results/remote.json``; ``--write-docs`` also writes the "Remote engines"
section of docs/performance.md. The engines share one machine here: the network is
loopback, so the figures are Pygent's overhead, not a WAN's latency.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.perfdoc import replace_block  # noqa: E402
from pygent.runtime import Runtime, remote  # noqa: E402
from pygent.settings import load_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "remote.json"
IMAGE = os.environ.get("PYGENT_TEST_IMAGE", "pygent-test:bookworm")


def engine_env() -> dict[str, str]:
    out = subprocess.run(["bash", str(ROOT / ".ci" / "remote-engine-setup.sh")],
                         capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def ssh_wrapper(env: dict[str, str], folder: Path) -> Path:
    wrapper = folder / "ssh"
    wrapper.write_text(
        f"#!/bin/sh\nexec /usr/bin/ssh -i {env['PYGENT_REMOTE_SSH_KEY']} "
        f"-o UserKnownHostsFile={env['PYGENT_REMOTE_KNOWN_HOSTS']} -o IdentitiesOnly=yes "
        '"$@"\n'
    )
    wrapper.chmod(0o755)
    return folder


def make_tree(root: Path, files: int) -> int:
    size = 0
    for i in range(files):
        folder = root / f"pkg{i // 100:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        data = f"value = {i}\n" + "# padding\n" * 40
        (folder / f"m{i % 100:02d}.py").write_text(data)
        size += len(data)
    return size


def per_command(commands: int) -> float:
    settings = dataclasses.replace(load_settings(), image=IMAGE)
    rt = Runtime(use_docker=True, settings=settings)
    try:
        rt.run("true")
        times = []
        for _ in range(commands):
            t = time.perf_counter()
            rt.run("true")
            times.append(time.perf_counter() - t)
    finally:
        rt.cleanup()
    return round(statistics.median(times) * 1000, 2)


def transfer(tree: Path) -> float:
    """ms of the first command after the folder entered the workspace, minus a `true`."""
    settings = dataclasses.replace(load_settings(), image=IMAGE)
    rt = Runtime(use_docker=True, settings=settings)
    try:
        rt.run("true")
        subprocess.run(["cp", "-a", f"{tree}/.", str(rt.workspace)], check=True)
        t = time.perf_counter()
        out = rt.run("find /workspace -type f | wc -l", timeout=600)
        took = time.perf_counter() - t
        assert out.exit_code == 0, out
        count = int(out.stdout.strip())
        t = time.perf_counter()
        rt.run("true")
        idle = time.perf_counter() - t
    finally:
        rt.cleanup()
    return round((took - idle) * 1000, 1), count  # type: ignore[return-value]


def tar_ssh(tree: Path, env: dict[str, str]) -> float:
    target = env["PYGENT_REMOTE_SSH"].removeprefix("ssh://")
    user_host, _, port = target.rpartition(":")
    dest = f"/var/tmp/pygent-bench-{os.getpid()}"
    t = time.perf_counter()
    subprocess.run(
        f"tar -C {tree} -cf - . | ssh -p {port} -o BatchMode=yes {user_host} "
        f"'mkdir -p {dest} && tar -C {dest} -xf -'", shell=True, check=True,
    )
    took = time.perf_counter() - t
    subprocess.run(["ssh", "-p", port, "-o", "BatchMode=yes", user_host, f"rm -rf {dest}"],
                   check=True)
    return round(took * 1000, 1)


def run(commands: int, files: int) -> dict[str, Any]:
    env = engine_env()
    load_before = os.getloadavg()[0]
    report: dict[str, Any] = {"commands": commands, "files": files}
    saved = {k: os.environ.get(k) for k in ("DOCKER_HOST", "PATH")}
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        report["bytes"] = make_tree(tree, files)
        os.environ["PATH"] = f"{ssh_wrapper(env, Path(tmp))}{os.pathsep}{saved['PATH']}"
        try:
            os.environ.pop("DOCKER_HOST", None)
            report["local_ms"] = per_command(commands)
            os.environ["DOCKER_HOST"] = env["PYGENT_REMOTE_TCP"]
            report["tcp_ms"] = per_command(commands)
            report["tcp_transfer_ms"], report["tcp_count"] = transfer(tree)
            os.environ["DOCKER_HOST"] = env["PYGENT_REMOTE_SSH"]
            report["ssh_ms"] = per_command(commands)
            report["ssh_transfer_ms"], report["ssh_count"] = transfer(tree)
            report["tar_ssh_ms"] = tar_ssh(tree, env)
        finally:
            remote.close_tunnels()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    report["cpus"] = os.cpu_count()
    report["load_before"] = round(load_before, 2)
    report["load_after"] = round(os.getloadavg()[0], 2)
    return report


def section(r: dict[str, Any]) -> str:
    local = r["local_ms"]
    base = r["tar_ssh_ms"]
    rows = [
        ("`true`, local engine (workspace mounted; the baseline)", f"{local:.2f} ms", "1.00x"),
        ("`true`, second engine over TCP (workspace transferred)", f"{r['tcp_ms']:.2f} ms",
         f"{r['tcp_ms'] / local:.0f}x"),
        ("`true`, second engine over ssh:// (workspace transferred)", f"{r['ssh_ms']:.2f} ms",
         f"{r['ssh_ms'] / local:.0f}x"),
        (f"{r['files']} files ({r['bytes'] >> 10} KiB) into the workspace: `tar -c \\| ssh "
         "host tar -x` (the baseline)", f"{base:.0f} ms", "1.00x"),
        ("the same folder into the sandbox, over TCP (first command after it)",
         f"{r['tcp_transfer_ms']:.0f} ms", f"{r['tcp_transfer_ms'] / base:.2f}x"),
        ("the same folder into the sandbox, over ssh://", f"{r['ssh_transfer_ms']:.0f} ms",
         f"{r['ssh_transfer_ms'] / base:.2f}x"),
    ]
    return "\n".join([
        f"Medians of {r['commands']} commands; both engines and sshd on this machine "
        f"(loopback: Pygent's overhead, not a network's latency); {r['cpus']} cores, load "
        f"average {r['load_before']} before and {r['load_after']} after (a shared machine).",
        "",
        "| What | Time | Against the baseline |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
    ])


def write_docs(r: dict[str, Any]) -> None:
    replace_block(
        "remote", "bench/bench_remote.py", section(r), heading="## Remote engines",
        intro="`python bench/bench_remote.py --write-docs`: a second Docker engine that cannot "
        "see this machine's folders (.ci/remote-engine-setup.sh), reached over TCP and "
        "over ssh:// (docs/remote.md). Each command of a transferred workspace also lists "
        "/workspace in the container (one `docker exec`) to bring the command's changes back.",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=50)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    report = run(args.commands, args.files)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if args.write_docs:
        write_docs(report)
        print("wrote docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
