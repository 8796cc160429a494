"""Where the agent's durable state lives, chosen by one URL (``--database-url`` / ``$FREE_AGENT_DATABASE_URL``).

The one place that knows the backends: :data:`BACKENDS` maps the URL's scheme to an implementation
package — no URL (or ``sqlite:``) is files in the home (``agent.db``, ``checkpoints.db``, ``locks/``,
``journal/``: :mod:`storage.sqlite`), ``postgresql://…`` a PostgreSQL database shared by many machines
(:mod:`storage.postgres`, the ``[postgres]`` extra). An implementation is imported only when a URL
asks for it. Each gives the same four things:

* :func:`open_state` — the state database (:class:`storage.database.StateDatabase`), migrated;
* :func:`open_checkpointer` — LangGraph's checkpointer (:class:`storage.checkpoints.Checkpoints`);
* :func:`open_guards` — the run lock and the task journal (:class:`storage.guard.RunGuards`);
* :func:`doctor_checks` — ``doctor``'s checks (:class:`storage.doctor.Check`).

Nothing outside this module and the implementation packages imports an implementation
(``tests/storage/test_import_rule.py`` checks it).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast
from urllib.parse import urlsplit

from free_llm_agent.storage.errors import BackendMissing, UnknownBackend
from free_llm_agent.storage.urls import redacted

if TYPE_CHECKING:
    from free_llm_agent.storage.checkpoints import Checkpoints
    from free_llm_agent.storage.database import StateDatabase
    from free_llm_agent.storage.doctor import Check
    from free_llm_agent.storage.guard import RunGuards

ENV_VAR = "FREE_AGENT_DATABASE_URL"

# The URL's scheme -> the implementation package (its module-level functions are :class:`Backend`).
BACKENDS: dict[str, str] = {
    "sqlite": "free_llm_agent.storage.sqlite",
    "postgresql": "free_llm_agent.storage.postgres",
    "postgres": "free_llm_agent.storage.postgres",
}


class Backend(Protocol):
    """What an implementation package provides (as module-level names)."""

    EXTRA: str | None  # the extra that installs its libraries (None: always installed)
    REQUIRES: tuple[str, ...]  # the modules of that extra: a missing one is :class:`BackendMissing`

    def open_state(self, url: str | None, home: Path) -> StateDatabase: ...

    def open_checkpointer(self, url: str | None, home: Path) -> Checkpoints: ...

    def open_guards(self, url: str | None, home: Path) -> RunGuards: ...

    def doctor_checks(self, url: str | None, home: Path) -> list[Check]: ...


def resolve_database_url(url: str | None = None) -> str | None:
    """``--database-url``, else ``$FREE_AGENT_DATABASE_URL``, else None (SQLite in the home)."""
    return url or os.environ.get(ENV_VAR) or None


def scheme(url: str | None) -> str:
    """The backend's key for ``url`` ("sqlite" when none); raises :class:`UnknownBackend`."""
    if not url:
        return "sqlite"
    key = urlsplit(url).scheme.split("+", 1)[0].lower()
    if key not in BACKENDS:
        known = ", ".join(f"{k}://" for k in BACKENDS)
        raise UnknownBackend(f"database URL {url.split('@')[-1]!r}: unknown scheme {key!r} (known: {known})")
    return key


def backend(url: str | None) -> Backend:
    """The implementation package for ``url``, imported now (its heavy libraries load when it opens something)."""
    return cast("Backend", importlib.import_module(BACKENDS[scheme(url)]))


def _missing(exc: ImportError, requires: tuple[str, ...]) -> str | None:
    """The required module ``exc`` says is missing, or None (an import error of something else)."""
    name = exc.name or ""
    return next((r for r in requires if name == r or name.startswith(r + ".")), None)


def _opened(url: str | None, what: str, home: Path) -> object:
    impl = backend(url)
    try:
        return getattr(impl, what)(url, home)
    except ImportError as exc:
        missing = _missing(exc, impl.REQUIRES)
        if missing is None or impl.EXTRA is None:
            raise
        raise BackendMissing(redacted(url or ""), impl.EXTRA, missing) from None


def open_state(url: str | None, home: Path) -> StateDatabase:
    """The shared-state database for ``url`` (None: ``agent.db`` in ``home``), migrated."""
    return cast("StateDatabase", _opened(url, "open_state", home))


def open_checkpointer(url: str | None, home: Path) -> Checkpoints:
    """The checkpointer for ``url`` (None: ``checkpoints.db`` in ``home``)."""
    return cast("Checkpoints", _opened(url, "open_checkpointer", home))


def open_guards(url: str | None, home: Path) -> RunGuards:
    """The run guards for ``url`` (None: files in ``home``); a PostgreSQL URL shares them across machines."""
    return cast("RunGuards", _opened(url, "open_guards", home))


def doctor_checks(url: str | None, home: Path) -> list[Check]:
    """The checks of the state in ``home`` and, with a database URL, in that database."""
    return cast("list[Check]", _opened(url, "doctor_checks", home))
