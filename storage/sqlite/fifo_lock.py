"""A first-come, first-served write lock shared by every process (and thread) on one machine.

SQLite's busy handler is not fair: a writer that waits sleeps and retries, and a process
that keeps losing the race can wait for seconds while others go again and again. This
lock is a queue of ``fcntl`` byte locks in one file (a CLH queue):

* byte 0 guards the ticket counter kept in the file's first 8 bytes;
* a process takes ticket ``t``, locks its own queue byte ``QUEUE + t`` (mod ``RING``) before
  anyone can see the ticket, then waits for the queue byte of ticket ``t - 1``: only that one
  process is woken when its predecessor is done, so grants follow ticket order;
* byte 1 is the critical section itself: normally free when the predecessor's byte is, it
  keeps two processes out of the section together when a waiter dies in the queue (the OS
  drops a dead process's locks, which would otherwise let its successor in early).

Threads of one process take a :class:`threading.Lock` first (POSIX record locks belong to
the process, not the thread). Where ``fcntl`` does not exist (Windows) the lock is only the
thread lock and SQLite's own locking orders processes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_TICKET, _CRITICAL, _QUEUE, _RING = 0, 1, 16, 1 << 20
# Weak: a lock nobody uses any more closes its file (a process that opens many homes keeps no file of each).
_REGISTRY: weakref.WeakValueDictionary[str, FifoLock] = weakref.WeakValueDictionary()
_REGISTRY_LOCK = threading.Lock()


def fifo_lock(path: Path) -> FifoLock:
    """The process's one lock object for ``path`` (two objects in one process would not exclude each other)."""
    key = str(path.resolve())
    with _REGISTRY_LOCK:
        lock = _REGISTRY.get(key)
        if lock is None:
            lock = FifoLock(path)
            _REGISTRY[key] = lock
        return lock


class FifoLock:
    """``with lock.held(): ...`` — granted in the order it was asked for, across processes.

    Get one with :func:`fifo_lock` (one object per file and process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pid = -1
        self._fd = -1
        self._thread_lock = threading.Lock()

    def __del__(self) -> None:
        # Nobody holds this lock (a holder keeps the object alive), and it is the process's only object for
        # the file: closing its descriptor releases nothing another object relies on.
        if self._fd >= 0 and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def _file(self) -> int:
        if self._pid != os.getpid():  # a forked child: its own file handle and thread lock
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._thread_lock = threading.Lock()
            self._pid = os.getpid()
        return self._fd

    def _take_ticket(self, fd: int) -> int:
        """Take the next ticket and lock its queue byte, atomically."""
        assert fcntl is not None
        fcntl.lockf(fd, fcntl.LOCK_EX, 1, _TICKET)
        try:
            raw = os.pread(fd, 8, 0)
            ticket = int.from_bytes(raw, "little") if len(raw) == 8 else 0
            os.pwrite(fd, (ticket + 1).to_bytes(8, "little"), 0)
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, _QUEUE + ticket % _RING)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, _TICKET)
        return ticket

    def tickets_taken(self) -> int:
        """How many times the lock has been asked for, ever (tests use it to order their waiters)."""
        raw = os.pread(self._file(), 8, 0)
        return int.from_bytes(raw, "little") if len(raw) == 8 else 0

    @contextmanager
    def held(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover - Windows
            with self._thread_lock:
                yield
            return
        fd = self._file()
        with self._thread_lock:
            ticket = self._take_ticket(fd)
            mine = _QUEUE + ticket % _RING
            try:
                if ticket:
                    before = _QUEUE + (ticket - 1) % _RING
                    fcntl.lockf(fd, fcntl.LOCK_EX, 1, before)  # wait for the predecessor only
                    fcntl.lockf(fd, fcntl.LOCK_UN, 1, before)
                fcntl.lockf(fd, fcntl.LOCK_EX, 1, _CRITICAL)
                try:
                    yield
                finally:
                    fcntl.lockf(fd, fcntl.LOCK_UN, 1, _CRITICAL)
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, mine)
