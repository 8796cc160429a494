"""The agent's state in PostgreSQL: the same tables as ``agent.db``, shared by many machines.

:class:`PgDatabase` has the interface of :class:`storage.database.StateDatabase` (``transaction()``,
``query()``, ``dialect``), as ``agent.db`` has, so the quota ledger, response cache and usage log run their
portable SQL on either backend. Placeholders are written ``?`` and turned into ``%s`` here.

The quota ledger's operations are stored functions (migration 4, :mod:`.quota_sql`), each called
as one statement (:meth:`PgDatabase.call`): one round trip per reservation, serialized per provider
by that provider's advisory lock. The other stores' write transactions (``transaction()``) go one at
a time across every machine behind :data:`WRITE_KEY` (``pg_advisory_xact_lock``), and hold the
ledger's old lock (:data:`LOCK_KEY`) shared, as the functions do: a process of an older version, which
takes that lock exclusively for every write, never writes at the same time as this one. PostgreSQL
queues lock waiters in arrival order (a new request that conflicts with a queued one waits behind it),
so waiting stays first come, first served across machines.

Connections are in autocommit mode (a statement outside ``transaction()`` is its own transaction, one
round trip) and are checked when lent only if the server has sent something since they were last used
(a restart or a terminated session: the socket is readable), so a healthy connection costs no ping.

Schema changes are numbered :data:`MIGRATIONS`, applied in order under the same lock and
recorded in ``schema_version``; never edit a released one, add a new one.
"""

from __future__ import annotations

import re
import select
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from free_llm_agent.storage import advisory_keys
from free_llm_agent.storage.database import Dialect
from free_llm_agent.storage.errors import StateUnavailable
from free_llm_agent.storage.postgres.quota_sql import MIGRATION_4_QUOTA_FUNCTIONS
from free_llm_agent.storage.urls import password, redacted

POSTGRES = Dialect("postgresql", "GREATEST", "to_char(to_timestamp({}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
LOCK_KEY = advisory_keys.LEDGER_LOCK
WRITE_KEY = advisory_keys.STATE_WRITE
_PLACEHOLDER = re.compile(r"\?")

MIGRATIONS: tuple[str, ...] = (
    # 1: the SQLite schema as of its migration 2 (storage/sqlite/db.py), in PostgreSQL types.
    """
    CREATE TABLE quota_slots (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        provider TEXT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        tokens BIGINT NOT NULL DEFAULT 0,
        day_start DOUBLE PRECISION,
        month_start DOUBLE PRECISION,
        pending INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX quota_slots_provider_ts ON quota_slots(provider, ts);
    CREATE INDEX quota_slots_ts ON quota_slots(ts);
    CREATE TABLE quota_periods (
        provider TEXT NOT NULL,
        period TEXT NOT NULL,
        start DOUBLE PRECISION NOT NULL,
        requests BIGINT NOT NULL DEFAULT 0,
        tokens BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (provider, period, start)
    );
    CREATE TABLE quota_backlog (
        provider TEXT NOT NULL,
        bucket DOUBLE PRECISION NOT NULL,
        requests BIGINT NOT NULL,
        tokens BIGINT NOT NULL,
        PRIMARY KEY (provider, bucket)
    );
    CREATE TABLE cooldowns (
        provider TEXT PRIMARY KEY,
        until DOUBLE PRECISION NOT NULL DEFAULT 0,
        reason TEXT NOT NULL DEFAULT '',
        failures INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE response_cache (
        key TEXT PRIMARY KEY,
        created DOUBLE PRECISION NOT NULL,
        message TEXT NOT NULL
    );
    CREATE TABLE usage_log (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        task_type TEXT NOT NULL DEFAULT '',
        tokens_in BIGINT NOT NULL DEFAULT 0,
        tokens_out BIGINT NOT NULL DEFAULT 0,
        latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
        outcome TEXT NOT NULL,
        cached INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX usage_log_provider_ts ON usage_log(provider, ts);
    CREATE INDEX usage_log_ts ON usage_log(ts);
    CREATE TABLE usage_daily (
        day TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        task_type TEXT NOT NULL,
        outcome TEXT NOT NULL,
        cached INTEGER NOT NULL,
        requests BIGINT NOT NULL,
        tokens_in BIGINT NOT NULL,
        tokens_out BIGINT NOT NULL,
        latency_ms DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (day, provider, model, task_type, outcome, cached)
    );
    """,
    # 2: the run guards of every machine (storage/postgres/guard.py): who holds each thread's run lock
    # (the lock itself is a session advisory lock), and each thread's task in flight.
    """
    CREATE TABLE run_locks (
        thread_id TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        since DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE task_journal (
        thread_id TEXT PRIMARY KEY,
        entry TEXT NOT NULL,
        updated DOUBLE PRECISION NOT NULL
    );
    """,
    # 3: the answer grades (SQLite's migration 3, providers/answers.py).
    """
    CREATE TABLE answer_grades (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        provider TEXT NOT NULL,
        purpose TEXT NOT NULL,
        outcome TEXT NOT NULL
    );
    CREATE INDEX answer_grades_purpose_provider ON answer_grades(purpose, provider, id);
    CREATE TABLE answer_asks (
        purpose TEXT PRIMARY KEY,
        asks BIGINT NOT NULL DEFAULT 0
    );
    """,
    # 4: the quota ledger's reserve, sent, settle and release as stored functions, one round trip each,
    # locked per provider (storage/postgres/quota_sql.py, called by providers/quota_pg.py).
    MIGRATION_4_QUOTA_FUNCTIONS,
)


def _sql(sql: str) -> str:
    return _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))


def statements(script: str) -> Iterator[str]:
    """The statements of a migration script: split on ``;`` outside ``$$``-quoted function bodies."""
    current = ""
    for number, part in enumerate(script.split("$$")):
        if number % 2:  # inside a body
            current += f"$${part}$$"
            continue
        first, *rest = part.split(";")
        current += first
        for piece in rest:
            if current.strip():
                yield current
            current = piece
    if current.strip():
        yield current


def _lent(conn: psycopg.Connection[Any]) -> None:
    """The pool's check of a connection it lends: a ping only when the server has said something since the
    connection was last used (an idle connection's socket is readable only if the server closed it or
    terminated the session) — a server restart between two calls still costs no failed call."""
    if _readable(conn.pgconn.socket):
        ConnectionPool.check_connection(conn)


def _readable(fd: int) -> bool:
    """Whether ``fd`` has something to read (or was closed), without waiting: poll() where there is one
    (select() cannot take descriptors above 1023), else select()."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


class _Conn:
    """A psycopg connection inside a transaction, with the sqlite3-style calls the stores make."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(_sql(sql), tuple(params))  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_sql(sql), [tuple(r) for r in rows])  # type: ignore[arg-type]


class PgDatabase:
    """A pool of connections to one PostgreSQL database, migrated on open."""

    dialect: Dialect = POSTGRES

    def __init__(self, url: str, *, max_size: int = 4) -> None:
        self.url = url
        self.label = redacted(url)
        probe(url)
        self.pool = ConnectionPool(url, min_size=1, max_size=max_size, open=True, timeout=60,
                                   kwargs={"connect_timeout": 10, "autocommit": True}, check=_lent)
        try:
            self.pool.wait(timeout=15)  # a server that is down: a message now, not a stall later
        except PoolTimeout as exc:
            self.pool.close()
            raise StateUnavailable(f"cannot connect to the database {self.label}: check --database-url / "
                                   "FREE_AGENT_DATABASE_URL and that the server is running") from exc
        try:
            self.version = self._migrate()
        except BaseException as exc:  # no pool left running, whatever failed
            self.pool.close()
            if isinstance(exc, psycopg.Error):  # e.g. a user without CREATE on a database not migrated yet
                raise StateUnavailable(f"the database {self.label} cannot be set up ({type(exc).__name__}: "
                                       f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'}); "
                                       "check that its user may create and use the agent's tables") from exc
            raise

    def _migrate(self) -> int:
        """Apply the migrations not applied yet; the schema version. A user without CREATE can use a
        database that is migrated already (nothing is created then)."""
        try:
            current = self.query("SELECT MAX(version) FROM schema_version")
        except psycopg.errors.UndefinedTable:
            current = []
        if current and current[0][0] is not None and int(str(current[0][0])) >= len(MIGRATIONS):
            return int(str(current[0][0]))
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version(version) VALUES (?)", (number,))
        return max(version, len(MIGRATIONS))

    @contextmanager
    def transaction(self) -> Iterator[_Conn]:
        """One writer at a time across every machine (:data:`WRITE_KEY`); the quota functions run beside it.
        Quota writes inside it lock their providers too (``SELECT fla_quota_lock(?)``)."""
        with self._translated(), self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock_shared(%s), pg_advisory_xact_lock(%s)", (LOCK_KEY, WRITE_KEY))
            yield _Conn(conn)

    def call(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """One statement as its own transaction, in one round trip (a quota function: it takes its own locks)."""
        with self._translated(), self.pool.connection() as conn:
            return list(conn.execute(_sql(sql), tuple(params)).fetchall())  # type: ignore[arg-type]

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._translated(), self.pool.connection() as conn:
            return list(conn.execute(_sql(sql), params).fetchall())  # type: ignore[arg-type]

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> None:
        """One statement in its own transaction, without the ledger's lock (rows no reservation reads)."""
        with self._translated(), self.pool.connection() as conn:
            conn.execute(_sql(sql), params)  # type: ignore[arg-type]

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """A lost or unreachable server is :class:`StateUnavailable` naming the database, not a traceback."""
        try:
            yield
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StateUnavailable(f"the database {self.label} cannot be used ({type(exc).__name__}: "
                                   f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'}); "
                                   "check that the server is running") from exc

    def close(self) -> None:
        self.pool.close()


def probe(url: str) -> None:
    """Connect once, now: a server that is down, a wrong password or database name, or a malformed URL is
    :class:`StateUnavailable` at once with the server's (or libpq's) reason — not a pool's 15 s wait."""
    try:
        psycopg.connect(url, connect_timeout=10).close()
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        secret = password(url)
        if secret:
            reason = reason.replace(secret, "***")
        raise StateUnavailable(f"cannot connect to the database {redacted(url)} ({reason}): check --database-url / "
                               "FREE_AGENT_DATABASE_URL and that the server is running") from exc
