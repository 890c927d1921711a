"""Security figures: runs the adversarial suite and tabulates it, with the kill -9, canary and cost figures.

Usage: python bench/security_figures.py [--full] [--bench] [--skip-tests]

1. ``pytest tests/adversarial --junitxml``: pass / xfail / fail per catalogue case and
   per group (A-H), and the figures the tests print (canary hits, RSS, latencies).
2. The approval figures at policy level: bypass payloads auto-allowed and harmless
   commands auto-approved (tests/test_approval.py's lists, the 500-command corpus).
3. kill -9: bench/results/killnine.json and killnine_agent.json (``--full`` reruns
   them: 200 kills per writer, 50 local and 15 Docker session kills).
4. ``--bench``: the hardening's cost per command: the same shell round trip and a
   fork+exec command in Pygent's hardened container and in a default one.

Writes bench/results/security.json and prints the tables used in docs/security.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "security.json"
#: Cases per group in docs/ADVERSARIAL (the catalogue).
CATALOGUE = {"A": 20, "B": 17, "C": 15, "D": 11, "E": 18, "F": 14, "G": 12, "H": 8}
_IDS = re.compile(r"^test_((?:[A-H]\d+_)+)")


def run_suite(xml: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pytest", "tests/adversarial", "-q", "-p", "no:cacheprovider",
         f"--junitxml={xml}", "-o", "junit_logging=system-out", "-s"],
        cwd=ROOT, check=False,
    )  # fmt: skip
    return time.monotonic() - started


def tabulate(xml: Path) -> dict[str, Any]:
    """Outcomes per test, per catalogue case (``A5``) and per group (``A``)."""
    cases: dict[str, list[str]] = defaultdict(list)
    xfails: dict[str, str] = {}
    printed: list[str] = []
    tests = 0
    for case in ET.parse(xml).getroot().iter("testcase"):
        tests += 1
        name = case.get("name", "")
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "xfail" if child.get("type") == "pytest.xfail" else "skipped"
                if outcome == "xfail":
                    xfails[name] = child.get("message", "")
            elif child.tag == "system-out" and child.text:
                printed += [
                    line for line in child.text.splitlines() if re.match(r"^[A-H]\d+", line)
                ]
        found = _IDS.match(name)
        for ident in found.group(1).strip("_").split("_") if found else []:
            cases[ident].append(outcome)
    groups = {}
    for group, total in CATALOGUE.items():
        ids = [f"{group}{i}" for i in range(1, total + 1)]
        passing = [i for i in ids if cases.get(i) and set(cases[i]) == {"passed"}]
        partly = [i for i in ids if "xfail" in cases.get(i, []) and "failed" not in cases[i]]
        failing = [i for i in ids if "failed" in cases.get(i, [])]
        untested = [i for i in ids if not cases.get(i)]
        groups[group] = {
            "cases": total, "passing": len(passing), "with_xfail": partly,
            "failing": failing, "without_test": untested,
            "tests": sum(len(cases.get(i, [])) for i in ids),
        }  # fmt: skip
    return {"tests": tests, "groups": groups, "xfails": xfails, "printed": printed,
            "cases": {k: v for k, v in sorted(cases.items())}}  # fmt: skip


def approval_figures() -> dict[str, Any]:
    from pygent.policy import Action, Policy
    from tests.adversarial.test_b_approvals import (
        B1,
        B2,
        B3,
        B4,
        B5,
        B6,
        B7,
        B8,
        B10,
        B11,
        _benign_corpus,
        catalogue_policy,
    )
    from tests.test_approval import BYPASSES, HARMLESS_OTHER, HARMLESS_WITH_RULES

    def auto(policy: Policy, cmds: list[str]) -> int:
        return sum(policy.decide("bash", {"cmd": c}).action is Action.ALLOW for c in cmds)

    local, docker = catalogue_policy("local", "auto"), catalogue_policy("docker", "confirm")
    payloads = list(dict.fromkeys([*BYPASSES, *B1, *B2, *B3, *B4, *B5, *B6, *B7, *B8, *B10, *B11]))
    allowed, other = _benign_corpus()
    return {
        "bypass_payloads": len(payloads),
        "bypass_auto_allowed_local_auto": auto(local, payloads),
        "bypass_auto_allowed_docker_confirm": auto(docker, payloads),
        "catalogue_payloads": len(BYPASSES),
        "catalogue_payloads_auto_allowed": auto(local, list(BYPASSES)),
        "harmless_allowed_programs": len(HARMLESS_WITH_RULES),
        "harmless_allowed_programs_auto": auto(local, HARMLESS_WITH_RULES),
        "harmless_other_read_only": len(HARMLESS_OTHER),
        "harmless_other_read_only_auto_local": auto(local, HARMLESS_OTHER),
        "benign_corpus": len(allowed) + len(other),
        "benign_allowed_programs_auto_local": f"{auto(local, allowed)}/{len(allowed)}",
        "benign_all_auto_docker_auto": f"{auto(catalogue_policy('docker', 'auto'), allowed + other)}/{len(allowed) + len(other)}",
        "benign_read_only_mode": f"{auto(Policy.for_mode('read-only', 'local'), allowed + other)}/{len(allowed) + len(other)}",
    }


def killnine_figures(full: bool) -> dict[str, Any]:
    if full:
        subprocess.run([sys.executable, "bench/killnine.py", "200"], cwd=ROOT, check=False)
        for mode, trials in (("local", "50"), ("docker", "15")):
            subprocess.run([sys.executable, "bench/killnine_agent.py", trials, "--mode", mode],
                           cwd=ROOT, check=False)  # fmt: skip
    out: dict[str, Any] = {}
    for name in ("killnine", "killnine_agent"):
        path = ROOT / "bench" / "results" / f"{name}.json"
        if path.exists():
            out[name] = json.loads(path.read_text())
    return out


async def _round_trips(client: Any, cid: str, user: str, n: int) -> dict[str, float]:
    from pygent.runtime.docker_transport import SHELL_COMMAND, ExecStream

    stream = await ExecStream.open(client, cid, SHELL_COMMAND, user=user, workdir="/")
    results = {}
    try:
        for label, cmd in (
            ("echo_round_trip", b"echo x\n"),
            ("fork_exec_ls", b"ls / >/dev/null; echo x\n"),
        ):
            samples = []
            for i in range(n + 20):
                started = time.perf_counter()
                await stream.send(cmd)
                line = await stream.inbox.readline()
                assert line == b"x\n", line
                if i >= 20:
                    samples.append(time.perf_counter() - started)
            results[f"{label}_median_ms"] = round(statistics.median(samples) * 1000, 3)
    finally:
        stream.close()
    return results


def hardening_cost(n: int = 500) -> dict[str, Any]:
    """Per-command cost in Pygent's hardened container and in a default one (same image)."""
    import docker

    from pygent.runtime.docker_backend import DockerBackend, DockerOptions
    from tests.docker_gate import TEST_IMAGE

    client = docker.from_env()

    async def go() -> dict[str, Any]:
        tmp = Path(tempfile.mkdtemp(prefix="pygent-hardening-"))
        backend = DockerBackend(tmp / "ws", DockerOptions(image=TEST_IMAGE, pull=False))
        started = time.perf_counter()
        await backend.start()
        hardened_start = time.perf_counter() - started
        plain = None
        try:
            hardened = await _round_trips(client, str(backend.container_id), backend.user, n)
            started = time.perf_counter()
            plain = client.containers.run(TEST_IMAGE, ["sleep", "3600"], detach=True)
            default_start = time.perf_counter() - started
            default = await _round_trips(client, plain.id, "root", n)
        finally:
            await backend.close()
            if plain is not None:
                plain.remove(force=True)
        return {"hardened": {**hardened, "start_ms": round(hardened_start * 1000)},
                "default_container": {**default, "start_ms": round(default_start * 1000)},
                "n": n}  # fmt: skip

    try:
        return asyncio.run(go())
    finally:
        client.close()


def _print(report: dict[str, Any]) -> None:
    suite = report.get("suite")
    if suite:
        print(f"\nadversarial suite: {suite['tests']} tests in {report['suite_seconds']:.0f}s")
        print(f"{'group':6} {'cases passing':>14} {'tests':>6}  xfail cases")
        for group, g in suite["groups"].items():
            print(f"{group:6} {g['passing']:>8}/{g['cases']:<5} {g['tests']:>6}  {', '.join(g['with_xfail'])}"
                  + (f"  FAILING {g['failing']}" if g["failing"] else "")
                  + (f"  NO TEST {g['without_test']}" if g["without_test"] else ""))  # fmt: skip
        for name, why in suite["xfails"].items():
            print(f"  xfail {name}: {why[:160]}")
        for line in suite["printed"]:
            print(f"  {line[:220]}")
    print("\napprovals:", json.dumps(report["approvals"], indent=1))
    if "hardening" in report:
        print("\nhardening cost:", json.dumps(report["hardening"], indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--full", action="store_true", help="rerun the kill -9 benchmarks at full size"
    )
    parser.add_argument(
        "--bench", action="store_true", help="measure the hardening's per-command cost"
    )
    parser.add_argument("--skip-tests", action="store_true", help="only the non-test figures")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(),
                              "cpus": os.cpu_count(), "platform": platform.platform()}  # fmt: skip
    if not args.skip_tests:
        with tempfile.TemporaryDirectory() as tmp:
            xml = Path(tmp) / "junit.xml"
            report["suite_seconds"] = round(run_suite(xml), 1)
            report["suite"] = tabulate(xml)
    report["approvals"] = approval_figures()
    report["kill9"] = killnine_figures(args.full)
    if args.bench:
        report["hardening"] = hardening_cost()
    elif args.json.exists():  # keep the last measurement
        previous = json.loads(args.json.read_text())
        if "hardening" in previous:
            report["hardening"] = previous["hardening"]
    _print(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    failing = [g for g in report.get("suite", {}).get("groups", {}).values() if g["failing"]]
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
