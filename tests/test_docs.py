"""The README fits on a page and the docs site builds: ``mkdocs build --strict`` (broken links and anchors
fail it), the README's relative links point at files that exist, every page is in the navigation, and the
docs' copy of the README's Python snippet is the tested one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.paths import ROOT
from tests.support.readme import DOCS, README, documents, snippet

README_MAX_LINES = 250
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def nav_pages(nav: Any) -> list[str]:
    """Every page file named in mkdocs.yml's nav, however nested."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def mkdocs_config() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "mkdocs.yml").read_text())  # no !!python tags in ours
    assert isinstance(loaded, dict)
    return loaded


def test_the_readme_fits_on_a_page() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, (f"README.md has {lines} lines: keep it to {README_MAX_LINES} "
                                       "and move the rest to docs/")


def test_the_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # the theme's end-of-life banner
    assert done.returncode == 0, done.stderr[-4000:]
    assert (site / "index.html").is_file() and (site / "cli" / "index.html").is_file()
    assert not (site / "_new").exists()  # helpers' notes are not published


def test_every_relative_link_in_the_readme_points_to_a_file() -> None:
    targets = [t for t in LINK.findall(README.read_text()) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]
    assert any(t.startswith("docs/") for t in targets)  # the README links into the site
    missing = [t for t in targets if not (ROOT / t.split("#")[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_every_page_in_docs_is_in_the_nav() -> None:
    config = mkdocs_config()
    assert config["docs_dir"] == "docs" and config["theme"]["font"] is False
    listed = nav_pages(config["nav"])
    pages = {str(p.relative_to(DOCS)) for p in documents() if p != README}
    assert sorted(pages - set(listed)) == [], "pages missing from mkdocs.yml's nav"
    assert sorted(set(listed) - pages) == [], "nav entries without a page"


@pytest.mark.parametrize("name", ["python-api", "langgraph-sdk"])
def test_each_tested_snippet_is_found_once(name: str) -> None:
    assert snippet(name).strip()


def test_the_python_api_page_shows_the_tested_snippet() -> None:
    assert snippet("python-api") in (DOCS / "python-api.md").read_text()
