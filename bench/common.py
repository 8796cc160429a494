"""Helpers shared by the benchmarks: markdown tables, PNG output, the repo on sys.path."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def add_output_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tiny", action="store_true", help="smallest size (the smoke test); PNG goes to a temp dir")
    parser.add_argument("--png", type=Path, help="where to write the chart (default docs/<name>.png)")


def png_path(args: argparse.Namespace, name: str) -> Path:
    if args.png is not None:
        return Path(args.png)
    if args.tiny:
        return Path(tempfile.gettempdir()) / f"fla-bench-{name}.png"
    DOCS.mkdir(exist_ok=True)
    return DOCS / f"{name}.png"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000 if samples else float("nan")


def plt_figure(width: float = 8.0, height: float = 4.5, ncols: int = 1):  # type: ignore[no-untyped-def]
    """A matplotlib (Agg) figure and a list of ``ncols`` axes."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    return fig, list(axes[0])


def save(fig, path: Path) -> None:  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nchart: {path}")


def loaded_note() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores, load average {load:.2f} at the end (other work shares the machine)"
