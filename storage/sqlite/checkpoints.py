"""``checkpoints.db``: LangGraph's SqliteSaver, with errors a user can act on.

:class:`GuardedSqliteSaver` is the SqliteSaver the CLI uses. A damaged or unwritable file raises
:class:`storage.errors.StateFileError` (naming the file) instead of a bare ``sqlite3`` error; a thread
whose checkpoint cannot be decoded raises :class:`storage.errors.CheckpointUnreadable` (naming the
thread), so one damaged thread never hides the others (:meth:`GuardedSqliteSaver.thread_ids` reads only ids).

:func:`salvage_rows` reads what is still readable of a table, row by row; ``doctor --repair``
(:mod:`storage.sqlite.doctor`) builds a fresh file from it.
"""

from __future__ import annotations

import builtins
import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.sqlite import SqliteSaver

from free_llm_agent.storage.checkpoints import checkpoint_time
from free_llm_agent.storage.errors import CheckpointUnreadable, StateFileError
from free_llm_agent.storage.sqlite.files import translated

FILE_NAME = "checkpoints.db"
TABLES = ("checkpoints", "writes")


class SqliteCheckpoints:
    """``checkpoints.db`` in the home (a :class:`storage.checkpoints.Checkpoints`)."""

    def __init__(self, home: Path) -> None:
        self.conn, self.saver = open_checkpoints(home)
        self.label = str(self.saver.path)

    def thread_ids(self) -> tuple[builtins.list[str], bool]:
        return self.saver.thread_ids()

    def started(self) -> dict[str, datetime]:
        try:
            with self.saver.cursor(transaction=False) as cur:
                rows = cur.execute("SELECT thread_id, min(checkpoint_id) FROM checkpoints WHERE checkpoint_ns = '' "
                                   "GROUP BY thread_id").fetchall()
        except (StateFileError, sqlite3.DatabaseError):
            return {}  # damaged: ``thread_ids`` says so; the times are left out
        return {str(tid): when for tid, first in rows if (when := checkpoint_time(str(first))) is not None}

    def close(self) -> None:
        self.conn.close()


def open_checkpoints(home: Path) -> tuple[sqlite3.Connection, GuardedSqliteSaver]:
    path = home / FILE_NAME
    with translated(path):
        conn = sqlite3.connect(path, check_same_thread=False, timeout=60)
    return conn, GuardedSqliteSaver(conn, path)


class GuardedSqliteSaver(SqliteSaver):
    """SqliteSaver whose failures name the file or the thread (see module docstring)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        super().__init__(conn)
        self.path = path

    @contextmanager
    def cursor(self, transaction: bool = True) -> Iterator[sqlite3.Cursor]:
        with translated(self.path), super().cursor(transaction) as cur:
            yield cur

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        try:
            return super().get_tuple(config)
        except (StateFileError, sqlite3.OperationalError):
            raise
        except Exception as exc:  # a blob that does not decode: this thread only
            raise CheckpointUnreadable(str(config["configurable"]["thread_id"]), self.path, _reason(exc)) from exc

    def list(self, config: RunnableConfig | None, **kwargs: Any) -> Iterator[CheckpointTuple]:
        thread = str((config or {}).get("configurable", {}).get("thread_id", "?"))
        try:
            yield from super().list(config, **kwargs)
        except (StateFileError, sqlite3.OperationalError):
            raise
        except Exception as exc:
            raise CheckpointUnreadable(thread, self.path, _reason(exc)) from exc

    def thread_ids(self) -> tuple[builtins.list[str], bool]:
        """Every thread id still readable, oldest first, and whether the whole table could be read."""
        try:
            with self.cursor(transaction=False) as cur:
                rows = cur.execute("SELECT thread_id, min(rowid) FROM checkpoints GROUP BY thread_id "
                                   "ORDER BY 2").fetchall()
            return [str(r[0]) for r in rows], True
        except StateFileError as exc:
            if exc.kind != "damaged" or "not a database" in exc.reason:
                raise
        with translated(self.path), contextlib.closing(salvage_connection(self.path)) as conn:
            rows, _ = salvage_rows(conn, "checkpoints", ["thread_id"])
        return list(dict.fromkeys(str(r[0]) for r in rows)), False


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def salvage_connection(path: Path) -> sqlite3.Connection:
    """A read-only connection that reads as much of a damaged file as SQLite can.

    ``writable_schema`` makes SQLite accept a file shorter than its header says (a truncated copy)
    instead of refusing it whole; ``query_only`` keeps it from writing anything.
    """
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA query_only=1")
    conn.execute("PRAGMA writable_schema=1")
    return conn


def salvage_rows(conn: sqlite3.Connection, table: str, columns: Sequence[str]) -> tuple[list[tuple[Any, ...]], int]:
    """The readable rows of ``table`` (``columns`` only) in rowid order, and how many rowids failed to read.

    Whole-table read first; when a damaged page stops it, every rowid up to the largest one is read
    on its own, so one bad page costs only the rows on it.
    """
    cols = ", ".join(columns)
    try:
        return conn.execute(f"SELECT {cols} FROM {table} ORDER BY rowid").fetchall(), 0
    except sqlite3.DatabaseError:
        pass
    top = _max_rowid(conn, table)
    rows: list[tuple[Any, ...]] = []
    lost = 0
    for rowid in range(1, top + 1):
        try:
            row = conn.execute(f"SELECT {cols} FROM {table} WHERE rowid = ?", (rowid,)).fetchone()
        except sqlite3.DatabaseError:
            lost += 1
            continue
        if row is not None:
            rows.append(tuple(row))
    return rows, lost


def _max_rowid(conn: sqlite3.Connection, table: str) -> int:
    try:
        top = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
        return int(top or 0)
    except sqlite3.DatabaseError:  # the b-tree's right edge is damaged: probe upwards until misses pile up
        pass
    top, misses, rowid = 0, 0, 0
    while misses < 5000:
        rowid += 1
        try:
            found = conn.execute(f"SELECT 1 FROM {table} WHERE rowid = ?", (rowid,)).fetchone() is not None
        except sqlite3.DatabaseError:
            found = False
        if found:
            top, misses = rowid, 0
        else:
            misses += 1
    return top
