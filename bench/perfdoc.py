"""Writing a benchmark's figures into ``docs/performance.md``: the one copy of that code.

Every bench owns one part of the page, in one of two ways:

- a whole section, from its ``## Heading`` to the next ``## `` (:func:`replace_section`);
- a generated block between two markers inside a section whose prose is written by
  hand (:func:`replace_block`): only the block is rewritten, the text around it
  describes the method and stays as it is.

A part that is missing is appended at the end of the page, so a new bench needs no
hand edit to appear.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def _read(page: Path) -> str:
    return page.read_text(encoding="utf-8") if page.exists() else "# Performance\n"


def replace_section(heading: str, section: str, page: Path = PAGE) -> None:
    """Replace the section that starts with ``heading`` (e.g. ``"## Attach"``) by
    ``section`` (which starts with that heading), or append it."""
    text = _read(page)
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.M | re.S)
    body = section.rstrip("\n") + "\n"
    if pattern.search(text):
        text = pattern.sub(lambda _m: body + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + body
    page.write_text(text, encoding="utf-8")


def markers(name: str, script: str) -> tuple[str, str]:
    """The begin and end markers of the block ``name`` written by ``script``."""
    return (f"<!-- {name}-figures:begin (written by {script} --write-docs) -->",
            f"<!-- {name}-figures:end -->")


def replace_block(name: str, script: str, block: str, *, heading: str, intro: str = "",
                  page: Path = PAGE) -> None:
    """Put ``block`` between the markers of ``name``; when they are not on the page yet,
    append ``heading``, ``intro`` and the marked block."""
    begin, end = markers(name, script)
    text = _read(page)
    block = block.replace(begin, "").replace(end, "")  # a block may come with its markers
    marked = f"{begin}\n{block.strip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + marked + rest.split(end, 1)[1]
    else:
        parts = [heading, intro.strip(), marked]
        text = text.rstrip("\n") + "\n\n" + "\n\n".join(p for p in parts if p) + "\n"
    page.write_text(text, encoding="utf-8")


def engine_version() -> str:
    """The Docker engine's version for a report (the figures stand without it)."""
    try:
        import docker

        client = docker.from_env()
        try:
            return str(client.version().get("Version", ""))
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - no engine, no version: said in the report
        return f"unknown ({exc.__class__.__name__})"


def save_results(path: Path, report: dict[str, Any]) -> None:
    """Write a bench's raw figures (``bench/results/<name>.json``) and print them."""
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
