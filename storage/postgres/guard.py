"""The run guards in PostgreSQL: one thread lock and one task journal for every machine (see :mod:`storage.guard`).

* :class:`PgThreadLock` — a session-level advisory lock (``pg_try_advisory_lock``) on a connection
  of its own, held for the whole run. A run on any machine that asks for the same thread gets
  :class:`storage.errors.ThreadBusy` naming the holder (``run_locks`` keeps "pid N on HOST"). The
  server drops the lock when the holder's connection ends: at once when its process dies
  (``kill -9`` closes the socket), and within about a minute when its machine vanishes (the
  session's TCP keepalives), so the next machine takes the thread over.
  :meth:`PgGuards.holders` reads ``pg_locks`` (it never takes a lock) to tell which threads are running.
* :class:`PgTaskJournal` — the journal entry of each thread in ``task_journal`` (same entries as the
  files of :class:`storage.sqlite.guard.TaskJournal`).

The tables come from the agent's numbered migrations (:mod:`storage.postgres.db`, migration 2).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from typing import Any

import psycopg

from free_llm_agent.storage import advisory_keys
from free_llm_agent.storage.errors import StateUnavailable, ThreadBusy
from free_llm_agent.storage.guard import Journal, JournalEntry, ReentrantRunLock, holder_note, journal_entry
from free_llm_agent.storage.postgres.db import PgDatabase

LOCK_CLASS = advisory_keys.THREAD_LOCK_CLASS
KEEPALIVES = ("SET tcp_keepalives_idle = 30", "SET tcp_keepalives_interval = 10", "SET tcp_keepalives_count = 3")


def thread_key(thread_id: str) -> int:
    """The second key of a thread's advisory lock: 32 bits of the id's hash."""
    return int.from_bytes(hashlib.sha256(thread_id.encode()).digest()[:4], "big", signed=True)


class PgThreadLock(ReentrantRunLock):
    """``with PgThreadLock(db, thread_id, owner):`` — see the module docstring."""

    def __init__(self, db: PgDatabase, thread_id: str, owner: str | None = None) -> None:
        super().__init__(thread_id, owner)
        self.db = db
        self.key = f"pg:{db.label}:{thread_id}"

    def _take(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.db.url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise StateUnavailable(f"cannot connect to the database {self.db.label} to lock thread "
                                   f"{self.thread_id}: {exc}".strip()) from exc
        try:
            for statement in KEEPALIVES:
                conn.execute(statement)  # type: ignore[arg-type]
            if conn.info.server_version >= 140000:  # a server-wide idle_session_timeout would end the session
                conn.execute("SET idle_session_timeout = 0")  # (and drop the lock) while the run holds it, idle
            row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, thread_key(self.thread_id))
                               ).fetchone()
            if not (row and row[0]):
                found = conn.execute("SELECT holder FROM run_locks WHERE thread_id = %s", (self.thread_id,)).fetchone()
                raise ThreadBusy(self.thread_id, str(found[0]) if found else "on another machine")
            conn.execute("INSERT INTO run_locks (thread_id, holder, since) VALUES (%s, %s, %s) "
                         "ON CONFLICT (thread_id) DO UPDATE SET holder = EXCLUDED.holder, since = EXCLUDED.since",
                         (self.thread_id, holder_note(), time.time()))
        except psycopg.Error as exc:  # the server went away just now, or the tables cannot be used
            conn.close()
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
            raise StateUnavailable(f"cannot lock thread {self.thread_id} in the database {self.db.label} "
                                   f"({type(exc).__name__}: {detail})") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _verify(self, conn: psycopg.Connection[Any]) -> None:
        """The session is alive, so its advisory lock is held; a dead session has lost it to the server."""
        try:
            conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise StateUnavailable(f"the run lock of thread {self.thread_id} in the database {self.db.label} was "
                                   "lost (its session ended); stopped before the next task so that no other "
                                   "machine runs it twice") from exc

    def _drop(self, conn: psycopg.Connection[Any]) -> None:
        with contextlib.suppress(psycopg.Error):  # a lost connection has dropped the lock already
            conn.execute("DELETE FROM run_locks WHERE thread_id = %s", (self.thread_id,))
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, thread_key(self.thread_id)))
        conn.close()


class PgTaskJournal:
    """The attempt in flight of each thread, in ``task_journal`` (see :class:`storage.guard.Journal`)."""

    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    def get(self, thread_id: str, key: str) -> JournalEntry | None:
        rows = self.db.query("SELECT entry FROM task_journal WHERE thread_id = ?", (thread_id,))
        try:
            entry = json.loads(str(rows[0][0])) if rows else None
        except ValueError:
            return None
        return journal_entry(entry, key)

    def _write(self, thread_id: str, entry: dict[str, Any]) -> None:
        # one upsert, atomic on its own: it need not queue behind the quota ledger's lock
        self.db.execute("INSERT INTO task_journal (thread_id, entry, updated) VALUES (?, ?, ?) "
                        "ON CONFLICT (thread_id) DO UPDATE SET entry = EXCLUDED.entry, updated = EXCLUDED.updated",
                        (thread_id, json.dumps(entry), time.time()))

    def started(self, thread_id: str, key: str, task_id: int) -> None:
        self._write(thread_id, {"key": key, "task_id": task_id, "state": "started", "pid": os.getpid(),
                                "holder": holder_note()})

    def finished(self, thread_id: str, key: str, task_id: int, result: dict[str, Any]) -> None:
        self._write(thread_id, {"key": key, "task_id": task_id, "state": "finished", "result": result})

    def clear(self, thread_id: str) -> None:
        self.db.execute("DELETE FROM task_journal WHERE thread_id = ?", (thread_id,))


class PgGuards:
    """The run guards of every machine sharing the database at ``url``."""

    def __init__(self, url: str) -> None:
        self.db = PgDatabase(url, max_size=2)  # migrated: run_locks and task_journal exist

    def lock(self, thread_id: str, owner: str | None = None) -> ReentrantRunLock:
        return PgThreadLock(self.db, thread_id, owner)

    def holders(self, thread_ids: list[str]) -> dict[str, str]:
        """The threads whose advisory lock a session of this database holds now (``pg_locks``: a two-key
        advisory lock is classid, objid, objsubid 2, the keys as unsigned 32-bit numbers)."""
        if not thread_ids:
            return {}
        rows = self.db.query("SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
                             "AND granted AND classid::bigint = ? AND database = "
                             "(SELECT oid FROM pg_database WHERE datname = current_database())", (LOCK_CLASS,))
        locked = {int(str(row[0])) for row in rows}
        running = [t for t in thread_ids if thread_key(t) & 0xFFFFFFFF in locked]
        if not running:
            return {}
        notes = {str(r[0]): str(r[1]) for r in self.db.query(
            "SELECT thread_id, holder FROM run_locks WHERE thread_id = ANY(?)", (running,))}
        return {t: notes.get(t, "another process") for t in running}

    def journal(self) -> Journal:
        return PgTaskJournal(self.db)

    def close(self) -> None:
        self.db.close()
