"""Quota store throughput and latency: reservations/s and p50/p99/max per reservation.

N processes share one state database and reserve slots on one provider as fast as they can
(``QuotaStore.reserve``, nothing else), for ``--seconds`` each cell, at 1/4/8/50 processes,
on an empty ledger and on one holding ``--history`` request rows of this month, on each
backend (``--backend sqlite,postgresql``):

* sqlite: one ``agent.db``; the history is written in the schema-1 layout (a row per
  request), so the code under test migrates it as it would a user's file;
* postgresql: a fresh database per cell in a throw-away cluster this script starts
  (``tests/support/pg.py``: initdb/pg_ctl on 127.0.0.1, as the ``postgres`` user when run as root)
  and removes at the end, or on ``--pg-url`` (a server where that user may create
  databases). PostgreSQL has no older layout: the history is 100k settled ``quota_slots``
  rows (COPY) with their day and month counters, pruned as a Router does on open, then
  ``VACUUM ANALYZE`` (what autovacuum does soon after).

Every process opens the backend as the agent does (``Database`` / ``PgDatabase``). The clock
is synthetic (mid-month, mid-day UTC, advancing with real time), so the day and month windows
always hold the history. Latency includes waiting for the write lock.

Run (one command; prints the tables, writes docs/quota_store.png):

    uv run python bench/quota_store.py

Options: ``--seconds 5``, ``--procs 1,4,8,50``, ``--history 100000``, ``--backend sqlite,postgresql``,
``--repeat N`` (every cell N times, round after round, each cell's SQLite and PostgreSQL runs back to
back so they share the machine's load; each number is the median of the N runs, with the lowest and
highest beside it, and the load average at each run), ``--pg-url URL``, ``--save FILE.json`` (this
run's numbers), ``--baseline FILE.json`` (a saved run drawn dotted and printed beside), ``--code DIR``
(import ``free_llm_agent`` from DIR instead: measure another version, e.g. a worktree of main:
``git worktree add --detach /tmp/main-src main`` then ``--code /tmp/main-src``), ``--from FILE.json ...``
(measure nothing: print and draw saved runs, several files' runs merged per cell), ``--tiny`` (the
smoke test's size), ``--png FILE``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import add_output_args
from pg_server import Server, open_server
from quota_store_report import LABEL, Row, combined, merged, report

T_BASE = datetime(2026, 3, 15, 12, 0, tzinfo=UTC).timestamp()
MONTH_START = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
LIMITS: dict[str, Any] = {"requests_per_day": 10_000_000, "requests_per_month": 100_000_000, "tokens_per_day": 10**12}
BACKENDS = ("sqlite", "postgresql")


def _limits() -> Any:
    from free_llm_agent.config import RateLimit

    return lambda _name: RateLimit(**LIMITS)


def _history_times(history: int) -> Iterator[float]:
    span = T_BASE - 120 - MONTH_START
    return (MONTH_START + span * i / max(history, 1) for i in range(history))


def _sqlite_db() -> Any:
    """The SQLite state database module of the code under test (``--code DIR`` may hold an older layout)."""
    try:
        from free_llm_agent.storage.sqlite import db
    except ImportError:  # before storage/: providers/db.py
        db = importlib.import_module("free_llm_agent.providers.db")
    return db


def make_home(home: Path, history: int) -> None:
    """A schema-1 ``agent.db`` with ``history`` request rows spread over this month, migrated by the code under test."""
    db_module = _sqlite_db()
    MIGRATIONS, Database = db_module.MIGRATIONS, db_module.Database

    home.mkdir(parents=True, exist_ok=True)
    path = home / "agent.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN")
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.executemany("INSERT INTO requests(provider, ts, tokens) VALUES ('p', ?, 100)",
                     ((t,) for t in _history_times(history)))
    conn.execute("COMMIT")
    conn.close()
    from free_llm_agent.providers.quota import QuotaStore

    db = Database(path)
    QuotaStore(db, _limits()).prune(T_BASE)  # what a Router does when it opens the home
    db.close()


def make_pg(url: str, history: int) -> None:
    """Migrate a fresh database (``PgDatabase``), COPY ``history`` settled slots of this month and their counters in."""
    from free_llm_agent.providers.quota import QuotaStore
    from free_llm_agent.storage.postgres.db import PgDatabase

    db = PgDatabase(url)
    days: dict[float, int] = {}
    with db.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        with cur.copy("COPY quota_slots(provider, ts, tokens, day_start, month_start, pending) FROM STDIN") as copy:
            for t in _history_times(history):
                day = t - t % 86400  # UTC, as LIMITS has no timezone
                days[day] = days.get(day, 0) + 1
                copy.write_row(("p", t, 100, day, MONTH_START, 0))
        counters = [("p", "day", day, n, 100 * n) for day, n in days.items()]
        counters += [("p", "month", MONTH_START, history, 100 * history)] if history else []
        cur.executemany("INSERT INTO quota_periods(provider, period, start, requests, tokens) VALUES (%s,%s,%s,%s,%s)",
                        counters)
    QuotaStore(db, _limits()).prune(T_BASE)  # what a Router does when it opens the database
    db.close()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:  # what autovacuum does soon after such a prune
        conn.execute("VACUUM ANALYZE quota_slots, quota_periods")


def _open(backend: str, target: str) -> Any:
    if backend == "sqlite":  # Database directly: --code DIR may hold a version without the registry
        return _sqlite_db().Database(Path(target) / "agent.db")
    try:
        from free_llm_agent.storage.registry import open_state
    except ImportError:  # before storage/
        open_state = importlib.import_module("free_llm_agent.providers.backends").open_state
    return open_state(target, Path(tempfile.gettempdir()))


def worker(backend: str, target: str, seconds: float, barrier: Any, origin: Any, out: Any) -> None:
    from free_llm_agent.providers.quota import QuotaStore, Slot

    db = _open(backend, target)
    store = QuotaStore(db, _limits())
    est = lambda _n: 100  # noqa: E731
    store.reserve(["warm"], est, T_BASE, 0)  # connection and schema cached before the clock starts
    barrier.wait()
    start = origin.value  # one synthetic clock for every process
    latencies: list[float] = []
    refused = 0
    while True:
        t0 = time.perf_counter()
        got = store.reserve(["p"], est, T_BASE + (time.time() - start), 0)
        latencies.append(time.perf_counter() - t0)
        refused += not isinstance(got, Slot)  # a clock read before a long lock wait: behind a later slot
        if time.time() - start >= seconds:
            break
    db.close()
    out.put((time.time() - start, latencies, refused))


@contextmanager
def prepared(backend: str, history: int, server: Server | None) -> Iterator[str]:
    """A fresh home (sqlite) or database URL (postgresql) holding ``history`` rows."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="quota-bench-") as tmp:
            make_home(Path(tmp) / "home", history)
            yield str(Path(tmp) / "home")
        return
    assert server is not None
    with server.database("quota_bench") as url:
        make_pg(url, history)
        yield url


def _result(out: Any, workers: list[Any], timeout: float) -> Any:
    """The next worker's numbers; a worker that died (its traceback is on stderr) ends the run."""
    import queue

    limit = time.monotonic() + timeout
    while True:
        try:
            return out.get(timeout=1.0)
        except queue.Empty:
            dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if dead or time.monotonic() > limit:
                for w in workers:
                    w.kill()
                raise RuntimeError(f"quota_store worker failed (exit codes {dead}); see its traceback above") from None


def cell(backend: str, procs: int, history: int, seconds: float, server: Server | None) -> Row:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    ctx = multiprocessing.get_context("fork")
    with prepared(backend, history, server) as target:
        origin = ctx.Value("d", 0.0)
        barrier, out = ctx.Barrier(procs, action=lambda: setattr(origin, "value", time.time())), ctx.Queue()
        workers = [ctx.Process(target=worker, args=(backend, target, seconds, barrier, origin, out))
                   for _ in range(procs)]
        for w in workers:
            w.start()
        results = [_result(out, workers, seconds + 900) for _ in workers]
        for w in workers:
            w.join()
    wall = max(r[0] for r in results)
    lat = sorted(x for r in results for x in r[1])
    return {
        "backend": backend,
        "procs": procs,
        "history": history,
        "per_s": len(lat) / wall,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "max_ms": lat[-1] * 1000,
        "n": len(lat),
        "refused": sum(r[2] for r in results),
        # the least served process's reservations over the mean: 1.0 is perfectly fair, near 0 is starved
        "fairness": min(len(r[1]) for r in results) / (len(lat) / procs),
        "load": load,  # the machine's 1-minute load average as the cell started
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.0, help="per cell (default 5; tiny 0.3)")
    parser.add_argument("--procs", default="", help="default 1,4,8,50; tiny 1,2")
    parser.add_argument("--history", type=int, default=-1, help="rows of history (default 100000; tiny 1000)")
    parser.add_argument("--backend", default="sqlite,postgresql", help="comma-separated, of sqlite, postgresql")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every cell (medians, with the spread)")
    parser.add_argument("--pg-url", help="a PostgreSQL server to create the databases on (default: start a cluster)")
    parser.add_argument("--save", type=Path, help="write this run's numbers as JSON")
    parser.add_argument("--baseline", type=Path, help="a run saved with --save, shown beside this one")
    parser.add_argument("--code", type=Path, help="import free_llm_agent from this folder instead")
    parser.add_argument("--from", dest="saved", type=Path, nargs="+",
                        help="measure nothing: the tables and chart of runs saved with --save (merged)")
    add_output_args(parser)
    args = parser.parse_args()
    seconds = args.seconds or (0.3 if args.tiny else 5.0)
    procs_list = [int(p) for p in (args.procs or ("1,2" if args.tiny else "1,4,8,50")).split(",")]
    history = args.history if args.history >= 0 else (1000 if args.tiny else 100_000)
    backends = [b for b in args.backend.split(",") if b]
    if set(backends) - set(BACKENDS):
        parser.error(f"unknown backends {sorted(set(backends) - set(BACKENDS))} (known: {', '.join(BACKENDS)})")
    if args.saved:
        saved = [json.loads(f.read_text()) for f in args.saved]
        report(args, merged(saved), f"runs saved in {len(saved)} file(s)")
        return
    if args.code:
        sys.path.insert(0, str(args.code.resolve()))
    os.environ.setdefault("FREE_AGENT_HOME", tempfile.mkdtemp(prefix="quota-bench-home-"))
    server: Server | None = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops its cluster (finally)
    if "postgresql" in backends:
        server = open_server(args.pg_url, max_connections=max(200, 4 * max(procs_list) + 20))
        if server is None:
            backends.remove("postgresql")
    if args.code:
        import free_llm_agent

        print(f"code under test: {Path(free_llm_agent.__file__).resolve().parent.parent}", flush=True)
    runs: dict[tuple[str, int, int], list[Row]] = {}
    try:
        for round_no in range(1, max(1, args.repeat) + 1):  # the backends back to back: one load, one ratio
            for hist in dict.fromkeys((0, history)):
                for procs in procs_list:
                    for backend in backends:
                        r = cell(backend, procs, hist, seconds, server)
                        runs.setdefault((backend, procs, hist), []).append(r)
                        print(f"  {LABEL[backend]:<10} {procs:>3} processes, {hist:>7,} rows: {r['per_s']:8.0f}/s"
                              f"  p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:8.1f} ms  max {r['max_ms']:8.0f} ms"
                              f"  (run {round_no}, load {r['load']:.1f})", flush=True)
    finally:
        if server is not None:
            server.stop()
    rows = [combined(runs[k]) for k in sorted(runs, key=lambda k: (BACKENDS.index(k[0]), k[2], k[1]))]
    if rows:
        report(args, rows, f"{seconds:g} s per cell")


if __name__ == "__main__":
    main()
