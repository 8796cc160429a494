"""The agent's SQLite state file (quota, cooldowns, response cache, usage log, answer grades).

One file, ``agent.db`` in the home directory, shared by every process. Schema
changes are numbered migrations applied in order and recorded in
``PRAGMA user_version``; never edit a released migration, add a new one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from free_llm_agent.storage.database import Dialect
from free_llm_agent.storage.sqlite.fifo_lock import fifo_lock
from free_llm_agent.storage.sqlite.files import translated

SQLITE = Dialect("sqlite", "MAX", "date({}, 'unixepoch')")
_CHECKPOINT_EVERY = 200  # commits of one connection between two (passive) WAL checkpoints

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
    # 2: per-window counters instead of one row per request, kept forever (providers/quota.py):
    # the minute window's slots, day and month totals per provider and period, and the
    # schema-1 rows carried over per 15 minutes (every timezone's midnight falls on a quarter
    # hour), folded into the totals with each provider's timezone when the store opens. The
    # slots of the last two minutes (and any booked ahead) are kept as they were. Usage log:
    # old rows are rolled up per UTC day (providers/usage.py), so the log stays small.
    """
    CREATE TABLE quota_slots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        provider TEXT NOT NULL,
        ts REAL NOT NULL,              -- when the request was sent (until then: when it may be)
        tokens INTEGER NOT NULL DEFAULT 0,
        day_start REAL,                -- the quota_periods it is counted in (NULL: counted by the backlog)
        month_start REAL,
        pending INTEGER NOT NULL DEFAULT 1   -- 1 until settled
    );
    CREATE INDEX quota_slots_provider_ts ON quota_slots(provider, ts);
    CREATE INDEX quota_slots_ts ON quota_slots(ts);
    CREATE TABLE quota_periods (
        provider TEXT NOT NULL,
        period TEXT NOT NULL,          -- day | month, in the provider's timezone
        start REAL NOT NULL,           -- epoch seconds the period starts
        requests INTEGER NOT NULL DEFAULT 0,
        tokens INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (provider, period, start)
    ) WITHOUT ROWID;
    CREATE TABLE quota_backlog (
        provider TEXT NOT NULL,
        bucket REAL NOT NULL,          -- start of a quarter hour
        requests INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        PRIMARY KEY (provider, bucket)
    ) WITHOUT ROWID;
    INSERT INTO quota_backlog(provider, bucket, requests, tokens)
        SELECT provider, CAST(ts / 900 AS INTEGER) * 900.0, COUNT(*), COALESCE(SUM(tokens), 0)
        FROM requests GROUP BY 1, 2;
    INSERT INTO quota_slots(provider, ts, tokens, pending)
        SELECT provider, ts, tokens, 0 FROM requests
        WHERE ts > (julianday('now') - 2440587.5) * 86400.0 - 120;
    DROP TABLE requests;
    CREATE INDEX usage_log_ts ON usage_log(ts);
    CREATE TABLE usage_daily (
        day TEXT NOT NULL,             -- UTC date, YYYY-MM-DD
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        task_type TEXT NOT NULL,
        outcome TEXT NOT NULL,
        cached INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        tokens_in INTEGER NOT NULL,
        tokens_out INTEGER NOT NULL,
        latency_ms REAL NOT NULL,      -- the sum: divide by requests for the mean
        PRIMARY KEY (day, provider, model, task_type, outcome, cached)
    ) WITHOUT ROWID;
    """,
    # 3: how usable each provider's answers are per purpose (providers/answers.py): the last grades per
    # provider × purpose (usable at once | repaired | unusable), and the answers graded per purpose.
    """
    CREATE TABLE answer_grades (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        provider TEXT NOT NULL,
        purpose TEXT NOT NULL,         -- plan | code | reflect (the node's)
        outcome TEXT NOT NULL          -- usable | repaired | unusable
    );
    CREATE INDEX answer_grades_purpose_provider ON answer_grades(purpose, provider, id);
    CREATE TABLE answer_asks (
        purpose TEXT PRIMARY KEY,
        asks INTEGER NOT NULL DEFAULT 0
    );
    """,
)


class Database:
    """Thread-local connections to one SQLite file in WAL mode, migrated on open.

    Writers take the file's first-come, first-served lock (``agent.db.lock`` beside it, see
    :mod:`storage.sqlite.fifo_lock`) before ``BEGIN IMMEDIATE``: SQLite's busy handler alone lets
    a process wait for seconds while others write again and again."""

    dialect: Dialect = SQLITE

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []  # every thread's connection, for close()
        self._generation = 0  # close() starts a new one: a thread's older connection is not used again
        self._opened_lock = threading.Lock()
        with translated(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            self.lock = fifo_lock(path.with_name(path.name + ".lock"))
        with self.transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
        self.version = max(version, len(MIGRATIONS))  # > len(MIGRATIONS): made by a newer version

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "generation", -1) != self._generation:
            # check_same_thread=False only so that close() can close it; one thread uses it
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run outside the write lock (transaction)
            self._local.conn = conn
            self._local.commits = 0
            with self._opened_lock:
                self._local.generation = self._generation
                self._opened.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: one writer at a time across processes.

        A damaged or unwritable file raises :class:`storage.errors.StateFileError`; nothing is written then.
        """
        with translated(self.path):
            with self.lock.held():
                conn = self._conn()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            # SQLite's automatic checkpoint would run inside the commit, holding up every waiter (its
            # fsync can take tens of ms). A passive one here copies the WAL back without blocking anyone.
            self._local.commits += 1
            if self._local.commits % _CHECKPOINT_EVERY == 0:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        """Close every thread's connection (a thread that uses the database again gets a new one)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
            self._generation += 1
        for conn in opened:
            with suppress(sqlite3.Error):
                conn.close()

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with translated(self.path):
            return self._conn().execute(sql, params).fetchall()
