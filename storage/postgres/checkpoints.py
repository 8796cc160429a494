"""Checkpoints in PostgreSQL: LangGraph's ``PostgresSaver``, with errors a user can act on.

Every machine pointed at the same database sees every thread, so ``threads`` lists them all
and ``resume`` continues on one machine what another started (or lost to ``kill -9``).
``PostgresSaver.setup()`` (LangGraph's own numbered migrations, in ``checkpoint_migrations``)
runs on open, by one process at a time (an advisory lock). The others poll for that lock instead of
waiting on it: a waiting ``pg_advisory_lock`` is a transaction in progress, and the setup's
``CREATE INDEX CONCURRENTLY`` waits for every transaction in progress — machines starting together
on a fresh database used to wait on each other forever. They wait at most :data:`SETUP_WAIT_S`.
A server that cannot be reached is :class:`storage.errors.StateUnavailable` (exit 2 with
the URL, password hidden); a checkpoint that does not decode is
:class:`storage.errors.CheckpointUnreadable` for that thread only.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from free_llm_agent.storage import advisory_keys
from free_llm_agent.storage.checkpoints import checkpoint_time
from free_llm_agent.storage.errors import CheckpointUnreadable, StateUnavailable
from free_llm_agent.storage.postgres.db import probe
from free_llm_agent.storage.urls import redacted

SETUP_LOCK = advisory_keys.CHECKPOINT_SETUP
SETUP_WAIT_S = 180.0  # for another process's setup of a fresh database
SETUP_NOTICE_S = 10.0  # then say why this one waits
_log = logging.getLogger(__name__)


def _unavailable(label: str, exc: BaseException) -> StateUnavailable:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
    check = ("that the server is running" if isinstance(exc, (psycopg.OperationalError, PoolTimeout))
             else "that its user may read and write the checkpoint tables")
    return StateUnavailable(f"the database {label} cannot be used for checkpoints ({type(exc).__name__}: "
                            f"{detail}); check --database-url / FREE_AGENT_DATABASE_URL and {check}")


class GuardedPostgresSaver(PostgresSaver):
    """PostgresSaver whose failures name the database or the thread (see the module docstring)."""

    def __init__(self, pool: ConnectionPool[Any], label: str) -> None:
        super().__init__(pool)  # type: ignore[arg-type]
        self.label = label

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        try:
            return super().get_tuple(config)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise _unavailable(self.label, exc) from exc
        except psycopg.Error:
            raise
        except Exception as exc:  # a checkpoint that does not decode: this thread only
            thread = str(config["configurable"]["thread_id"])
            raise CheckpointUnreadable(thread, None, f"{type(exc).__name__}: {exc}", self.label) from exc

    def list(self, config: RunnableConfig | None, **kwargs: Any) -> Iterator[CheckpointTuple]:
        thread = str((config or {}).get("configurable", {}).get("thread_id", "?"))
        try:
            yield from super().list(config, **kwargs)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise _unavailable(self.label, exc) from exc
        except psycopg.Error:
            raise
        except Exception as exc:
            raise CheckpointUnreadable(thread, None, f"{type(exc).__name__}: {exc}", self.label) from exc

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        try:
            return super().put(config, checkpoint, metadata, new_versions)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise _unavailable(self.label, exc) from exc

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        try:
            super().put_writes(config, writes, task_id, task_path)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise _unavailable(self.label, exc) from exc


class PgCheckpoints:
    """The checkpoints of every machine sharing the database at ``url`` (a :class:`storage.checkpoints.Checkpoints`)."""

    def __init__(self, url: str, *, max_size: int = 2) -> None:  # PostgresSaver runs one call at a time
        self.label = redacted(url)
        probe(url)  # unreachable, refused, a bad URL: one message with the reason, at once
        self.pool: ConnectionPool[Any] = ConnectionPool(  # checked on lend: a server restart costs no failed call
            url, min_size=1, max_size=max_size, open=True, timeout=60, check=ConnectionPool.check_connection,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row, "connect_timeout": 10})
        try:
            self.pool.wait(timeout=15)
            self.saver = GuardedPostgresSaver(self.pool, self.label)
            if not self._migrated():  # setup() needs CREATE on the schema: only when there is something to do
                self._set_up(url)
        except BaseException as exc:  # no pool left running, whatever failed
            self.pool.close()
            if isinstance(exc, (psycopg.Error, PoolTimeout)):
                raise _unavailable(self.label, exc) from exc
            raise

    def _set_up(self, url: str) -> None:
        """Run ``setup()`` here, or wait for the process that runs it (module docstring): no transaction is
        left open while waiting."""
        started = time.monotonic()
        noticed = False
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            while not conn.execute("SELECT pg_try_advisory_lock(%s)", (SETUP_LOCK,)).fetchone()[0]:  # type: ignore[index]
                if self._migrated():
                    return  # another process set it up
                waited = time.monotonic() - started
                if waited > SETUP_WAIT_S:
                    raise StateUnavailable(f"the database {self.label} has been set up by another process for "
                                           f"{waited:.0f} s without finishing; check it with 'doctor'")
                if waited > SETUP_NOTICE_S and not noticed:
                    noticed = True
                    _log.warning("waiting for another process to set up the checkpoint tables of %s", self.label)
                time.sleep(0.2)
            try:
                if not self._migrated():
                    self.saver.setup()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))

    def _migrated(self) -> bool:
        """Whether every one of LangGraph's checkpoint migrations is applied already."""
        with self.pool.connection() as conn:
            try:
                row = conn.execute("SELECT max(v) AS v FROM checkpoint_migrations").fetchone()
            except psycopg.errors.UndefinedTable:
                return False
        return bool(row and row["v"] is not None and int(row["v"]) >= len(self.saver.MIGRATIONS) - 1)

    def thread_ids(self) -> tuple[builtins.list[str], bool]:
        try:
            with self.pool.connection() as conn:
                rows = conn.execute("SELECT thread_id FROM checkpoints WHERE checkpoint_ns = '' "
                                    "GROUP BY thread_id ORDER BY min(checkpoint_id)").fetchall()
        except (psycopg.Error, PoolTimeout) as exc:
            raise _unavailable(self.label, exc) from exc
        return [str(r["thread_id"]) for r in rows], True  # type: ignore[call-overload]

    def started(self) -> dict[str, datetime]:
        try:
            with self.pool.connection() as conn:
                rows = conn.execute("SELECT thread_id, min(checkpoint_id) AS first FROM checkpoints "
                                    "WHERE checkpoint_ns = '' GROUP BY thread_id").fetchall()
        except (psycopg.Error, PoolTimeout) as exc:
            raise _unavailable(self.label, exc) from exc
        found = {str(r["thread_id"]): checkpoint_time(str(r["first"])) for r in rows}  # type: ignore[call-overload]
        return {tid: when for tid, when in found.items() if when is not None}

    def close(self) -> None:
        self.pool.close()
