"""Marked code blocks (``<!-- snippet: NAME … -->`` before a fenced block) in README.md and the docs
site's pages (docs/**/*.md), for the tests that run them as written. A name is unique across them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.paths import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"


def documents() -> list[Path]:
    """README.md and every Markdown page under docs/ (the notes in docs/_new/ are not pages)."""
    pages = sorted(p for p in DOCS.rglob("*.md") if "_new" not in p.relative_to(DOCS).parts)
    return [README, *pages]


def snippet(name: str) -> str:
    pattern = re.compile(rf"<!-- snippet: {re.escape(name)}\b.*?-->\n```\w*\n(.*?)```", re.S)
    found = [(path, match.group(1)) for path in documents() for match in pattern.finditer(path.read_text())]
    where = ", ".join(str(path.relative_to(ROOT)) for path, _ in found)
    assert found, f"no snippet {name!r} in README.md or docs/"
    assert len(found) == 1, f"snippet {name!r} appears {len(found)} times ({where}): give each a unique name"
    return found[0][1]
