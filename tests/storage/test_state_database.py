"""The state database on each backend: migrated on open, transactions, one writer at a time, the dialect."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from free_llm_agent.storage.database import StateDatabase
from free_llm_agent.storage.registry import open_state

pytestmark = pytest.mark.both_backends

TABLES = ("quota_slots", "quota_periods", "quota_backlog", "cooldowns", "response_cache", "usage_log",
          "usage_daily", "answer_grades", "answer_asks")


@pytest.fixture
def db(url: str | None, store_home: Path) -> Iterator[StateDatabase]:
    state = open_state(url, store_home)
    yield state
    state.close()


def test_a_fresh_database_is_migrated_and_empty(db: StateDatabase) -> None:
    assert db.version >= 1
    for table in TABLES:
        assert db.query(f"SELECT COUNT(*) FROM {table}") == [(0,)], table


def test_opening_again_keeps_the_schema_and_the_rows(db: StateDatabase, url: str | None, store_home: Path) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO cooldowns(provider, until, reason) VALUES (?, ?, ?)", ("p", 5.0, "why"))
    again = open_state(url, store_home)
    try:
        assert again.version == db.version
        assert again.query("SELECT provider, until, reason FROM cooldowns") == [("p", 5.0, "why")]
    finally:
        again.close()


def test_a_transaction_commits_on_success_and_rolls_back_on_error(db: StateDatabase) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO answer_asks(purpose, asks) VALUES (?, ?)", ("kept", 1))
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO answer_asks(purpose, asks) VALUES (?, ?)", ("lost", 1))
        raise RuntimeError("stop")
    assert db.query("SELECT purpose FROM answer_asks ORDER BY purpose") == [("kept",)]


def test_writers_go_one_at_a_time(db: StateDatabase) -> None:
    """Read-modify-write in transactions from two threads loses no update."""
    with db.transaction() as conn:
        conn.execute("INSERT INTO answer_asks(purpose, asks) VALUES ('n', 0)")

    def bump() -> None:
        for _ in range(20):
            with db.transaction() as conn:
                (n,) = conn.execute("SELECT asks FROM answer_asks WHERE purpose = 'n'").fetchone()
                conn.execute("UPDATE answer_asks SET asks = ? WHERE purpose = 'n'", (int(n) + 1,))

    threads = [threading.Thread(target=bump) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.query("SELECT asks FROM answer_asks WHERE purpose = 'n'") == [(40,)]


def test_the_dialect_writes_what_differs(db: StateDatabase) -> None:
    (row,) = db.query(f"SELECT {db.dialect.greatest('2', '7')}, {db.dialect.utc_date('?')}", (86400 * 1.5,))
    assert (int(str(row[0])), row[1]) == (7, "1970-01-02")
