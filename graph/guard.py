"""Exactly once: one run per thread at a time, and a journal of the task in flight.

* :class:`ThreadLock` — an exclusive ``flock`` on ``HOME/locks/THREAD.lock`` holding the owner's pid.
  A second process gets :class:`ThreadBusy` ("thread X is running (pid N)"); the kernel drops the
  lock of a process that died, so the next one takes it over. Within one process it is re-entrant
  for the same *owner* (a run: the CLI's runner and that run's ``run_task`` node, in another
  thread) and refused to any other owner (a second run of the thread in the same server).
* :class:`TaskJournal` — before a task's code starts, ``HOME/journal/THREAD.json`` records
  ``started`` for that attempt; when it ends, ``finished`` with the result. The checkpoint is
  written only after the node returns, so after a crash the journal tells a resumed ``run_task``
  whether the attempt had finished (its result is reused, the code is not run again) or was
  interrupted (it runs again only after a new approval).

Both live in the home by default (:class:`FileGuards`: one machine). With a PostgreSQL database URL
they live in the database (:class:`graph.guard_pg.PgGuards`): the lock is a session advisory lock,
so it holds across machines and the server drops it when its holder's connection dies, and the
journal is a table, so a thread killed on one machine is resumed on another without running a
finished task again. :func:`open_guards` picks one by the URL's scheme (:data:`GUARD_BACKENDS`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per thread is then the user's job
    fcntl = None  # type: ignore[assignment]

from free_llm_agent.providers.db import translated
from free_llm_agent.tools.workspace import check_thread_id


class ThreadBusy(RuntimeError):
    """Another process is running this thread."""

    def __init__(self, thread_id: str, owner: str) -> None:
        super().__init__(f"thread {thread_id} is running ({owner}); wait for it to finish, or stop it first")
        self.thread_id = thread_id
        self.owner = owner


def _file_name(thread_id: str) -> str:
    try:
        return check_thread_id(thread_id)
    except ValueError:
        return "t-" + hashlib.sha256(thread_id.encode()).hexdigest()[:16]


_held: dict[str, list[Any]] = {}  # lock key -> [handle, depth, owner]
_held_lock = threading.Lock()


def held_here(path: Path) -> bool:
    """Whether this process holds the lock file ``path`` (another flock on it would fail, but not mean stale)."""
    with _held_lock:
        return str(path) in _held


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


class ThreadLock(ReentrantRunLock):
    """``with ThreadLock(home, thread_id):`` — an flock on ``HOME/locks/THREAD.lock`` (module docstring)."""

    def __init__(self, home: Path, thread_id: str, owner: str | None = None) -> None:
        super().__init__(thread_id, owner)
        self.path = home / "locks" / f"{_file_name(thread_id)}.lock"
        self.key = str(self.path)

    def _take(self) -> int:
        with translated(self.path):  # an unwritable home: a message naming the file, not a traceback
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise ThreadBusy(self.thread_id, owner) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder_note().encode(), 0)
        return fd

    def _drop(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        os.close(fd)  # closing drops the flock


class TaskJournal:
    """The attempt in flight of each thread (see module docstring)."""

    def __init__(self, home: Path) -> None:
        self.root = home / "journal"

    def _path(self, thread_id: str) -> Path:
        return self.root / f"{_file_name(thread_id)}.json"

    def get(self, thread_id: str, key: str) -> dict[str, Any] | None:
        """The entry for attempt ``key`` of ``thread_id``, if that attempt was started."""
        try:
            entry = json.loads(self._path(thread_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) and entry.get("key") == key else None

    def _write(self, thread_id: str, entry: dict[str, Any]) -> None:
        path = self._path(thread_id)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with translated(path):
            self.root.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(entry, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)

    def started(self, thread_id: str, key: str, task_id: int) -> None:
        self._write(thread_id, {"key": key, "task_id": task_id, "state": "started", "pid": os.getpid()})

    def finished(self, thread_id: str, key: str, task_id: int, result: dict[str, Any]) -> None:
        self._write(thread_id, {"key": key, "task_id": task_id, "state": "finished", "result": result})

    def clear(self, thread_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(thread_id).unlink()


class FileGuards:
    """The run guards of one machine: lock files and journal entries in the home."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def lock(self, thread_id: str, owner: str | None = None) -> ReentrantRunLock:
        return ThreadLock(self.home, thread_id, owner)

    def journal(self) -> Journal:
        return TaskJournal(self.home)

    def close(self) -> None:
        pass


class Journal(Protocol):
    """The task in flight of each thread (see :class:`TaskJournal`)."""

    def get(self, thread_id: str, key: str) -> dict[str, Any] | None: ...

    def started(self, thread_id: str, key: str, task_id: int) -> None: ...

    def finished(self, thread_id: str, key: str, task_id: int, result: dict[str, Any]) -> None: ...

    def clear(self, thread_id: str) -> None: ...


class RunGuards(Protocol):
    """Where a backend keeps the per-thread run lock and the task journal."""

    def lock(self, thread_id: str, owner: str | None = None) -> ReentrantRunLock: ...

    def journal(self) -> Journal: ...

    def close(self) -> None: ...


def _file_guards(url: str | None, home: Path) -> RunGuards:
    return FileGuards(home)


def _pg_guards(url: str | None, home: Path) -> RunGuards:
    from free_llm_agent.graph.guard_pg import PgGuards

    assert url is not None
    return PgGuards(url)


# Keyed like providers.backends.STATE_BACKENDS: the database URL's scheme picks where the guards live.
GUARD_BACKENDS: dict[str, Callable[[str | None, Path], RunGuards]] = {
    "sqlite": _file_guards, "postgresql": _pg_guards, "postgres": _pg_guards}


def open_guards(url: str | None, home: Path) -> RunGuards:
    """The run guards for ``url`` (None: files in ``home``); a PostgreSQL URL shares them across machines."""
    from free_llm_agent.providers.backends import for_url

    return for_url(GUARD_BACKENDS, url)(url, home)


def attempt_key(task: dict[str, Any], goal: str = "") -> str:
    """Identifies one attempt of one task of one goal: its id, how often it ran, its restarts, its code."""
    text = f"{goal}|{task['id']}|{task.get('attempts', 0)}|{task.get('restarts', 0)}|{task.get('code', '')}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]

