"""The launch bench's figures: medians, ratios to the same run's baselines, the Markdown
tables it prints, and the generated block of the "Launch" section of docs/performance.md."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

DOCS_BEGIN = "<!-- launch-figures:begin (written by bench/bench_launch.py --write-docs) -->"
DOCS_END = "<!-- launch-figures:end -->"
LAUNCHED = ("pygent_api", "pygent_oneshot", "pygent_repl", "codex_exec", "codex_exec_native")
TURNS = ("pygent_api_turn", "codex_exec_turn")


def rounded(value: float | list[float]) -> float | list[float]:
    return [round(v, 1) for v in value] if isinstance(value, list) else round(value, 1)


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
        "n": len(values),
        "samples": [round(v, 1) for v in values],
    }


def median(result: dict[str, Any], subject: str, metric: str) -> float | None:
    got = result["subjects"].get(subject, {}).get(metric)
    return got["median"] if got else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    """Every headline figure as a ratio to a baseline measured in the same run."""

    def m(subject: str, metric: str) -> float | None:
        return median(result, subject, metric)

    floor = m("python_c_pass", "exit_ms")
    codex_first, codex_exit = m("codex_exec", "first_request_ms"), m("codex_exec", "exit_ms")
    out: dict[str, Any] = {}
    for s in LAUNCHED:
        out[s] = {
            "first_request_vs_codex": _ratio(m(s, "first_request_ms"), codex_first),
            "first_request_vs_python": _ratio(m(s, "first_request_ms"), floor),
            "exit_vs_codex": _ratio(m(s, "exit_ms"), codex_exit),
            "exit_vs_python": _ratio(m(s, "exit_ms"), floor),
        }
    out["pygent_repl"]["prompt_vs_python"] = _ratio(m("pygent_repl", "prompt_ms"), floor)
    out["per_call_gap_pygent_vs_codex"] = _ratio(
        m("pygent_api_turn", "gaps_ms"), m("codex_exec_turn", "gaps_ms")
    )
    out["tree_peak_rss_pygent_vs_codex"] = _ratio(
        m("pygent_api_turn", "tree_peak_rss_mb"), m("codex_exec_turn", "tree_peak_rss_mb")
    )
    return out


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f} ms"


def _x(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}x"


def table(result: dict[str, Any]) -> str:
    """The figures as two Markdown tables (printed, and written into the docs)."""

    def m(subject: str, metric: str) -> float | None:
        return median(result, subject, metric)

    r, subjects = result["ratios"], result["subjects"]
    floor = m("python_c_pass", "exit_ms")
    lines = [
        "| launch to | first model request | x Codex | x `python -c pass` "
        "| exit | x Codex | x `python -c pass` | last request to exit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| `python -c pass` (start to exit) | – | – | – | {_ms(floor)} | – | 1.00x | – |",
    ]
    for s in LAUNCHED:
        if s not in subjects:
            continue
        first = f"{_ms(m(s, 'first_request_ms'))} | {_x(r[s]['first_request_vs_codex'])} | "
        first += _x(r[s]["first_request_vs_python"])
        if s == "pygent_repl":  # it exits when told to, not after the answer
            prompt = f"prompt at {_ms(m(s, 'prompt_ms'))} ({_x(r[s]['prompt_vs_python'])})"
            rest = f"{prompt} | – | – | Ctrl-D to exit {_ms(m(s, 'quit_ms'))}"
        else:
            rest = f"{_ms(m(s, 'exit_ms'))} | {_x(r[s]['exit_vs_codex'])} | "
            rest += f"{_x(r[s]['exit_vs_python'])} | {_ms(m(s, 'after_last_request_ms'))}"
        lines.append(f"| {subjects[s]['label']} | {first} | {rest} |")
    lines += [
        "",
        "| multi-step turn | between model requests | x Codex | peak RSS, process tree "
        "| x Codex | largest process |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in TURNS:
        if s not in subjects:
            continue
        own = s == "pygent_api_turn"
        gap, tree, big = m(s, "gaps_ms"), m(s, "tree_peak_rss_mb"), m(s, "max_process_rss_mb")
        gap_x = _x(r["per_call_gap_pygent_vs_codex"]) if own else "1.00x"
        tree_x = _x(r["tree_peak_rss_pygent_vs_codex"]) if own else "1.00x"
        lines.append(
            f"| {subjects[s]['label']} | {gap:.1f} ms | {gap_x} | {tree:.0f} MB | {tree_x} "
            f"| {big:.0f} MB |"
        )
    return "\n".join(lines)


def docs_block(result: dict[str, Any]) -> str:
    """The generated part of the docs' Launch section, markers included."""
    codex = result["codex"]
    who = (
        f"Codex CLI {codex['version']} under Node {codex.get('node', '?')}"
        if "version" in codex
        else f"Codex not measured ({codex.get('error', 'skipped')})"
    )
    load = result["load_average_1min"]
    fails = sum(len(v) for v in result["failures"].values())
    head = (
        f"Medians of {result['rounds']} interleaved rounds ({result['steps_in_turn']} gaps a "
        f"round for the multi-step turn), {result['date']}; {who}; {result['machine']}; "
        f"1-minute load average {load[0]} at the start, {load[1]} at the end"
    )
    if fails:
        head += f"; {fails} failed runs left out (see the JSON)"
    return "\n".join(
        [
            DOCS_BEGIN,
            head + ".",
            "",
            table(result),
            "",
            "Raw figures: `bench/results/launch.json`.",
            DOCS_END,
        ]
    )


def write_docs(result: dict[str, Any], docs: Path) -> None:
    """Replace the generated block in ``docs``; the prose around it is left alone."""
    text = docs.read_text(encoding="utf-8")
    start, end = text.find(DOCS_BEGIN), text.find(DOCS_END)
    if start < 0 or end < start:
        raise SystemExit(f"{docs}: no {DOCS_BEGIN!r} ... {DOCS_END!r} block to fill")
    docs.write_text(text[:start] + docs_block(result) + text[end + len(DOCS_END) :], "utf-8")
