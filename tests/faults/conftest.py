"""The fault report: one row per cell of the fault suites.

With ``FLA_FAULT_REPORT=path.md`` set, the rows are appended to that file as markdown tables (one
per suite) when the session ends, ready to paste into a closing note::

    FLA_FAULT_REPORT=/tmp/faults.md uv run pytest tests/faults
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPORT_ENV = "FLA_FAULT_REPORT"


@dataclass
class Row:
    cell: str
    survived: bool
    faulty_requests: int | str
    total_requests: int
    seconds: float
    note: str = ""


@dataclass
class FaultReport:
    suites: dict[str, tuple[str, list[Row]]] = field(default_factory=dict)

    def add(self, suite: str, row: Row, *, faulty_header: str = "requests to the faulty one") -> None:
        self.suites.setdefault(suite, (faulty_header, []))[1].append(row)

    def markdown(self) -> str:
        out: list[str] = []
        for suite, (faulty_header, rows) in self.suites.items():
            out += [f"### {suite}", "", f"| cell | survived | {faulty_header} | total requests | seconds | note |",
                    "|---|---|---|---|---|---|"]
            out += [f"| {r.cell} | {'yes' if r.survived else '**NO**'} | {r.faulty_requests} | {r.total_requests} "
                    f"| {r.seconds:.1f} | {r.note} |" for r in rows]
            out.append("")
        return "\n".join(out)


@pytest.fixture(scope="session")
def fault_report() -> Iterator[FaultReport]:
    report = FaultReport()
    yield report
    target = os.environ.get(REPORT_ENV)
    if target and report.suites:
        with Path(target).open("a", encoding="utf-8") as fh:
            fh.write(report.markdown() + "\n")
