"""The sandbox tests' shared pieces: whether bubblewrap works here, a plan's type, and waiting for
processes (a task's leftovers) to be gone."""

from __future__ import annotations

import time

import psutil
import pytest

from free_llm_agent.tools.sandbox import probe

SANDBOX = probe()[0]
needs_sandbox = pytest.mark.skipif(not SANDBOX, reason=f"no bubblewrap sandbox here: {probe()[1]}")
Plan = tuple[tuple[str, str], ...]
"""(task description, the code the fake model writes for it) per task."""


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def gone(procs: list[psutil.Process], within: float = 30) -> list[psutil.Process]:
    """Wait (a bounded poll, not a timing assert) until ``procs`` are gone; return the survivors."""
    deadline = time.monotonic() + within
    while alive(procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive(procs)


def with_cmdline(token: str) -> list[psutil.Process]:
    """The processes whose command line holds ``token``."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if token in " ".join(p.info["cmdline"] or []):
            found.append(p)
    return found
