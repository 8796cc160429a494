"""Quota store throughput and latency: reservations/s and p50/p99/max per reservation.

N processes share one ``agent.db`` and reserve slots on one provider as fast as they can
(``QuotaStore.reserve``, nothing else), for ``--seconds`` each cell, at 1/4/8/50 processes,
on an empty ledger and on one holding ``--history`` request rows of this month (written in
the schema-1 layout, so the code under test migrates them as it would a user's file).
The clock is synthetic (mid-month, mid-day UTC, advancing with real time), so the day and
month windows always hold the history. Latency includes waiting for the write lock.

Run (one command; prints the table, writes docs/quota_store.png):

    uv run python bench/quota_store.py

Options: ``--seconds 5``, ``--procs 1,4,8,50``, ``--history 100000``, ``--save FILE.json``
(this run's numbers), ``--baseline FILE.json`` (a saved run drawn dashed and printed beside),
``--code DIR`` (import ``providers``/``config`` from DIR instead: measure another version, e.g.
``git archive main providers config | tar -x -C /tmp/main-src`` then ``--code /tmp/main-src``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
T_BASE = datetime(2026, 3, 15, 12, 0, tzinfo=UTC).timestamp()
MONTH_START = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
LIMITS: dict[str, Any] = {"requests_per_day": 10_000_000, "requests_per_month": 100_000_000, "tokens_per_day": 10**12}


def _limits() -> Any:
    from config import RateLimit

    return lambda _name: RateLimit(**LIMITS)


def make_home(home: Path, history: int) -> None:
    """A schema-1 ``agent.db`` with ``history`` request rows spread over this month, migrated by the code under test."""
    from providers.db import MIGRATIONS, Database

    home.mkdir(parents=True, exist_ok=True)
    path = home / "agent.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN")
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    span = T_BASE - 120 - MONTH_START
    conn.executemany(
        "INSERT INTO requests(provider, ts, tokens) VALUES ('p', ?, 100)",
        ((MONTH_START + span * i / max(history, 1),) for i in range(history)),
    )
    conn.execute("COMMIT")
    conn.close()
    from providers.quota import QuotaStore

    db = Database(path)
    QuotaStore(db, _limits()).prune(T_BASE)  # what a Router does when it opens the home
    db.close()


def worker(home: str, seconds: float, barrier: Any, origin: Any, out: Any) -> None:
    from providers.db import Database
    from providers.quota import QuotaStore, Slot

    store = QuotaStore(Database(Path(home) / "agent.db"), _limits())
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
    out.put((time.time() - start, latencies, refused))


def cell(procs: int, history: int, seconds: float) -> dict[str, float]:
    ctx = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="quota-bench-") as tmp:
        home = Path(tmp) / "home"
        make_home(home, history)
        origin = ctx.Value("d", 0.0)
        barrier, out = ctx.Barrier(procs, action=lambda: setattr(origin, "value", time.time())), ctx.Queue()
        workers = [ctx.Process(target=worker, args=(str(home), seconds, barrier, origin, out)) for _ in range(procs)]
        for w in workers:
            w.start()
        results = [out.get(timeout=seconds + 900) for _ in workers]
        for w in workers:
            w.join()
    wall = max(r[0] for r in results)
    lat = sorted(x for r in results for x in r[1])
    return {
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
    }


def table(rows: list[dict[str, float]], baseline: list[dict[str, float]]) -> str:
    before = {(b["procs"], b["history"]): b for b in baseline}
    head = "| processes | history rows | reservations/s | p50 ms | p99 ms | max ms | least served process / mean |"
    lines = [head, "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        b = before.get((r["procs"], r["history"]))

        def col(key: str, fmt: str, r: dict[str, float] = r, b: dict[str, float] | None = b) -> str:
            return (format(b[key], fmt) + " → " if b and key in b else "") + format(r[key], fmt)

        lines.append(f"| {int(r['procs'])} | {int(r['history']):,} | {col('per_s', '.0f')} | {col('p50_ms', '.1f')}"
                     f" | {col('p99_ms', '.1f')} | {col('max_ms', '.0f')} | {col('fairness', '.2f')} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, float]], baseline: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for data, style, label in ((baseline, "--", "before"), (rows, "-", "after")):
        for history in sorted({int(r["history"]) for r in data}):
            pts = sorted((r for r in data if r["history"] == history), key=lambda r: r["procs"])
            xs = [r["procs"] for r in pts]
            name = f"{label}, {history:,} rows of history" if baseline else f"{history:,} rows of history"
            left.plot(xs, [r["per_s"] for r in pts], style, marker="o", label=name)
            right.plot(xs, [r["p99_ms"] for r in pts], style, marker="o", label=name)
    for ax, title in ((left, "reservations per second"), (right, "p99 latency of one reservation (ms)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("processes sharing agent.db")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    right.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per cell")
    parser.add_argument("--procs", default="1,4,8,50")
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--save", type=Path, help="write this run's numbers as JSON")
    parser.add_argument("--baseline", type=Path, help="a run saved with --save, shown beside this one")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "quota_store.png")
    parser.add_argument("--code", type=Path, help="import providers/config from this folder instead")
    args = parser.parse_args()
    sys.path.insert(0, str(args.code.resolve() if args.code else ROOT))
    os.environ.setdefault("FREE_AGENT_HOME", tempfile.mkdtemp(prefix="quota-bench-home-"))
    rows = []
    for history in (0, args.history):
        for procs in (int(p) for p in args.procs.split(",")):
            rows.append(cell(procs, history, args.seconds))
            r = rows[-1]
            print(f"  {procs:>3} processes, {history:>7,} rows: {r['per_s']:8.0f}/s  p50 {r['p50_ms']:7.1f} ms"
                  f"  p99 {r['p99_ms']:8.1f} ms  max {r['max_ms']:8.0f} ms", flush=True)
    baseline = json.loads(args.baseline.read_text()) if args.baseline else []
    print(table(rows, baseline))
    if args.save:
        args.save.write_text(json.dumps(rows, indent=1))
    plot(rows, baseline, args.plot)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
