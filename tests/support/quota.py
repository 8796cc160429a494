"""Quota-store helpers: a fixed clock, a store over a state database, one reservation, and the
processes the cross-process tests start (and wait for)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from free_llm_agent.config import RateLimit
from free_llm_agent.providers.quota import QuotaStore, Slot, Unavailable
from free_llm_agent.storage.database import StateDatabase

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()
"""'Now' of the window arithmetic tests (a Tuesday, noon UTC)."""


def one_token(_: str) -> int:
    return 1


def store_with(db: StateDatabase, limits: dict[str, RateLimit]) -> QuotaStore:
    """A store whose providers have ``limits`` (no limit for any other name)."""
    return QuotaStore(db, lambda name: limits.get(name) or RateLimit())


def take(store: QuotaStore, now: float, names: tuple[str, ...] = ("p",), max_wait: float = 0) -> Slot | Unavailable:
    """Reserve one request of one token at ``now``."""
    return store.reserve(list(names), one_token, now, max_wait)


def mp_context() -> multiprocessing.context.BaseContext:
    """Fork where available (the children start in milliseconds); spawn elsewhere."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def wait_for(check: Any, what: str, procs: Sequence[Any] = ()) -> None:
    """Poll ``check()`` for up to 60 s (not a timing assert); fail early if a child process failed."""
    deadline = time.time() + 60
    while not check():
        assert time.time() < deadline, f"timed out waiting for {what}"
        assert all(p.exitcode in (None, 0) for p in procs), [p.exitcode for p in procs]
        time.sleep(0.005)
