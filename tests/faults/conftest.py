"""The fault report: one row per cell of the fault suites.

With ``FLA_FAULT_REPORT=path.md`` set, the rows are appended to that file as markdown tables (one
per suite) when the session ends, ready to paste into a closing note::

    FLA_FAULT_REPORT=/tmp/faults.md uv run pytest tests/faults
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.report import FaultReport

REPORT_ENV = "FLA_FAULT_REPORT"


@pytest.fixture(scope="session")
def fault_report() -> Iterator[FaultReport]:
    report = FaultReport()
    yield report
    target = os.environ.get(REPORT_ENV)
    if target and report.suites:
        with Path(target).open("a", encoding="utf-8") as fh:
            fh.write(report.markdown() + "\n")
