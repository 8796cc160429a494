"""The run guards of one machine: lock files and journal entries in the home (see :mod:`storage.guard`).

* :class:`ThreadLock` — an exclusive ``flock`` on ``HOME/locks/THREAD.lock`` holding the owner's pid.
  A second process gets :class:`storage.errors.ThreadBusy` ("thread X is running (pid N)"); the kernel
  drops the lock of a process that died, so the next one takes it over.
* :class:`TaskJournal` — ``HOME/journal/THREAD.json`` holds the entry of the thread's attempt in flight.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per thread is then the user's job
    fcntl = None  # type: ignore[assignment]

from free_llm_agent.storage.errors import ThreadBusy
from free_llm_agent.storage.guard import Journal, JournalEntry, ReentrantRunLock, holder_note, journal_entry
from free_llm_agent.storage.sqlite.files import translated
from free_llm_agent.tools.workspace import check_thread_id


def file_name(thread_id: str) -> str:
    try:
        return check_thread_id(thread_id)
    except ValueError:
        return "t-" + hashlib.sha256(thread_id.encode()).hexdigest()[:16]


class ThreadLock(ReentrantRunLock):
    """``with ThreadLock(home, thread_id):`` — an flock on ``HOME/locks/THREAD.lock`` (module docstring)."""

    def __init__(self, home: Path, thread_id: str, owner: str | None = None) -> None:
        super().__init__(thread_id, owner)
        self.path = home / "locks" / f"{file_name(thread_id)}.lock"
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
        return self.root / f"{file_name(thread_id)}.json"

    def get(self, thread_id: str, key: str) -> JournalEntry | None:
        """The entry for attempt ``key`` of ``thread_id``, if that attempt was started."""
        try:
            entry = json.loads(self._path(thread_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return journal_entry(entry, key)

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
