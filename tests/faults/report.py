"""The fault report's rows (one per cell of the fault suites) and their markdown tables; the
session fixture ``fault_report`` (``tests/faults/conftest.py``) writes them to ``$FLA_FAULT_REPORT``."""

from __future__ import annotations

from dataclasses import dataclass, field


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
