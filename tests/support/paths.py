"""Where the repository and its command line are: defined once for every test (and bench/)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository (the checkout under test)."""

RUN_GRAPH = ROOT / "run_graph.py"
"""The CLI's entry script, as the README runs it."""

CLI: tuple[str, ...] = (sys.executable, str(RUN_GRAPH))
"""argv prefix that starts the CLI with this interpreter: ``[*CLI, "--home", h, "run", ...]``."""
