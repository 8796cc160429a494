"""The README's marked code blocks (``<!-- snippet: NAME … -->`` before a fenced block), for the
tests that run them as written."""

from __future__ import annotations

import re

from tests.support.paths import ROOT

README = ROOT / "README.md"


def snippet(name: str) -> str:
    match = re.search(rf"<!-- snippet: {re.escape(name)}\b.*?-->\n```\w*\n(.*?)```", README.read_text(), re.S)
    assert match, f"README.md has no snippet {name!r}"
    return match.group(1)
