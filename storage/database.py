"""The state database's interface: what the quota ledger, response cache, usage log and answer grades need.

A backend's database object (``agent.db`` in the home: :mod:`storage.sqlite.db`; PostgreSQL:
:mod:`storage.postgres.db`) is opened by :func:`storage.registry.open_state`, migrated. The stores
(:mod:`providers.quota`, :mod:`providers.cache`, :mod:`providers.usage`, :mod:`providers.answers`) write
portable SQL with ``?`` placeholders on it; the few expressions that differ come from ``db.dialect``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Dialect:
    """The few SQL expressions that differ between the state backends."""

    name: str
    greatest_fn: str  # the scalar maximum of two values
    utc_date_tpl: str  # YYYY-MM-DD (UTC) of an epoch-seconds expression, ``{}`` = the expression

    def greatest(self, a: str, b: str) -> str:
        return f"{self.greatest_fn}({a}, {b})"

    def utc_date(self, expr: str) -> str:
        return self.utc_date_tpl.format(expr)


class StateDatabase(Protocol):
    """What the stores need from a backend's database.

    ``transaction()`` is one writer at a time across every process sharing the database (the context
    value has sqlite3-style ``execute``/``executemany``); ``query()`` reads outside a transaction;
    ``version`` is the schema version after the migrations (greater than this install knows: made by a
    newer version); ``label`` names the database in messages (a file, or a URL without its password)."""

    dialect: Dialect
    label: str
    version: int

    def transaction(self) -> AbstractContextManager[Any]: ...

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]: ...

    def close(self) -> None: ...
