"""What every quota_throughput worker does, ours or a peer's (stdlib only: runs in either venv).

A worker gets the path of a JSON spec::

    {"providers": [{"name", "base_url", "model", "rpm", "rpd"}, ...],
     "prompts": ["...", ...], "ready": PATH, "go": PATH, "out": PATH, ...}

It builds its client, touches ``ready``, waits until ``go`` exists (the coordinator
starts every worker at once), then sends its prompts one after another, one call
each, and appends one JSON line per call to ``out``: ``{"t": end time, "ok": bool,
"error": class name or null, "seconds": call time}``. It stops at ``deadline`` (in
``go``, epoch seconds) and exits.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    return spec


def run(spec: dict[str, Any], call: Callable[[str], object]) -> None:
    Path(spec["ready"]).write_text("ready")
    go = Path(spec["go"])
    while not go.exists():
        time.sleep(0.01)
    deadline = float(json.loads(go.read_text())["deadline"])
    with Path(spec["out"]).open("a", buffering=1) as out:
        for prompt in spec["prompts"]:
            if time.time() >= deadline:
                break
            start = time.time()
            error = None
            try:
                call(prompt)
            except Exception as exc:
                error = type(exc).__name__
            end = time.time()
            out.write(json.dumps({"t": end, "ok": error is None, "error": error, "seconds": end - start}) + "\n")
