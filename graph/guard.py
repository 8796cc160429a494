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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per thread is then the user's job
    fcntl = None  # type: ignore[assignment]

from providers.db import translated
from tools.workspace import check_thread_id


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


_held: dict[str, list[Any]] = {}  # lock path -> [fd, depth, owner]
_held_lock = threading.Lock()


def held_here(path: Path) -> bool:
    """Whether this process holds the lock file ``path`` (another flock on it would fail, but not mean stale)."""
    with _held_lock:
        return str(path) in _held


class ThreadLock:
    """``with ThreadLock(home, thread_id):`` — see module docstring."""

    def __init__(self, home: Path, thread_id: str, owner: str | None = None) -> None:
        self.thread_id = thread_id
        self.owner = owner or f"{os.getpid()}-{threading.get_ident()}-{id(self)}"
        self.path = home / "locks" / f"{_file_name(thread_id)}.lock"

    def acquire(self) -> None:
        key = str(self.path)
        with _held_lock:
            if key in _held:
                if _held[key][2] != self.owner:
                    raise ThreadBusy(self.thread_id, f"another run in this process, pid {os.getpid()}")
                _held[key][1] += 1
                return
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
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
            _held[key] = [fd, 1, self.owner]

    def release(self) -> None:
        key = str(self.path)
        with _held_lock:
            entry = _held.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                os.ftruncate(entry[0], 0)
                os.close(entry[0])  # closing drops the flock

    def __enter__(self) -> ThreadLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


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


def attempt_key(task: dict[str, Any], goal: str = "") -> str:
    """Identifies one attempt of one task of one goal: its id, how often it ran, its restarts, its code."""
    text = f"{goal}|{task['id']}|{task.get('attempts', 0)}|{task.get('restarts', 0)}|{task.get('code', '')}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]

