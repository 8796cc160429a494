"""The ledger's counters (migration 2): exact limits across processes, send time, the window's
margin, cost independent of history, first-come-first-served waiting, usage-log rollup.

No timing asserts: processes are ordered with files and the lock's ticket counter, and the cost
of a reservation is measured in SQLite virtual-machine steps, not seconds.

Every test runs on both backends except the ``sqlite_only`` ones, which test SQLite itself (its query
plans and VM steps, the schema-1 ``agent.db`` migration, the lock file beside it); first come, first
served across machines on PostgreSQL is tests/test_postgres_fifo.py.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from free_llm_agent.config import RateLimit, load_config
from free_llm_agent.providers import build_chat_model
from free_llm_agent.providers.quota import QuotaStore, Slot, Unavailable
from free_llm_agent.providers.report import daily_requests
from free_llm_agent.providers.usage import UsageEvent, UsageTracker
from free_llm_agent.storage.database import StateDatabase
from free_llm_agent.storage.registry import open_state, resolve_database_url
from free_llm_agent.storage.sqlite.db import MIGRATIONS, Database
from tests.support.config import ConfigFactory, FakeFactory
from tests.support.quota import T0, mp_context, store_with, take, wait_for

pytestmark = pytest.mark.both_backends
SQLITE_ITSELF = "tests SQLite itself"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDatabase]:
    """The test's state database: ``agent.db`` in a home, or its PostgreSQL database."""
    state = open_state(resolve_database_url(), tmp_path)
    yield state
    state.close()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    yield Database(tmp_path / "agent.db")


# --------------------------------------------------------------------------- exact across processes


def reserve_many(home: str, ready: str, go: str, out: str, tries: int, url: str | None) -> None:
    store = QuotaStore(open_state(url, Path(home)), lambda _: RateLimit(requests_per_day=25))
    Path(ready).touch()
    wait_for(Path(go).exists, "go")
    got = [store.reserve(["p"], lambda _: 1, T0 + i * 0.01, 0) for i in range(tries)]
    Path(out).write_text(json.dumps([g.id for g in got if isinstance(g, Slot)]))


def test_daily_limit_is_exact_across_four_processes_with_counters(tmp_path: Path) -> None:
    """SQLite: four processes on one home; PostgreSQL: four machines (homes) on one database."""
    home, url = tmp_path / "home", resolve_database_url()
    home.mkdir()
    open_state(url, home).close()
    ctx = mp_context()
    procs = [ctx.Process(target=reserve_many, args=(str(home if url is None else tmp_path / f"machine{i}"),  # type: ignore[attr-defined]
                                                    str(tmp_path / f"ready{i}"), str(tmp_path / "go"),
                                                    str(tmp_path / f"out{i}.json"), 20, url)) for i in range(4)]
    for p in procs:
        p.start()
    wait_for(lambda: all((tmp_path / f"ready{i}").exists() for i in range(4)), "children", procs)
    (tmp_path / "go").touch()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    granted = [i for n in range(4) for i in json.loads((tmp_path / f"out{n}.json").read_text())]
    assert len(granted) == 25 == len(set(granted))
    db = open_state(url, home)
    assert db.query("SELECT requests FROM quota_periods WHERE provider='p' AND period='day'") == [(25,)]
    assert QuotaStore(db, lambda _: RateLimit()).counts("p", T0 + 1)["requests_day"] == 25


# --------------------------------------------------------------------------- send time, margin


def test_a_slot_counts_from_when_it_was_sent(db: StateDatabase) -> None:
    store = store_with(db, {"p": RateLimit(requests_per_minute=1)})
    slot = take(store, T0)
    assert isinstance(slot, Slot)
    sent = store.sent(slot, T0 + 10)  # its client took 10 s to get going
    assert sent is not None and sent.at == T0 + 10
    refused = take(store, T0 + 65)
    assert isinstance(refused, Unavailable)
    assert refused.retry_at == pytest.approx(T0 + 70, abs=0.01)  # not T0 + 60
    assert isinstance(take(store, T0 + 69.9), Unavailable)
    store.settle(sent, 5, T0 + 12)
    assert db.query("SELECT ts, tokens FROM quota_slots WHERE id=?", (slot.id,)) == [(T0 + 10, 5)]
    assert isinstance(take(store, T0 + 70.01), Slot)


def test_a_slot_sent_after_midnight_counts_on_the_new_day(db: StateDatabase) -> None:
    store = store_with(db, {"p": RateLimit(requests_per_day=1)})
    midnight = datetime(2026, 3, 11, tzinfo=UTC).timestamp()
    slot = take(store, midnight - 1)
    assert isinstance(slot, Slot)
    store.sent(slot, midnight + 1)
    assert store.counts("p", midnight - 0.5)["requests_day"] == 0
    assert store.counts("p", midnight + 2)["requests_day"] == 1
    assert isinstance(take(store, midnight + 3), Unavailable)
    assert store.counts("p", midnight + 2)["requests_month"] == 1


def test_the_window_keeps_a_margin_for_the_round_trip(db: StateDatabase) -> None:
    store = QuotaStore(db, lambda _: RateLimit(requests_per_minute=2), margin=1.5)
    assert isinstance(take(store, T0), Slot) and isinstance(take(store, T0 + 1), Slot)
    refused = take(store, T0 + 60.5)  # a plain 60 s window would let it go
    assert isinstance(refused, Unavailable)
    assert refused.retry_at == pytest.approx(T0 + 61.5, abs=0.01)
    assert isinstance(take(store, T0 + 61.51), Slot)
    assert store.counts("p", T0 + 60.5)["requests_minute"] == 2  # reports use the 60 s window: T0 is out


def test_the_margin_comes_from_limits_yaml(make_config: ConfigFactory, home: Path) -> None:
    cfg = make_config({"a": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9"}},
                      optimization={"window_margin_seconds": 2.5})
    assert build_chat_model(cfg, home).router.quota.margin == 2.5
    default = make_config({"a": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9"}})
    assert load_config(default).limits.optimization.window_margin_seconds == 1.0


def test_clients_are_built_before_the_slot_and_the_send_is_recorded(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    a, b = fake_server("openai"), fake_server("openai")
    cfg = make_config({"a": {"kind": "openai_compatible", "base_url": a.base_url},
                       "b": {"kind": "groq", "base_url": b.base_url}})
    llm = build_chat_model(cfg, home)
    router, events = llm.router, []
    reserve, sent = router.quota.reserve, router.quota.sent

    def spy_reserve(*args: Any, **kwargs: Any) -> Any:
        events.append(("reserve", sorted(router._clients)))
        return reserve(*args, **kwargs)

    def spy_sent(slot: Slot, now: float) -> Slot | None:
        events.append(("sent", [slot.provider]))
        return sent(slot, now)

    router.quota.reserve, router.quota.sent = spy_reserve, spy_sent  # type: ignore[method-assign]
    assert llm.invoke("hi").response_metadata["provider"] == "a"
    assert events[0][0] == "reserve" and {"a", "b"} <= {k.split("@")[0] for k in events[0][1]}
    assert events[1] == ("sent", ["a"])
    row = router.db.query("SELECT pending FROM quota_slots WHERE provider='a'")
    assert row == [(0,)]  # settled


# --------------------------------------------------------------------------- cost independent of history


def schema1_home(path: Path, rows: list[tuple[str, float, int]]) -> None:
    """A schema-1 agent.db (request rows), as an older version left it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("BEGIN")  # one transaction: row by row, every insert would wait for the disk
    conn.executemany("INSERT INTO requests(provider, ts, tokens) VALUES (?,?,?)", rows)
    conn.execute("COMMIT")
    conn.close()


def steps_of_one_reservation(tmp_path: Path, history: int) -> tuple[int, dict[str, int]]:
    month = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    span = T0 - 300 - month
    schema1_home(tmp_path / "agent.db", [("p", month + span * i / history, 10) for i in range(history)])
    db = Database(tmp_path / "agent.db")
    limit = RateLimit(requests_per_minute=10**6, requests_per_day=10**7, requests_per_month=10**8,
                      tokens_per_minute=10**9, tokens_per_day=10**9)
    store = QuotaStore(db, lambda _: limit)
    store.prune(T0)
    assert isinstance(store.reserve(["p"], lambda _: 1, T0, 0), Slot)  # first use: statements prepared
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    conn = db._conn()
    conn.set_progress_handler(count, 1)
    assert isinstance(store.reserve(["p"], lambda _: 1, T0 + 1, 0), Slot)
    conn.set_progress_handler(None, 1)
    return steps[0], store.counts("p", T0 + 2)


@pytest.mark.sqlite_only(SQLITE_ITSELF + ": VM steps of a reservation after a schema-1 migration")
def test_history_does_not_change_the_work_of_a_reservation(tmp_path: Path) -> None:
    small, counts_small = steps_of_one_reservation(tmp_path / "small", 1_000)
    large, counts_large = steps_of_one_reservation(tmp_path / "large", 50_000)
    assert large == small, (small, large)  # SQLite VM steps: the same, 50x the history
    # and the history was carried over into the counters (2 reserved + the migrated rows)
    assert counts_small["requests_month"] == 1_002 and counts_large["requests_month"] == 50_002
    assert counts_large["tokens_month"] == 500_002
    day = datetime(2026, 3, 10, tzinfo=UTC).timestamp()
    month = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    in_day = sum(1 for i in range(50_000) if month + (T0 - 300 - month) * i / 50_000 >= day)
    assert counts_large["requests_day"] == in_day + 2


@pytest.mark.sqlite_only(SQLITE_ITSELF + ": EXPLAIN QUERY PLAN")
def test_the_queries_use_keys_not_scans(sqlite_db: Database) -> None:
    db = sqlite_db

    def plan(sql: str, params: tuple[Any, ...]) -> str:
        return " ".join(str(r[-1]) for r in db.query(f"EXPLAIN QUERY PLAN {sql}", params))

    assert "SEARCH quota_periods USING PRIMARY KEY (provider=? AND period=? AND start=?)" in plan(
        "SELECT requests, tokens FROM quota_periods WHERE provider=? AND period=? AND start=?", ("p", "day", 0.0))
    recent = plan("SELECT ts, tokens FROM quota_slots WHERE provider=? AND ts>? ORDER BY ts", ("p", 0.0))
    assert "SEARCH quota_slots USING INDEX quota_slots_provider_ts (provider=? AND ts>?)" in recent
    assert "SCAN" not in plan("SELECT MAX(ts) FROM quota_slots WHERE provider=?", ("p",))


def test_the_minute_table_stays_bounded(db: StateDatabase) -> None:
    store = store_with(db, {"p": RateLimit(requests_per_minute=100)})
    for i in range(600):  # ten minutes at one request a second
        slot = take(store, T0 + i)
        assert isinstance(slot, Slot)
        store.settle(slot, 1, T0 + i)
        if i % 100 == 99:
            store.prune(T0 + i)
    assert int(db.query("SELECT COUNT(*) FROM quota_slots")[0][0]) <= 125  # type: ignore[call-overload]
    assert store.counts("p", T0 + 600)["requests_day"] == 600


@pytest.mark.sqlite_only(SQLITE_ITSELF + ": the schema-1 agent.db migration")
def test_migration_keeps_the_current_minute(tmp_path: Path) -> None:
    now = time.time()
    schema1_home(tmp_path / "agent.db", [("p", now - 3600, 7), ("p", now - 20, 3)])
    db = Database(tmp_path / "agent.db")
    assert db.query("SELECT name FROM sqlite_master WHERE name='requests'") == []
    store = QuotaStore(db, lambda _: RateLimit(requests_per_minute=1))
    refused = store.reserve(["p"], lambda _: 1, now, 0)
    assert isinstance(refused, Unavailable)  # the request of 20 s ago still fills the minute
    assert refused.retry_at == pytest.approx(now + 40, abs=0.01)
    assert db.query("SELECT COUNT(*) FROM quota_backlog") == [(0,)]  # folded into the periods


# --------------------------------------------------------------------------- first come, first served


def reserve_on_go(home: str, ready: str, go: str, out: str) -> None:
    store = QuotaStore(Database(Path(home) / "agent.db"), lambda _: RateLimit())
    Path(ready).touch()
    wait_for(Path(go).exists, "go")
    got = store.reserve(["p"], lambda _: 1, T0, 0)
    assert isinstance(got, Slot)
    Path(out).write_text(str(got.id))


@pytest.fixture
def held_db(tmp_path: Path) -> Iterator[Database]:
    yield Database(tmp_path / "home" / "agent.db")


@pytest.mark.sqlite_only(SQLITE_ITSELF + ": the agent.db.lock queue (PostgreSQL: tests/test_postgres_fifo.py)")
def test_waiters_are_served_in_the_order_they_asked(tmp_path: Path, held_db: Database) -> None:
    home, n = tmp_path / "home", 5
    ctx = mp_context()
    files = [(str(tmp_path / f"ready{i}"), str(tmp_path / f"go{i}"), str(tmp_path / f"out{i}")) for i in range(n)]
    procs = [ctx.Process(target=reserve_on_go, args=(str(home), *f)) for f in files]  # type: ignore[attr-defined]
    for p in procs:
        p.start()
    wait_for(lambda: all((tmp_path / f"ready{i}").exists() for i in range(n)), "children", procs)
    order = [3, 0, 4, 1, 2]  # not the order they were started in
    with held_db.lock.held():  # the lock is busy: every child queues
        base = held_db.lock.tickets_taken()
        for k, i in enumerate(order):
            (tmp_path / f"go{i}").touch()
            wait_for(lambda k=k: held_db.lock.tickets_taken() == base + k + 1, f"child {i} to queue", procs)
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * n
    ids = [int((tmp_path / f"out{i}").read_text()) for i in order]
    assert ids == sorted(ids), "slots were granted out of the order they were asked for"


# --------------------------------------------------------------------------- usage log


def test_usage_log_is_rolled_up_and_pruned(make_config: ConfigFactory, home: Path) -> None:
    cfg = make_config({"a": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9"}},
                      optimization={"usage_log_retention_days": 3, "usage_summary_retention_days": 30})
    llm = build_chat_model(cfg, home)
    router, now = llm.router, time.time()
    tracker = UsageTracker(router.db, load_config(cfg))
    ok = UsageEvent("a", "m", "ok", "general", tokens_in=10, tokens_out=5, latency_ms=100)
    for age_days in (40, 10, 5, 5, 0.01):
        tracker.log(ok, now - age_days * 86400)
    tracker.log(UsageEvent("a", "m", "rate_limited", "general"), now - 5 * 86400)
    assert tracker.rollup(now) == 5
    assert router.db.query("SELECT COUNT(*) FROM usage_log") == [(1,)]  # only today's row
    rows = router.db.query("SELECT day, outcome, requests, tokens_in, tokens_out, latency_ms FROM usage_daily"
                           " ORDER BY day, outcome")
    day = lambda age: datetime.fromtimestamp(now - age * 86400, UTC).date().isoformat()  # noqa: E731
    assert rows == [(day(10), "ok", 1, 10, 5, 100.0), (day(5), "ok", 2, 20, 10, 200.0),
                    (day(5), "rate_limited", 1, 0, 0, 0.0)]  # 40 days: past the summaries' retention
    per_day = daily_requests(router, days=30, now=now)["a"]
    assert per_day[day(10)] == 1 and per_day[day(5)] == 3 and per_day[day(0.01)] == 1
    assert tracker.rollup(now) == 0  # nothing left to roll up
