"""Snapshots of the working directory around every task: the change list of each task, its diff, and undo.

Content-addressed, in the home of the machine that has the working directory (``HOME/snapshots``), on
either storage backend. See :mod:`snapshots.store` (layout, caps), :mod:`snapshots.scan` (what is and is
not stored), :mod:`snapshots.tasks` (around a task), :mod:`snapshots.undo` (putting a folder back).
"""

from __future__ import annotations

from pathlib import Path

from free_llm_agent.snapshots.changes import FileChange, compare, describe, describe_all, human_size, unified
from free_llm_agent.snapshots.store import Store
from free_llm_agent.snapshots.tasks import Snapshots

__all__ = ["FileChange", "Snapshots", "Store", "compare", "describe", "describe_all", "human_size", "open_snapshots",
           "unified"]


def open_snapshots(home: Path, *, max_file_mb: float = 50, max_total_mb: float = 2048) -> Snapshots:
    """The snapshots of ``home`` (``HOME/snapshots``) with its caps; the home itself is never snapshot."""
    store = Store(home / "snapshots", max_file_bytes=int(max_file_mb * (1 << 20)),
                  max_total_bytes=int(max_total_mb * (1 << 20)))
    return Snapshots(store, skip=(home,))
