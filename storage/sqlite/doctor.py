"""The doctor's checks of the SQLite backend: ``agent.db`` and ``checkpoints.db`` (see :mod:`storage.doctor`).

Both: ``PRAGMA quick_check`` and the expected tables. ``agent.db``: its schema version
(``PRAGMA user_version``) against the migrations this version knows. ``checkpoints.db``: every
checkpoint and pending write of every thread decodes. Repair salvages what is readable, row by row,
into a fresh file, then moves the damaged one aside.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from free_llm_agent.storage.doctor import Finding
from free_llm_agent.storage.errors import DAMAGED, CheckpointUnreadable, StateFileError
from free_llm_agent.storage.sqlite.checkpoints import GuardedSqliteSaver, salvage_connection, salvage_rows
from free_llm_agent.storage.sqlite.db import MIGRATIONS, Database
from free_llm_agent.storage.sqlite.doctor_home import move_aside
from free_llm_agent.storage.sqlite.files import state_error

# The tables every schema version has, and those of the current one (migration 2 replaced ``requests``).
AGENT_TABLES = ("cooldowns", "response_cache", "usage_log")
CURRENT_AGENT_TABLES = (*AGENT_TABLES, "quota_slots", "quota_periods", "quota_backlog", "usage_daily",
                        "answer_grades", "answer_asks")
# The cache is only a saving: rebuilt as it is used.
SALVAGED_AGENT_TABLES = ("quota_slots", "quota_periods", "quota_backlog", "cooldowns", "usage_log", "usage_daily",
                         "answer_grades", "answer_asks")
CHECKPOINT_TABLES = ("checkpoints", "writes")


def _open(path: Path) -> sqlite3.Connection:
    return salvage_connection(path)


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")]


def _integrity(conn: sqlite3.Connection) -> str:
    """'' when ``quick_check`` passes, else its first complaints. Raises when the file is no database at all."""
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as exc:  # the check itself stumbled on a damaged page
        return str(exc)
    if rows == ["ok"]:
        return ""
    lines = [line.strip() for row in rows for line in row.splitlines() if line.strip() and "***" not in line]
    return "; ".join(lines[:3]) + (" …" if len(lines) > 3 else "")


def _problem(path: Path, exc: BaseException) -> Finding:
    error = state_error(path, exc) or StateFileError(path, DAMAGED, str(exc))
    if error.kind == DAMAGED:
        return Finding(path.name, problem=f"damaged: {error.reason}",
                       fix="--repair moves it aside and keeps what is readable", repairable=True)
    return Finding(path.name, problem=f"cannot be opened: {error.reason}",
                   fix="choose a writable --home, or fix the file's permissions")


def _copy_rows(conn: sqlite3.Connection, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> int:
    """Insert ``rows`` (in ``columns`` order) into ``table``, in the columns both have; the count inserted."""
    known = set(_columns(conn, table))
    use = [i for i, c in enumerate(columns) if c in known]
    if not rows or not use:
        return 0
    names, marks = ", ".join(columns[i] for i in use), ", ".join("?" * len(use))
    conn.executemany(f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})",
                     [tuple(r[i] for i in use) for r in rows])
    return len(rows)


class AgentDbCheck:
    """``agent.db``: quota reservations, cooldowns, response cache, usage log."""

    name = "agent.db"

    def __init__(self, path: Path) -> None:
        self.path = path

    def check(self) -> list[Finding]:
        if not self.path.exists():
            return [Finding(self.path.name, detail="not created yet")]
        try:
            with closing(_open(self.path)) as conn:
                complaint = _integrity(conn)
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                expected = CURRENT_AGENT_TABLES if version == len(MIGRATIONS) else AGENT_TABLES
                missing = [t for t in expected if t not in _tables(conn)] if version else []
        except (sqlite3.Error, OSError) as exc:
            return [_problem(self.path, exc)]
        if complaint or missing:
            why = complaint or f"tables missing: {', '.join(missing)}"
            return [_problem(self.path, sqlite3.DatabaseError(why))]
        if version > len(MIGRATIONS):
            return [Finding(self.path.name, problem=f"made by a newer version of free-llm-agent (schema {version}, "
                            f"this one knows {len(MIGRATIONS)})",
                            fix="upgrade free-llm-agent, or use another --home with this version")]
        note = "" if version == len(MIGRATIONS) else " (older: migrated on next use)"
        return [Finding(self.path.name, detail=f"integrity ok, schema {version} of {len(MIGRATIONS)}{note}")]

    def repair(self, stamp: str) -> list[str]:
        salvaged: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
        try:
            with closing(_open(self.path)) as conn:
                for table in SALVAGED_AGENT_TABLES:
                    try:
                        columns = _columns(conn, table)
                        salvaged[table] = (columns, salvage_rows(conn, table, columns)[0]) if columns else ([], [])
                    except sqlite3.DatabaseError:
                        continue
        except sqlite3.Error:
            pass
        aside = move_aside(self.path, stamp)
        db = Database(self.path)
        kept = []
        with db.transaction() as conn:
            for table, (columns, rows) in salvaged.items():
                if _copy_rows(conn, table, columns, rows):
                    kept.append(f"{len(rows)} {table}")
        db.close()
        return [f"moved agent.db aside to {aside.name}; a fresh agent.db keeps "
                f"{', '.join(kept) or 'nothing (nothing was readable)'} (the response cache starts empty)"]


class CheckpointsCheck:
    """``checkpoints.db``: LangGraph's SqliteSaver tables; every thread's checkpoints must decode."""

    name = "checkpoints.db"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._threads: set[str] | None = None
        self._seen: list[str] = []  # every thread id the last check found
        self._rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}

    def known_threads(self) -> set[str] | None:
        """The thread ids found by the last :meth:`check`, None when the list could not be read whole."""
        return self._threads

    def check(self) -> list[Finding]:
        self._threads = None
        if not self.path.exists():
            self._threads = set()
            return [Finding(self.path.name, detail="not created yet")]
        try:
            with closing(_open(self.path)) as conn:
                complaint = _integrity(conn)
                tables = _tables(conn)
                saver = GuardedSqliteSaver(conn, self.path)
                saver.is_setup = True  # read only: never create tables here
                ids, complete = saver.thread_ids() if "checkpoints" in tables else ([], True)
                self._seen = list(ids)
                bad = {tid: reason for tid in ids if (reason := _unreadable(saver, tid))}
        except (sqlite3.Error, OSError, StateFileError) as exc:
            return [_problem(self.path, exc)]
        if complete and not complaint:
            self._threads = set(ids)
        findings = [Finding(f"thread {tid}", problem=f"unreadable: {reason}",
                            fix="--repair keeps its readable checkpoints and every other thread", repairable=True)
                    for tid, reason in bad.items()]
        if complaint or not complete:
            findings.append(_problem(self.path, sqlite3.DatabaseError(complaint or "thread list unreadable")))
        else:
            missing = [t for t in CHECKPOINT_TABLES if t not in tables]
            note = f"; created on next use: {', '.join(missing)}" if missing else ""
            findings.append(Finding(self.path.name, detail=f"integrity ok, {len(ids) - len(bad)} of {len(ids)} "
                                    f"threads readable{note}"))
        return findings

    def repair(self, stamp: str) -> list[str]:
        try:
            kept, lost, missed = self._salvage()
        except (sqlite3.Error, StateFileError):
            kept, lost, missed = Counter(), Counter(), 0
        tmp = self.path.with_name(self.path.name + ".repair-tmp")
        tmp.unlink(missing_ok=True)
        with closing(sqlite3.connect(tmp)) as conn:
            saver = GuardedSqliteSaver(conn, tmp)
            saver.setup()
            for table, (columns, rows) in self._rows.items():
                _copy_rows(conn, table, columns, rows)
            conn.commit()
            conn.execute("PRAGMA journal_mode=DELETE")
        aside = move_aside(self.path, stamp)
        os.replace(tmp, self.path)
        lines = [f"moved checkpoints.db aside to {aside.name}; a fresh checkpoints.db keeps "
                 f"{len([t for t in kept if kept[t]])} thread(s)"]
        if missed:
            lines.append(f"{missed} row(s) sat on damaged pages and could not be read")
        for tid in dict.fromkeys([*self._seen, *kept, *lost]):
            if not kept.get(tid):
                lines.append(f"thread {tid}: nothing readable; it stays only in {aside.name}")
            elif lost.get(tid):
                lines.append(f"thread {tid}: kept {kept[tid]} checkpoints, {lost[tid]} did not decode "
                             "(if the newest was among them, it goes back to an earlier step)")
        return lines

    def _salvage(self) -> tuple[Counter[str], Counter[str], int]:
        """Fill ``self._rows`` with the rows that decode; per thread, checkpoints kept and lost; rows unreadable."""
        serde = JsonPlusSerializer()
        self._rows = {}
        kept: Counter[str] = Counter()
        lost: Counter[str] = Counter()
        with closing(_open(self.path)) as conn:
            tables = _tables(conn)
            good: set[tuple[Any, ...]] = set()
            missed = 0
            if "checkpoints" in tables:
                columns = _columns(conn, "checkpoints")
                rows, missed = salvage_rows(conn, "checkpoints", columns)
                at = {c: i for i, c in enumerate(columns)}
                readable = []
                for row in rows:
                    tid = str(row[at["thread_id"]])
                    try:
                        serde.loads_typed((row[at["type"]], row[at["checkpoint"]]))
                        if row[at["metadata"]] is not None:
                            json.loads(row[at["metadata"]])
                    except Exception:  # any decoding failure: the row is lost
                        lost[tid] += 1
                        continue
                    kept[tid] += 1
                    readable.append(row)
                    good.add((row[at["thread_id"]], row[at["checkpoint_ns"]], row[at["checkpoint_id"]]))
                self._rows["checkpoints"] = (columns, readable)
            if "writes" in tables:
                columns = _columns(conn, "writes")
                rows, _ = salvage_rows(conn, "writes", columns)
                at = {c: i for i, c in enumerate(columns)}
                keep = []
                for row in rows:
                    if (row[at["thread_id"]], row[at["checkpoint_ns"]], row[at["checkpoint_id"]]) not in good:
                        continue
                    try:
                        serde.loads_typed((row[at["type"]], row[at["value"]]))
                    except Exception:
                        continue
                    keep.append(row)
                self._rows["writes"] = (columns, keep)
        return kept, lost, missed


def _unreadable(saver: GuardedSqliteSaver, thread_id: str) -> str:
    """'' when every checkpoint and pending write of ``thread_id`` decodes, else why not."""
    try:
        for _ in saver.list({"configurable": {"thread_id": thread_id}}):
            pass
    except CheckpointUnreadable as exc:
        return exc.reason
    except (sqlite3.DatabaseError, StateFileError) as exc:
        return str(getattr(exc, "reason", exc))
    return ""
