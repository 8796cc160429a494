"""The quota store benchmark's report (:mod:`quota_store`): runs combined into medians with their spread,
saved runs merged, the tables (beside a baseline) and the chart."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from common import loaded_note, png_path

LABEL = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
Row = dict[str, Any]


NUMBERS = ("per_s", "p50_ms", "p99_ms", "max_ms", "fairness")


def combined(runs: list[Row]) -> Row:
    """One cell's runs as one row: the median of each number, its lowest and highest (``_lo``/``_hi``)."""
    row = dict(runs[0])
    for key in NUMBERS:
        values = sorted(float(r[key]) for r in runs)
        row[key] = statistics.median(values)
        row[f"{key}_lo"], row[f"{key}_hi"] = values[0], values[-1]
    row["n"] = sum(int(r["n"]) for r in runs)
    row["refused"] = sum(int(r["refused"]) for r in runs)
    row["load_lo"], row["load_hi"] = min(r["load"] for r in runs), max(r["load"] for r in runs)
    row.pop("load", None)
    row["runs"] = len(runs)
    row["each"] = [{k: r[k] for k in (*NUMBERS, "n", "refused", "load")} for r in runs]  # for --from's merge
    return row


def merged(saved: list[list[Row]]) -> list[Row]:
    """Saved runs (``--save`` files) as one: every cell's runs together, combined again."""
    if len(saved) == 1 and not all("each" in r for r in saved[0]):
        return saved[0]  # an older save: as it is
    runs: dict[tuple[str, int, int], list[Row]] = {}
    for rows in saved:
        for r in rows:
            base = {k: v for k, v in r.items() if k in ("backend", "procs", "history")}
            runs.setdefault(_key(r), []).extend({**base, **each} for each in r["each"])
    return [combined(r) for r in runs.values()]


def fmt(r: Row, key: str, spec: str) -> str:
    """``median`` or, over several runs, ``median (lowest–highest)``."""
    if int(r.get("runs", 1)) > 1 and f"{key}_lo" in r:
        return f"{format(r[key], spec)} ({format(r[key + '_lo'], spec)}–{format(r[key + '_hi'], spec)})"
    return format(r[key], spec)


def _key(r: Row) -> tuple[str, int, int]:
    return (str(r.get("backend", "sqlite")), int(r["procs"]), int(r["history"]))  # older saves: sqlite only


def table(rows: list[Row], baseline: list[Row]) -> str:
    """Every number of every cell (``before → now`` where the baseline has the cell)."""
    before = {_key(b): b for b in baseline}
    head = ("| backend | processes | history rows | reservations/s | p50 ms | p99 ms | max ms"
            " | least served process / mean |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        b = before.get(_key(r))

        def col(key: str, spec: str, r: Row = r, b: Row | None = b) -> str:
            return (fmt(b, key, spec) + " → " if b and key in b else "") + fmt(r, key, spec)

        lines.append(f"| {LABEL[r['backend']]} | {int(r['procs'])} | {int(r['history']):,} | {col('per_s', '.0f')}"
                     f" | {col('p50_ms', '.1f')} | {col('p99_ms', '.1f')} | {col('max_ms', '.0f')}"
                     f" | {col('fairness', '.2f')} |")
    return "\n".join(lines)


def side_by_side(rows: list[Row]) -> str:
    """SQLite and PostgreSQL in adjacent columns: reservations/s and p99 per process count and history, and
    PostgreSQL's reservations/s over SQLite's (the medians')."""
    by = {_key(r): r for r in rows}
    cells = sorted({(int(r["history"]), int(r["procs"])) for r in rows})
    lines = ["| processes | history rows | SQLite reservations/s | PostgreSQL reservations/s | SQLite p99 ms"
             " | PostgreSQL p99 ms | PostgreSQL / SQLite |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for history, procs in cells:
        s, p = by.get(("sqlite", procs, history)), by.get(("postgresql", procs, history))

        def cell_of(r: Row | None, key: str, spec: str) -> str:
            return fmt(r, key, spec) if r else "–"

        ratio = f"{p['per_s'] / s['per_s']:.2f}×" if s and p else "–"
        lines.append(f"| {procs} | {history:,} | {cell_of(s, 'per_s', '.0f')} | {cell_of(p, 'per_s', '.0f')}"
                     f" | {cell_of(s, 'p99_ms', '.1f')} | {cell_of(p, 'p99_ms', '.1f')} | {ratio} |")
    return "\n".join(lines)


def plot(rows: list[Row], baseline: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {("sqlite", False): "tab:blue", ("sqlite", True): "navy",
              ("postgresql", False): "tab:orange", ("postgresql", True): "saddlebrown"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.4))
    procs: set[int] = set()
    for data, style, label in ((baseline, ":", "before, "), (rows, "-", "")):
        for backend, history in sorted({_key(r)[::2] for r in data}):
            pts = sorted((r for r in data if _key(r)[::2] == (backend, history)), key=lambda r: r["procs"])
            xs = [r["procs"] for r in pts]
            procs.update(xs)
            name = f"{label}{LABEL[backend]}, {history:,} rows of history"
            kw = {"color": colors[(backend, history > 0)], "marker": "o" if history else "s", "label": name}
            for ax, key in ((left, "per_s"), (right, "p99_ms")):
                ax.plot(xs, [r[key] for r in pts], style, **kw)
                if all(f"{key}_lo" in r for r in pts) and any(int(r.get("runs", 1)) > 1 for r in pts):
                    ax.fill_between(xs, [r[f"{key}_lo"] for r in pts], [r[f"{key}_hi"] for r in pts],
                                    color=kw["color"], alpha=0.08, linewidth=0)  # lowest to highest run
    for ax, title in ((left, "reservations per second (median; band: lowest to highest run)"),
                      (right, "p99 latency of one reservation, ms")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sorted(procs), [str(p) for p in sorted(procs)])
        ax.minorticks_off()
        ax.set_xlabel("processes sharing one state database")
        ax.set_title(title, fontsize="medium")
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = right.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4 if len(labels) > 4 else len(labels), fontsize="small")
    fig.tight_layout(rect=(0, 0.13 if len(labels) > 4 else 0.08, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(args: argparse.Namespace, rows: list[Row], what: str) -> None:
    """Print the tables (beside ``--baseline``), save (``--save``) and draw the chart."""
    baseline = json.loads(args.baseline.read_text()) if args.baseline else []
    loads = [x for r in rows for x in (r.get("load_lo", float("nan")), r.get("load_hi", float("nan")))]
    print(f"\n{what}, {max(int(r.get('runs', 1)) for r in rows)} run(s) of each cell (median (lowest–highest)"
          f" over runs); load average {min(loads):.1f}–{max(loads):.1f} as the cells started\n\n"
          f"{table(rows, baseline)}\n")
    if len({r.get("backend", "sqlite") for r in rows}) > 1:
        print(f"{side_by_side(rows)}\n")
    print(loaded_note())
    if args.save:
        args.save.write_text(json.dumps(rows, indent=1))
    path = png_path(args, "quota_store")
    plot(rows, baseline, path)
    print(f"wrote {path}")
