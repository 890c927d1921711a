"""Which cgroup the bubblewrap sandbox's limits go to, on cgroup v1 and v2 layouts.

This machine is cgroup v1 (``stat -fc %T /sys/fs/cgroup`` is ``tmpfs``): the real v1 path
runs in tests/sandboxes/test_bwrap.py::test_limits. The v2 path cannot run here for
real, so these tests check the path choice and the files written on a fake tree (a
folder standing in for /sys/fs/cgroup, with the files the kernel would create).
"""

from __future__ import annotations

from pathlib import Path

from pygent.runtime.bwrap import BwrapOptions, CgroupLimits

OPTIONS = BwrapOptions(pids_limit=77, memory_bytes=300 << 20, cpus=1.5)
V2_FILES = ("pids.max", "memory.max", "memory.swap.max", "cpu.max", "cgroup.procs")


def _limits(root: Path, proc_cgroup: str, name: str = "pygent-bwrap-1-a") -> CgroupLimits:
    class Fake(CgroupLimits):
        ROOT = root

    return Fake(name, OPTIONS, proc_cgroup=proc_cgroup)


def _v2_tree(root: Path, own: str, delegated: str, name: str) -> Path:
    """A unified hierarchy with this process in ``own`` and ``delegated`` enabled below it."""
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    folder = root / own.lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cgroup.subtree_control").write_text(delegated + "\n")
    target = folder / name  # what mkdir would create, with the kernel's files
    target.mkdir()
    for f in V2_FILES:
        (target / f).write_text("max\n")
    return target


def test_v2_with_every_controller_delegated_uses_one_cgroup(tmp_path: Path) -> None:
    target = _v2_tree(tmp_path, "/", "cpu memory pids", "pygent-bwrap-1-a")
    limits = _limits(tmp_path, "0::/\n")
    assert limits.applied == ["pids", "memory", "cpu"]
    assert limits.dirs == [target], "one folder in the unified tree, not one per controller"
    assert (target / "pids.max").read_text() == "77"
    assert (target / "memory.max").read_text() == str(300 << 20)
    assert (target / "memory.swap.max").read_text() == "0"
    assert (target / "cpu.max").read_text() == "150000 100000"
    argv = limits.join_argv()
    assert argv[2].count("cgroup.procs") == 1 and str(target) in argv[2]


def test_v2_joins_only_the_delegated_controllers(tmp_path: Path) -> None:
    target = _v2_tree(tmp_path, "/user.slice/app.scope", "pids", "pygent-bwrap-1-a")
    limits = _limits(tmp_path, "0::/user.slice/app.scope\n")
    assert limits.applied == ["pids"] and limits.dirs == [target]
    assert (target / "memory.max").read_text() == "max\n", "not claimed, not written"


def test_v2_without_delegation_applies_nothing(tmp_path: Path) -> None:
    _v2_tree(tmp_path, "/user.slice/app.scope", "", "pygent-bwrap-1-a")
    limits = _limits(tmp_path, "0::/user.slice/app.scope\n")
    assert limits.applied == [] and limits.dirs == [] and limits.join_argv() == []


def test_v1_uses_each_controllers_own_hierarchy(tmp_path: Path) -> None:
    proc = "12:pids:/job\n11:memory:/job\n10:cpu,cpuacct:/job\n1:name=systemd:/job\n"
    made = {}
    for controller, files in (("pids", ["pids.max"]),
                              ("memory", ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]),
                              ("cpu", ["cpu.cfs_period_us", "cpu.cfs_quota_us"])):
        target = tmp_path / controller / "job" / "pygent-bwrap-1-a"
        target.mkdir(parents=True)
        for f in files:
            (target / f).write_text("-1\n")
        made[controller] = target
    limits = _limits(tmp_path, proc)
    assert limits.applied == ["pids", "memory", "cpu"]
    assert limits.dirs == [made["pids"], made["memory"], made["cpu"]]
    assert (made["memory"] / "memory.memsw.limit_in_bytes").read_text() == str(300 << 20)
    assert (made["cpu"] / "cpu.cfs_quota_us").read_text() == "150000"
