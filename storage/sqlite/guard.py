"""The run guards of one machine: lock files and journal entries in the home (see :mod:`storage.guard`).

* :class:`ThreadLock` — an exclusive ``flock`` on ``HOME/locks/THREAD.lock`` holding the owner's pid.
  A second process gets :class:`storage.errors.ThreadBusy` ("thread X is running (pid N)"); the kernel
  drops the lock of a process that died, so the next one takes it over.
  :func:`lock_holders` tells who holds which lock without taking any (``threads``' ``running``).
* :class:`TaskJournal` — ``HOME/journal/THREAD.json`` holds the entry of the thread's attempt in flight.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per thread is then the user's job
    fcntl = None  # type: ignore[assignment]

from free_llm_agent.storage.errors import ThreadBusy
from free_llm_agent.storage.guard import (
    Journal,
    JournalEntry,
    ReentrantRunLock,
    held_here,
    holder_note,
    journal_entry,
)
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


def lock_holders(locks: list[ThreadLock]) -> dict[str, str]:
    """Which of ``locks`` are held now (thread id -> the holder's note), found without taking any: a lock file
    holds its holder's note only while held (it is emptied when released); the kernel's table of locks
    (Linux: ``/proc/locks``) says whether the note's holder still holds it, or died (kill -9: the note stays,
    the lock is gone). Without that table, the note's pid must be alive on this machine."""
    table = _flocks()
    held: dict[str, str] = {}
    for lock in locks:
        if held_here(lock.key):
            held[lock.thread_id] = holder_note()
            continue
        try:
            note = lock.path.read_text(encoding="utf-8", errors="replace").strip()
            stat = lock.path.stat()
        except OSError:
            continue
        if not note:
            continue
        if table is not None and f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}" in table:
            held[lock.thread_id] = note
        elif (table is None or any(entry.endswith(f":{stat.st_ino}") for entry in table)) and _alive_here(note):
            held[lock.thread_id] = note  # no table, or one naming another device for the file (overlays)
    return held


def _flocks() -> set[str] | None:
    """The files flock-ed now, as ``MAJOR:MINOR:INODE`` (hex device numbers, as the kernel writes them); None
    where the kernel does not say."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            table = fh.read()
    except OSError:
        return None
    return set(re.findall(r"^\d+:\s+FLOCK\s+\S+\s+\S+\s+\S+\s+([0-9a-f]+:[0-9a-f]+:\d+)\s", table, re.MULTILINE))


def _alive_here(note: str) -> bool:
    """Whether the holder's note names a process alive on this machine."""
    found = re.fullmatch(r"pid (\d+) on (.+)", note)
    if found is None or found.group(2) != socket.gethostname():
        return False
    try:
        os.kill(int(found.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


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

    def holders(self, thread_ids: list[str]) -> dict[str, str]:
        return lock_holders([ThreadLock(self.home, thread_id) for thread_id in thread_ids])

    def journal(self) -> Journal:
        return TaskJournal(self.home)

    def close(self) -> None:
        pass
