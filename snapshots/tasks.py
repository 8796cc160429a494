"""Snapshots around each run of a task's code, and what a thread's history says about them.

``run_task`` calls :meth:`Snapshots.before` right before the code runs (before the journal says
"started") and :meth:`Snapshots.after` right after; ``after`` returns the task's change list. After a
crash, the attempt that was cut short has a "before" but no "after": :meth:`Snapshots.after` with
``interrupted=True`` takes it when the thread resumes (or ``undo`` runs), so its changes are known.

A thread's index (``threads/….json``) holds its events, oldest first: one per task attempt
``{"kind": "task", "task", "key", "before", "after", "at", "interrupted"}`` and one per undo
``{"kind": "undo", "task", "tasks", "state", "at", "resumed"}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from free_llm_agent.snapshots.changes import FileChange, compare
from free_llm_agent.snapshots.scan import scan
from free_llm_agent.snapshots.store import Manifest, Store, now


@dataclass
class Snapshots:
    """The snapshot store of one home, for the nodes and the CLI (``skip``: folders never snapshot)."""

    store: Store
    skip: tuple[Path, ...] = ()

    def take(self, thread: str, workdir: Path) -> tuple[str, Manifest]:
        """Snapshot ``workdir`` now (caller holds the store's lock): the manifest's hash and the manifest."""
        root = str(workdir)
        self.store.clear_staging()
        manifest = scan(workdir, self.store, self.store.latest_of(root), thread=thread,
                        skip=(*self.skip, self.store.root))
        sha = self.store.put_manifest(manifest)
        self.store.set_latest(root, sha)
        return sha, manifest

    def before(self, thread: str, task_id: int, key: str, workdir: Path) -> None:
        with self.store.locked():
            sha, _ = self.take(thread, workdir)
            index = self.store.index(thread)
            events = [e for e in index["events"] if not (e.get("key") == key and e.get("after") is None)]
            events.append({"kind": "task", "task": task_id, "key": key, "before": sha, "after": None,
                           "at": now(), "interrupted": False})
            self.store.save_index(thread, {**index, "events": events})

    def after(self, thread: str, key: str, workdir: Path, *, interrupted: bool = False) -> list[FileChange] | None:
        """Close the attempt ``key``: its change list (None: it has no "before" snapshot)."""
        with self.store.locked():
            index = self.store.index(thread)
            event = next((e for e in reversed(index["events"]) if e.get("key") == key), None)
            if event is None or not self.store.has(event["before"]):
                return None
            if event.get("after"):  # closed already (by an undo, an earlier resume, or before a lost checkpoint)
                return compare(self.store, self.store.manifest(event["before"]), self.store.manifest(event["after"]))
            sha, manifest = self.take(thread, workdir)
            event.update(after=sha, interrupted=interrupted or event.get("interrupted", False))
            self.store.save_index(thread, index)
            return compare(self.store, self.store.manifest(event["before"]), manifest)

    def events(self, thread: str) -> list[dict[str, Any]]:
        return list(self.store.index(thread)["events"])

    def record_undo(self, thread: str, task_id: int, tasks: list[int], state: str) -> None:
        with self.store.locked():
            index = self.store.index(thread)
            index["events"].append({"kind": "undo", "task": task_id, "tasks": tasks, "state": state, "at": now(),
                                    "resumed": False})
            self.store.save_index(thread, index)

    def acknowledge_undos(self, thread: str) -> None:
        """``resume`` was told about the undos (and goes on): it does not ask about them again."""
        with self.store.locked():
            index = self.store.index(thread)
            for event in index["events"]:
                if event.get("kind") == "undo":
                    event["resumed"] = True
            self.store.save_index(thread, index)


def undone_tasks(events: list[dict[str, Any]]) -> dict[int, float]:
    """Task id → when it was undone, for tasks undone and not run again since."""
    undone: dict[int, float] = {}
    for event in events:
        if event.get("kind") == "undo":
            undone.update((int(t), float(event["at"])) for t in event["tasks"])
        elif event.get("kind") == "task":
            undone.pop(int(event["task"]), None)
    return undone


def unacknowledged_undos(events: list[dict[str, Any]]) -> list[int]:
    """Tasks undone since the thread last resumed (``resume`` asks before going on)."""
    undone = undone_tasks(events)
    asked = {int(t) for e in events if e.get("kind") == "undo" and not e.get("resumed") for t in e["tasks"]}
    return sorted(t for t in undone if t in asked)


def last_attempt(events: list[dict[str, Any]], task_id: int) -> dict[str, Any] | None:
    return next((e for e in reversed(events) if e.get("kind") == "task" and e["task"] == task_id), None)
