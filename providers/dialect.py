"""The few SQL expressions that differ between the state backends (SQLite, PostgreSQL).

Everything else the ledger, cache and usage log write is portable SQL with ``?`` placeholders;
each backend's database object carries its :class:`Dialect` as ``db.dialect``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str
    greatest_fn: str  # the scalar maximum of two values
    utc_date_tpl: str  # YYYY-MM-DD (UTC) of an epoch-seconds expression, ``{}`` = the expression

    def greatest(self, a: str, b: str) -> str:
        return f"{self.greatest_fn}({a}, {b})"

    def utc_date(self, expr: str) -> str:
        return self.utc_date_tpl.format(expr)


SQLITE = Dialect("sqlite", "MAX", "date({}, 'unixepoch')")
POSTGRES = Dialect("postgresql", "GREATEST", "to_char(to_timestamp({}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
