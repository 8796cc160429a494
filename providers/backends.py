"""Where the agent's shared state lives, chosen by one URL (``--database-url`` / ``$FREE_AGENT_DATABASE_URL``).

A backend is picked by the URL's scheme from :data:`STATE_BACKENDS`: no URL (or ``sqlite:``)
is ``agent.db`` in the home, ``postgresql://…`` is a PostgreSQL database shared by many
machines. Each gives a database object with the same interface (``transaction()``, ``query()``,
``dialect``, ``label``), on which the quota ledger, the response cache and the usage log run.
The graph layer keeps its own registry (checkpointer, run lock) keyed the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from free_llm_agent.providers.dialect import Dialect

ENV_VAR = "FREE_AGENT_DATABASE_URL"
T = TypeVar("T")


class StateDatabase(Protocol):
    """What the stores need from a backend's database (see :class:`providers.db.Database`)."""

    dialect: Dialect
    label: str
    version: int

    def transaction(self) -> AbstractContextManager[Any]: ...

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]: ...

    def close(self) -> None: ...


def _sqlite(url: str | None, home: Path) -> StateDatabase:
    from free_llm_agent.providers.db import Database

    rest = urlsplit(url).path if url else ""
    return Database(Path(rest) if rest else home / "agent.db")


def _postgres(url: str | None, home: Path) -> StateDatabase:
    from free_llm_agent.providers.db_pg import PgDatabase

    assert url is not None
    return PgDatabase(url)


STATE_BACKENDS: dict[str, Callable[[str | None, Path], StateDatabase]] = {
    "sqlite": _sqlite,
    "postgresql": _postgres,
    "postgres": _postgres,
}


class StateUnavailable(ValueError):
    """The database URL cannot be used (unknown scheme, server unreachable); the message says why."""


class UnknownBackend(StateUnavailable):
    """The database URL names no known backend."""


def resolve_database_url(url: str | None = None) -> str | None:
    """``--database-url``, else ``$FREE_AGENT_DATABASE_URL``, else None (SQLite in the home)."""
    return url or os.environ.get(ENV_VAR) or None


def scheme(url: str | None) -> str:
    """The backend's key for ``url`` ("sqlite" when none); raises :class:`UnknownBackend`."""
    if not url:
        return "sqlite"
    key = urlsplit(url).scheme.split("+", 1)[0].lower()
    if key not in STATE_BACKENDS:
        known = ", ".join(f"{k}://" for k in STATE_BACKENDS)
        raise UnknownBackend(f"database URL {url.split('@')[-1]!r}: unknown scheme {key!r} (known: {known})")
    return key


def for_url(registry: Mapping[str, T], url: str | None) -> T:
    """The entry of a backend registry (state database, checkpointer, run guards, doctor checks) for ``url``."""
    return registry[scheme(url)]


def open_state(url: str | None, home: Path) -> StateDatabase:
    """The shared-state database for ``url`` (None: ``agent.db`` in ``home``), migrated."""
    return for_url(STATE_BACKENDS, url)(url, home)
