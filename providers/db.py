"""The agent's SQLite state file (quota, cooldowns, response cache, usage log).

One file, ``agent.db`` in the home directory, shared by every process. Schema
changes are numbered migrations applied in order and recorded in
``PRAGMA user_version``; never edit a released migration, add a new one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MIGRATIONS: tuple[str, ...] = (
    # 1: quota reservations, cooldowns, response cache, usage log
    """
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        provider TEXT NOT NULL,
        ts REAL NOT NULL,          -- epoch seconds the request is (or will be) sent
        tokens INTEGER NOT NULL DEFAULT 0   -- estimate until settled with the real usage
    );
    CREATE INDEX requests_provider_ts ON requests(provider, ts);
    CREATE TABLE cooldowns (
        provider TEXT PRIMARY KEY,
        until REAL NOT NULL DEFAULT 0,
        reason TEXT NOT NULL DEFAULT '',
        failures INTEGER NOT NULL DEFAULT 0  -- consecutive transient failures
    );
    CREATE TABLE response_cache (
        key TEXT PRIMARY KEY,
        created REAL NOT NULL,
        message TEXT NOT NULL
    );
    CREATE TABLE usage_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        task_type TEXT NOT NULL DEFAULT '',
        tokens_in INTEGER NOT NULL DEFAULT 0,
        tokens_out INTEGER NOT NULL DEFAULT 0,
        latency_ms REAL NOT NULL DEFAULT 0,
        outcome TEXT NOT NULL,     -- ok | rate_limited | auth | error
        cached INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX usage_log_provider_ts ON usage_log(provider, ts);
    """,
)


class Database:
    """Thread-local connections to one SQLite file in WAL mode, migrated on open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: one writer at a time across processes."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        return self._conn().execute(sql, params).fetchall()
