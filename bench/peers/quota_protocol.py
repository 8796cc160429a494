"""What every quota_throughput worker does, ours or a peer's (stdlib only: runs in either venv).

A worker gets the path of a JSON spec::

    {"providers": [{"name", "base_url", "model", "rpm", "rpd"}, ...],
     "prompts": ["...", ...], "ready": PATH, "go": PATH, "out": PATH, ...}

It builds its client, touches ``ready``, waits until ``go`` exists (the coordinator
starts every worker at once), then sends its prompts one after another, one call
each, and appends one JSON line per call to ``out``: ``{"t": end time, "ok": bool,
"error": class name or null, "seconds": call time}``. It stops at ``deadline`` (in
``go``, epoch seconds) and exits.

With ``"queue": PATH`` every worker gets all the prompts and they share one queue: a worker
takes the next unclaimed prompt when it is free (the claim is one byte appended to PATH
under ``flock``), so a worker that waits for quota does not strand a share of its own.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    return spec


def _prompts(spec: dict[str, Any]) -> Iterator[str]:
    """This worker's prompts: its own share, or the next unclaimed ones of the shared queue."""
    prompts: list[str] = spec["prompts"]
    if not spec.get("queue"):
        yield from prompts
        return
    with Path(spec["queue"]).open("ab") as claims:
        while True:
            fcntl.flock(claims, fcntl.LOCK_EX)
            try:
                taken = os.fstat(claims.fileno()).st_size
                if taken < len(prompts):
                    claims.write(b".")
                    claims.flush()
            finally:
                fcntl.flock(claims, fcntl.LOCK_UN)
            if taken >= len(prompts):
                return
            yield prompts[taken]


def run(spec: dict[str, Any], call: Callable[[str], object]) -> None:
    Path(spec["ready"]).write_text("ready")
    go = Path(spec["go"])
    while not go.exists():
        time.sleep(0.01)
    deadline = float(json.loads(go.read_text())["deadline"])
    prompts = _prompts(spec)
    with Path(spec["out"]).open("a", buffering=1) as out:
        while time.time() < deadline:
            prompt = next(prompts, None)
            if prompt is None:
                break
            start = time.time()
            error = None
            try:
                call(prompt)
            except Exception as exc:
                error = type(exc).__name__
            end = time.time()
            out.write(json.dumps({"t": end, "ok": error is None, "error": error, "seconds": end - start}) + "\n")
