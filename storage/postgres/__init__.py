"""The PostgreSQL backend: the agent's state in one database shared by many machines (one quota).

The same tables as ``agent.db`` (:mod:`.db`), LangGraph's PostgresSaver (:mod:`.checkpoints`), the run
lock as an advisory lock and the journal as a table (:mod:`.guard`), and doctor's checks of them
(:mod:`.doctor`). Picked by :mod:`storage.registry` for ``postgresql://`` URLs. Its libraries are the
``[postgres]`` extra (:data:`REQUIRES`); the modules are imported on first use, so without the extra
the registry raises :class:`storage.errors.BackendMissing` naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from free_llm_agent.storage.checkpoints import Checkpoints
    from free_llm_agent.storage.database import StateDatabase
    from free_llm_agent.storage.doctor import Check
    from free_llm_agent.storage.guard import RunGuards

EXTRA: str | None = "postgres"
REQUIRES: tuple[str, ...] = ("psycopg", "psycopg_pool", "langgraph.checkpoint.postgres")


def _url(url: str | None) -> str:
    if not url:
        raise ValueError("the PostgreSQL backend needs a postgresql:// URL")
    return url


def open_state(url: str | None, home: Path) -> StateDatabase:
    from free_llm_agent.storage.postgres.db import PgDatabase

    return PgDatabase(_url(url))


def open_checkpointer(url: str | None, home: Path) -> Checkpoints:
    from free_llm_agent.storage.postgres.checkpoints import PgCheckpoints

    return PgCheckpoints(_url(url))


def open_guards(url: str | None, home: Path) -> RunGuards:
    from free_llm_agent.storage.postgres.guard import PgGuards

    return PgGuards(_url(url))


def doctor_checks(url: str | None, home: Path) -> list[Check]:
    from free_llm_agent.storage.doctor import HomeCheck
    from free_llm_agent.storage.postgres.doctor import DatabaseCheck, PgCheckpointsCheck, PgJournalCheck, PgLocksCheck

    checkpoints = PgCheckpointsCheck(_url(url))
    return [HomeCheck(home), DatabaseCheck(_url(url)), checkpoints, PgLocksCheck(_url(url)),
            PgJournalCheck(_url(url), checkpoints)]
