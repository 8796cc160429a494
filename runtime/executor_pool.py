"""Warm executors, held by threads and kept for reuse.

A thread holds one executor while it runs (:meth:`ExecutorPool.get`); when its run ends
(:meth:`ExecutorPool.release`) the executor goes back to the pool, still warm, and the next thread
with the same key — working directory, network, sandbox — takes it instead of starting a kernel
(when the run ends, every process its tasks started is killed and fresh kernels start before it is pooled:
see ``reset`` of :class:`tools.isolated_executor.IsolatedExecutor`).
Executors of different keys are never shared. An executor nobody used for ``idle_close_s`` — in the
pool, or held by a thread that paused (awaiting approval, waiting for quota) — is closed by a reaper
thread; a paused thread that continues later gets a new one. ``idle_close_s <= 0`` closes at release.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

_log = logging.getLogger(__name__)

# (working directory, network allowed, sandbox identity)
PoolKey = tuple[str, bool, str]
MAX_IDLE = 4  # idle executors kept at most (the oldest is closed first): each is a worker and its kernels


@dataclass(eq=False)
class _Entry:
    executor: Any
    key: PoolKey
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0  # tasks running on it now: never reaped then


class ExecutorPool:
    def __init__(self, idle_close_s: Callable[[], float]) -> None:
        self._idle_close_s = idle_close_s
        self._held: dict[str, _Entry] = {}
        self._idle: list[_Entry] = []
        self._recycling: list[_Entry] = []  # released, being reset before they are pooled
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._reaper: threading.Thread | None = None

    def get(self, thread: str, key: PoolKey, make: Callable[[], Any], *, start: bool = False) -> Any:
        """``thread``'s executor for ``key``: the one it holds, else a warm one from the pool, else a new one;
        ``start``: have it start warming up now (under the pool's lock: the reaper cannot close it meanwhile)."""
        with self._lock:
            executor = self._checkout(thread, key, make).executor
            begin = getattr(executor, "start", None) if start else None
            if begin is not None:
                begin()
            return executor

    @contextlib.contextmanager
    def using(self, thread: str, key: PoolKey, make: Callable[[], Any]) -> Iterator[Any]:
        """:meth:`get`, marked busy (never reaped) until the block ends."""
        with self._lock:
            entry = self._checkout(thread, key, make)
            entry.busy += 1
        try:
            yield entry.executor
        finally:
            with self._lock:
                entry.busy -= 1
                entry.last_used = time.monotonic()
                self._changed.notify_all()

    def _checkout(self, thread: str, key: PoolKey, make: Callable[[], Any]) -> _Entry:
        closing: list[_Entry] = []
        with self._lock:
            entry = self._held.get(thread)
            if entry is not None and entry.key != key:  # the thread moved (e.g. network turned off)
                closing.append(self._held.pop(thread))
                entry = None
            if entry is None:
                entry = next((e for e in reversed(self._idle) if e.key == key), None)
                if entry is not None:
                    self._idle.remove(entry)  # reset when it was pooled: nothing of the earlier thread is left
                else:
                    entry = _Entry(make(), key)
                self._held[thread] = entry
            entry.last_used = time.monotonic()
            self._start_reaper()
        _close(closing)
        return entry

    def held(self, thread: str) -> Any | None:
        with self._lock:
            entry = self._held.get(thread)
            return entry.executor if entry is not None else None

    def release(self, thread: str) -> None:
        """``thread``'s run is over: its executor goes back to the pool (or is closed: idle time 0), once every
        process of the thread's tasks is gone (``reset``: killed, fresh kernels started)."""
        with self._lock:
            entry = self._held.pop(thread, None)
            if entry is None:
                return
            if self._idle_close_s() <= 0:
                closing = [entry]
            else:
                closing = []
                self._recycling.append(entry)
        if not closing:
            reset = getattr(entry.executor, "reset", None)
            try:
                if reset is not None:
                    reset()
            finally:
                with self._lock:
                    if entry in self._recycling:  # not closed meanwhile (close_all)
                        self._recycling.remove(entry)
                        closing = self._park(entry)
        _close(closing)

    def _park(self, entry: _Entry) -> list[_Entry]:
        """Put ``entry`` in the pool; the entries to close now."""
        if self._idle_close_s() <= 0:
            return [entry]
        entry.last_used = time.monotonic()
        self._idle.append(entry)
        self._changed.notify_all()
        excess = len(self._idle) - MAX_IDLE
        closing = self._idle[:excess] if excess > 0 else []
        del self._idle[: max(0, excess)]
        return closing

    def executors(self) -> list[Any]:
        with self._lock:
            return [e.executor for e in [*self._held.values(), *self._recycling, *self._idle]]

    def close_all(self) -> None:
        with self._lock:
            closing = [*self._held.values(), *self._recycling, *self._idle]
            self._held.clear()
            self._recycling.clear()
            self._idle.clear()
            self._changed.notify_all()
        _close(closing)

    # ------------------------------------------------------------------ the reaper
    def _start_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap, name="fla-executor-reaper", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        while True:
            with self._lock:
                if not self._held and not self._idle:
                    self._reaper = None
                    return
                idle_s = self._idle_close_s()
                now = time.monotonic()
                expired = [e for e in self._idle if now - e.last_used >= idle_s > 0]
                expired += [e for e in self._held.values() if e.busy == 0 and now - e.last_used >= idle_s > 0]
                for entry in expired:
                    self._drop(entry)
                waits = [e.last_used + idle_s - now for e in [*self._idle, *self._held.values()] if e.busy == 0]
                if not expired:
                    self._changed.wait(min([*waits, 60.0]) if idle_s > 0 else 60.0)
            _close(expired)

    def _drop(self, entry: _Entry) -> None:
        if entry in self._idle:
            self._idle.remove(entry)
        for thread, held in list(self._held.items()):
            if held is entry:
                del self._held[thread]


def _close(entries: list[_Entry]) -> None:
    for entry in entries:
        try:
            entry.executor.close()
        except Exception:
            _log.warning("closing an executor failed", exc_info=True)
