"""The quota ledger on PostgreSQL: one round trip per operation, a lock per provider, old versions kept out.

A reservation, a send, a settle and a release are each one statement (a stored function) on the wire: the
client's protocol trace shows one ReadyForQuery per operation. Reservations for one provider queue on that
provider's lock and do not hold back another provider's; a process of a version from before the functions
(which takes the ledger's one lock exclusively for every write) and this one never write at the same time.
The window arithmetic itself runs on both backends in tests/storage/test_stores.py and tests/test_quota*.py.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from free_llm_agent.config import RateLimit
from free_llm_agent.providers.quota import QuotaStore, Slot
from free_llm_agent.storage.postgres.db import LOCK_KEY, PgDatabase
from tests.support.quota import wait_for

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def db(postgres_url: str) -> Iterator[PgDatabase]:
    state = PgDatabase(postgres_url, max_size=1)  # one connection: its trace is every round trip
    yield state
    state.close()


def store_of(db: PgDatabase) -> QuotaStore:
    return QuotaStore(db, lambda _name: RateLimit(requests_per_minute=1000, requests_per_day=10_000,
                                                  tokens_per_day=10**9))


def round_trips(db: PgDatabase, operation: Callable[[], object]) -> int:
    """How many times the server said it was ready for the next query while ``operation`` ran."""
    fd, name = tempfile.mkstemp(prefix="fla-pg-trace-")
    try:
        with db.pool.connection() as conn:
            conn.pgconn.trace(fd)
            conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)
        operation()
        with db.pool.connection() as conn:
            conn.pgconn.untrace()
        return sum("\tReadyForQuery\t" in line for line in Path(name).read_text().splitlines())
    finally:
        os.close(fd)
        os.unlink(name)


def lock_waiters(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock'").fetchone()
    return int(row[0]) if row else 0


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(work()), daemon=True)
    thread.start()
    return thread, got


def test_reserve_send_settle_and_release_are_one_round_trip_each(db: PgDatabase) -> None:
    store = store_of(db)

    def request(at: float, release: bool = False) -> None:
        slot = store.reserve(["p"], lambda _: 10, at, 0)
        assert isinstance(slot, Slot)
        if release:
            store.release(slot)
            return
        sent = store.sent(slot, at)
        assert sent is not None
        store.settle(sent, 12, at)

    for i in range(8):  # psycopg prepares a statement the 5th time it runs (one more round trip, once)
        request(T0 + i)
        request(T0 + i, release=True)
    got: list[object] = []
    assert round_trips(db, lambda: got.append(store.reserve(["p"], lambda _: 10, T0 + 20, 0))) == 1
    slot = got[-1]
    assert isinstance(slot, Slot)
    assert round_trips(db, lambda: got.append(store.sent(slot, T0 + 20))) == 1
    assert got[-1] == Slot(id=slot.id, provider="p", at=T0 + 20)
    assert round_trips(db, lambda: store.settle(slot, 12, T0 + 20)) == 1
    other = store.reserve(["p"], lambda _: 10, T0 + 21, 0)
    assert isinstance(other, Slot)
    assert round_trips(db, lambda: store.release(other)) == 1
    counts = store.counts("p", T0 + 21)
    assert (counts["requests_day"], counts["tokens_day"]) == (9, 9 * 12)  # the released ones are not counted


def test_a_provider_being_reserved_does_not_hold_back_another(postgres_url: str, tmp_path: Path) -> None:
    first, second = PgDatabase(postgres_url), PgDatabase(postgres_url)
    try:
        with psycopg.connect(postgres_url) as holder, holder.transaction():
            holder.execute("SELECT fla_quota_lock(ARRAY['p'])")  # what a reservation for p holds
            other, got_other = in_thread(lambda: store_of(first).reserve(["q"], lambda _: 1, T0, 0))
            other.join(timeout=60)
            assert not other.is_alive() and isinstance(got_other[0], Slot)
            waiting, got = in_thread(lambda: store_of(second).reserve(["p"], lambda _: 1, T0, 0))
            wait_for(lambda: lock_waiters(postgres_url) == 1, "the reservation for p to wait for p's lock")
            assert waiting.is_alive() and not got
        waiting.join(timeout=60)
        assert isinstance(got[0], Slot) and got[0].provider == "p"
    finally:
        first.close()
        second.close()


def test_an_older_version_writing_the_ledger_holds_reservations_back(postgres_url: str) -> None:
    """Before the stored functions every write took the ledger's one lock exclusively; such a process still
    excludes this version's reservations, so machines mid-upgrade never book a slot twice."""
    db = PgDatabase(postgres_url)
    try:
        with psycopg.connect(postgres_url) as old, old.transaction():
            old.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            waiting, got = in_thread(lambda: store_of(db).reserve(["p"], lambda _: 1, T0, 0))
            wait_for(lambda: lock_waiters(postgres_url) == 1, "the reservation to wait for the old version")
            assert waiting.is_alive() and not got
        waiting.join(timeout=60)
        assert isinstance(got[0], Slot)
    finally:
        db.close()


def test_candidates_in_opposite_orders_never_deadlock(postgres_url: str) -> None:
    """Two reservations over the same two providers, listed in opposite orders, while other writers hold each
    provider: taken in the order listed, the first would hold a and wait for b, the second hold b and wait
    for a (the server then aborts one with a deadlock error). Both get their slots."""
    dbs = [PgDatabase(postgres_url), PgDatabase(postgres_url)]
    busy = RateLimit(requests_per_day=1)  # a full: whoever holds both locks books b
    errors: list[BaseException] = []

    def reserve(db: PgDatabase, names: list[str]) -> object:
        try:
            return QuotaStore(db, lambda _name: busy).reserve(names, lambda _: 1, T0 + 1, 0)
        except BaseException as exc:  # reported below
            errors.append(exc)
            return exc

    try:
        assert isinstance(QuotaStore(dbs[0], lambda _name: busy).reserve(["a"], lambda _: 1, T0, 0), Slot)
        with psycopg.connect(postgres_url) as on_b, psycopg.connect(postgres_url) as on_a:
            on_b.execute("SELECT fla_quota_lock(ARRAY['b'])")
            on_a.execute("SELECT fla_quota_lock(ARRAY['a'])")
            first, got_first = in_thread(lambda: reserve(dbs[0], ["a", "b"]))
            wait_for(lambda: lock_waiters(postgres_url) == 1, "the first reservation to wait")
            second, got_second = in_thread(lambda: reserve(dbs[1], ["b", "a"]))
            wait_for(lambda: lock_waiters(postgres_url) == 2, "the second reservation to wait")
            on_a.commit()
            on_b.commit()
        for t in (first, second):
            t.join(timeout=60)
        assert errors == []
        results = [*got_first, *got_second]
        assert sorted(type(r).__name__ for r in results) == ["Slot", "Unavailable"]  # b booked once, then full
        assert [r.provider for r in results if isinstance(r, Slot)] == ["b"]
    finally:
        for db in dbs:
            db.close()


def test_connections_are_lent_in_a_process_with_over_a_thousand_open_files(postgres_url: str) -> None:
    """The pool looks at a lent connection's socket without waiting (is the server saying something?): that
    works for descriptors past 1023 too, where select() cannot look."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1200
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"this process may open only {hard} files")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        db = PgDatabase(postgres_url, max_size=1)
        try:
            with db.pool.connection() as conn:
                assert conn.pgconn.socket > 1023
            store = store_of(db)
            assert isinstance(store.reserve(["p"], lambda _: 1, T0, 0), Slot)
            assert isinstance(store.reserve(["p"], lambda _: 1, T0 + 1, 0), Slot)
        finally:
            db.close()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
