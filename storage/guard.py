"""Exactly once: one run per thread at a time, and a journal of the task in flight (the interfaces).

* the **run lock** (:class:`ReentrantRunLock`) — a second process asking for a thread that is running
  gets :class:`storage.errors.ThreadBusy` naming the holder ("pid N on HOST"); the lock of a process
  that died is taken over by the next one. Within one process it is re-entrant for the same *owner* (a
  run: the CLI's runner and that run's ``run_task`` node, in another thread) and refused to any other
  owner (a second run of the thread in the same server).
* the **task journal** (:class:`Journal`) — before a task's code starts, an entry records ``started``
  for that attempt; when it ends, ``finished`` with the result. The checkpoint is written only after
  the node returns, so after a crash the journal tells a resumed ``run_task`` whether the attempt had
  finished (its result is reused, the code is not run again) or was interrupted (it runs again only
  after a new approval).

:func:`storage.registry.open_guards` gives a backend's :class:`RunGuards`: files in the home (one
machine, :mod:`storage.sqlite.guard`) or the PostgreSQL database (every machine sharing it,
:mod:`storage.postgres.guard`), so a thread killed on one machine is resumed on another without
running a finished task again.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from abc import ABC, abstractmethod
from typing import Any, Literal, Protocol, TypedDict, cast

from free_llm_agent.storage.errors import ThreadBusy

__all__ = ["Journal", "ReentrantRunLock", "RunGuards", "ThreadBusy", "attempt_key", "held_here", "holder_note"]

_held: dict[str, list[Any]] = {}  # lock key -> [handle, depth, owner]
_held_lock = threading.Lock()


def held_here(key: str) -> bool:
    """Whether this process holds the lock ``key`` (a lock file's path: another flock on it would fail, but not
    mean stale)."""
    with _held_lock:
        return key in _held


def holder_note() -> str:
    """What a busy lock tells the next process about its holder."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


class ReentrantRunLock(ABC):
    """The in-process half of a thread lock: re-entrant for one owner, refused to any other.

    Subclasses take and drop the lock between processes (:meth:`_take` raises :class:`ThreadBusy`).
    """

    key: str

    def __init__(self, thread_id: str, owner: str | None = None) -> None:
        self.thread_id = thread_id
        self.owner = owner or f"{os.getpid()}-{threading.get_ident()}-{id(self)}"

    @abstractmethod
    def _take(self) -> Any:
        """Take the lock between processes; its handle (raises :class:`ThreadBusy` when another holds it)."""

    @abstractmethod
    def _drop(self, handle: Any) -> None:
        """Give back what :meth:`_take` took."""

    def _verify(self, handle: Any) -> None:  # optional: a file lock cannot be lost
        """Raise when the lock behind ``handle`` is no longer held."""
        return None

    def check(self) -> None:
        """Before a task's code starts: the lock is still held by this run, or an error says it was lost."""
        with _held_lock:
            entry = _held.get(self.key)
        if entry is None or entry[2] != self.owner:
            raise ThreadBusy(self.thread_id, "this run no longer holds its lock")
        self._verify(entry[0])

    def acquire(self) -> None:
        with _held_lock:
            if self.key in _held:
                if _held[self.key][2] != self.owner:
                    raise ThreadBusy(self.thread_id, f"another run in this process, pid {os.getpid()}")
                _held[self.key][1] += 1
                return
            _held[self.key] = [self._take(), 1, self.owner]

    def release(self) -> None:
        with _held_lock:
            entry = _held.get(self.key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del _held[self.key]
                self._drop(entry[0])

    def __enter__(self) -> ReentrantRunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


JournalState = Literal["started", "finished"]  # the attempt's code started / finished (its result is kept)


class JournalEntry(TypedDict, total=False):
    """One thread's attempt in flight: ``key`` names the attempt (:func:`attempt_key`)."""

    key: str
    task_id: int
    state: JournalState
    pid: int  # who started it
    holder: str  # "pid N on HOST" (PostgreSQL: any machine may read it)
    result: dict[str, Any]  # the executor's result, once finished


def journal_entry(raw: object, key: str) -> JournalEntry | None:
    """``raw`` (a stored entry) when it is a well-formed entry of attempt ``key``; None otherwise (another
    attempt's, or unreadable: the attempt counts as not started)."""
    if not isinstance(raw, dict) or raw.get("key") != key or raw.get("state") not in ("started", "finished"):
        return None
    if raw["state"] == "finished" and not isinstance(raw.get("result"), dict):
        return None
    return cast(JournalEntry, raw)


class Journal(Protocol):
    """The task in flight of each thread: one entry per thread, for its attempt in flight (module docstring)."""

    def get(self, thread_id: str, key: str) -> JournalEntry | None: ...

    def started(self, thread_id: str, key: str, task_id: int) -> None: ...

    def finished(self, thread_id: str, key: str, task_id: int, result: dict[str, Any]) -> None: ...

    def clear(self, thread_id: str) -> None: ...


class RunGuards(Protocol):
    """Where a backend keeps the per-thread run lock and the task journal."""

    def lock(self, thread_id: str, owner: str | None = None) -> ReentrantRunLock: ...

    def holders(self, thread_ids: list[str]) -> dict[str, str]:
        """Which of ``thread_ids`` a process holds the run lock of now (this one or another): thread id ->
        the holder ("pid N on HOST"). Only looks: never takes a lock, so it never delays or refuses a run."""
        ...

    def journal(self) -> Journal: ...

    def close(self) -> None: ...


def attempt_key(task: dict[str, Any], goal: str = "") -> str:
    """Identifies one attempt of one task of one goal: its id, how often it ran, its restarts, its code."""
    text = f"{goal}|{task['id']}|{task.get('attempts', 0)}|{task.get('restarts', 0)}|{task.get('code', '')}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]

