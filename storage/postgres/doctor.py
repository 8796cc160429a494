"""The doctor's checks of the PostgreSQL backend (see :mod:`storage.doctor`).

* the database: it can be reached; the agent's schema version against the migrations this version
  knows (a newer one is reported, never moved), and LangGraph's checkpoint migrations;
* checkpoints: the latest checkpoint of every thread, of every machine, decodes;
* run locks: a ``run_locks`` row whose advisory lock nobody holds is a stale note of a holder that
  died (repair clears it, under the lock, as a normal release does); a held one is a run;
* journal: entries of threads that have no checkpoints (repair removes them; no run reads them).

Nothing else is changed: PostgreSQL keeps its own pages whole, so there is no file to move aside.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from langgraph.checkpoint.postgres.base import MIGRATIONS as CHECKPOINT_MIGRATIONS

from free_llm_agent.storage.doctor import Finding
from free_llm_agent.storage.errors import CheckpointUnreadable, StateUnavailable
from free_llm_agent.storage.postgres.db import MIGRATIONS, probe
from free_llm_agent.storage.postgres.guard import LOCK_CLASS, thread_key
from free_llm_agent.storage.urls import redacted


@contextmanager
def _connect(url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection for one check; the server going away meanwhile is :class:`StateUnavailable`, not a traceback."""
    probe(url)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise StateUnavailable(f"the database {redacted(url)} went away while doctor checked it ({exc}); "
                               "check that the server is running") from exc


def _scalar(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...] = ()) -> Any:
    try:
        row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
    except psycopg.errors.UndefinedTable:
        return None
    return row[0] if row else None


def _version(subject: str, found: Any, known: int, creator: str, what: str, knower: str) -> Finding:
    """A schema's version against the newest this install knows (a newer one is reported, never moved)."""
    if found is None:
        return Finding(subject, detail=f"not created yet ({creator})")
    if int(found) > known:
        return Finding(subject, problem=f"{what} {found} is newer than this {knower} ({known})",
                       fix="upgrade free-llm-agent on this machine")
    return Finding(subject, detail=f"{what} {found} of {known}")


class DatabaseCheck:
    """The server answers; both schemas are at the version this agent knows."""

    name = "database"

    def __init__(self, url: str) -> None:
        self.url, self.label = url, redacted(url)

    def check(self) -> list[Finding]:
        with _connect(self.url) as conn:
            agent = _scalar(conn, "SELECT max(version) FROM schema_version")
            checkpoints = _scalar(conn, "SELECT max(v) FROM checkpoint_migrations")
            server = _scalar(conn, "SHOW server_version")
        findings = [Finding(self.label, detail=f"reachable (PostgreSQL {server})")]
        findings.append(_version("agent tables", agent, len(MIGRATIONS), "the first command creates them",
                                 "schema version", "free-llm-agent knows"))
        findings.append(_version("checkpoint tables", checkpoints, len(CHECKPOINT_MIGRATIONS) - 1,
                                 "the first run creates them", "migration", "langgraph-checkpoint-postgres knows"))
        return findings

    def repair(self, stamp: str) -> list[str]:
        return []


class PgCheckpointsCheck:
    """The latest checkpoint of every thread decodes (one that does not is named; the others work)."""

    name = "checkpoints"

    def __init__(self, url: str) -> None:
        self.url = url
        self._threads: set[str] | None = None

    def known_threads(self) -> set[str] | None:
        return self._threads

    def check(self) -> list[Finding]:
        from free_llm_agent.storage.postgres.checkpoints import PgCheckpoints

        with _connect(self.url) as conn:
            exists = _scalar(conn, "SELECT to_regclass('checkpoint_migrations') IS NOT NULL")
        if not exists:  # nothing to check, and doctor creates nothing
            self._threads = set()
            return [Finding("checkpoints", detail="no thread yet")]
        store = PgCheckpoints(self.url, max_size=1)
        try:
            ids, _ = store.thread_ids()
            bad: list[Finding] = []
            for tid in ids:
                try:
                    store.saver.get_tuple({"configurable": {"thread_id": tid}})
                except CheckpointUnreadable as exc:
                    bad.append(Finding(f"thread {tid}", problem=f"its checkpoint cannot be read ({exc.reason})",
                                       fix="the other threads work; start this goal again in a new thread"))
        finally:
            store.close()
        self._threads = set(ids)
        return [*bad, Finding("checkpoints", detail=f"{len(ids)} thread(s) of every machine, "
                                                    f"{len(ids) - len(bad)} readable")]

    def repair(self, stamp: str) -> list[str]:
        return []


def _lock_held(conn: psycopg.Connection[Any], thread_id: str) -> bool:
    """Whether any session holds the thread's advisory lock (never takes it)."""
    key = thread_key(thread_id) & 0xFFFFFFFF  # pg_locks shows the keys as unsigned oids
    return bool(_scalar(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
                              "AND objid = %s AND objsubid = 2 AND granted AND database = "
                              "(SELECT oid FROM pg_database WHERE datname = current_database())", (LOCK_CLASS, key)))


class PgLocksCheck:
    """``run_locks``: the holder notes of thread locks (the locks are advisory locks of live sessions)."""

    name = "locks"

    def __init__(self, url: str) -> None:
        self.url = url
        self.running: list[str] = []

    def _rows(self, conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
        try:
            return [(str(r[0]), str(r[1])) for r in conn.execute("SELECT thread_id, holder FROM run_locks "
                                                                 "ORDER BY since").fetchall()]
        except psycopg.errors.UndefinedTable:
            return []

    def check(self) -> list[Finding]:
        findings: list[Finding] = []
        self.running = []
        with _connect(self.url) as conn:
            for tid, holder in self._rows(conn):
                if _lock_held(conn, tid):
                    self.running.append(f"{tid} ({holder})")
                    findings.append(Finding(f"lock of {tid}", detail=f"held: a run is in progress ({holder})"))
                else:
                    findings.append(Finding(f"lock of {tid}", problem=f"stale note: its holder is gone ({holder})",
                                            fix="--repair clears it", repairable=True))
        findings.append(Finding("run locks", detail=f"{len(self.running)} held"))
        return findings

    def repair(self, stamp: str) -> list[str]:
        done = []
        with _connect(self.url) as conn:
            for tid, holder in self._rows(conn):
                got = _scalar(conn, "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, thread_key(tid)))
                if not got:  # taken by a new run meanwhile: not stale any more
                    continue
                try:
                    conn.execute("DELETE FROM run_locks WHERE thread_id = %s", (tid,))
                    done.append(f"cleared the stale lock note of {tid} ({holder})")
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, thread_key(tid)))
        return done


class PgJournalCheck:
    """``task_journal``: entries of threads that have no checkpoints are left over."""

    name = "journal"

    def __init__(self, url: str, checkpoints: PgCheckpointsCheck) -> None:
        self.url, self.checkpoints = url, checkpoints

    def _leftovers(self, conn: psycopg.Connection[Any]) -> tuple[list[str], int]:
        try:
            ids = [str(r[0]) for r in conn.execute("SELECT thread_id FROM task_journal").fetchall()]
        except psycopg.errors.UndefinedTable:
            return [], 0
        known = self.checkpoints.known_threads()
        return ([] if known is None else [t for t in ids if t not in known]), len(ids)

    def check(self) -> list[Finding]:
        with _connect(self.url) as conn:
            leftovers, count = self._leftovers(conn)
        findings = [Finding(f"journal of {t}", problem="entry of a thread that has no checkpoints",
                            fix="--repair removes it", repairable=True) for t in leftovers]
        return [*findings, Finding("journal", detail=f"{count} entries, {len(leftovers)} left over")]

    def repair(self, stamp: str) -> list[str]:
        done = []
        with _connect(self.url) as conn:
            leftovers, _ = self._leftovers(conn)
            unless = ("AND NOT EXISTS (SELECT 1 FROM checkpoints WHERE checkpoints.thread_id = %s)"
                      if _scalar(conn, "SELECT to_regclass('checkpoints') IS NOT NULL") else "AND %s::text IS NOT NULL")
            for tid in leftovers:
                if _lock_held(conn, tid):  # a run started since the check: its entry is live
                    continue
                gone = conn.execute(f"DELETE FROM task_journal WHERE thread_id = %s {unless}",  # type: ignore[arg-type]
                                    (tid, tid))
                if gone.rowcount:
                    done.append(f"removed the journal entry of {tid} (no checkpoints)")
        return done
