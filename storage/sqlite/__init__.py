"""The SQLite backend: the agent's state as files in the home (one machine).

``agent.db`` (quota, cache, usage, answer grades: :mod:`.db`), ``checkpoints.db`` (LangGraph's
SqliteSaver: :mod:`.checkpoints`), ``locks/`` and ``journal/`` (:mod:`.guard`), and doctor's checks of
them (:mod:`.doctor`, :mod:`.doctor_home`). Picked by :mod:`storage.registry` when there is no database
URL (or a ``sqlite:`` one: its path is ``agent.db``'s); the modules are imported on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from free_llm_agent.storage.checkpoints import Checkpoints
    from free_llm_agent.storage.database import StateDatabase
    from free_llm_agent.storage.doctor import Check
    from free_llm_agent.storage.guard import RunGuards

EXTRA: str | None = None  # sqlite3 is in the standard library; langgraph-checkpoint-sqlite is a dependency
REQUIRES: tuple[str, ...] = ()


def open_state(url: str | None, home: Path) -> StateDatabase:
    from free_llm_agent.storage.sqlite.db import Database

    rest = urlsplit(url).path if url else ""
    return Database(Path(rest) if rest else home / "agent.db")


def open_checkpointer(url: str | None, home: Path) -> Checkpoints:
    from free_llm_agent.storage.sqlite.checkpoints import SqliteCheckpoints

    return SqliteCheckpoints(home)


def open_guards(url: str | None, home: Path) -> RunGuards:
    from free_llm_agent.storage.sqlite.guard import FileGuards

    return FileGuards(home)


def doctor_checks(url: str | None, home: Path) -> list[Check]:
    from free_llm_agent.storage.doctor import HomeCheck
    from free_llm_agent.storage.sqlite.doctor import AgentDbCheck, CheckpointsCheck
    from free_llm_agent.storage.sqlite.doctor_home import JournalCheck, LocksCheck

    checkpoints = CheckpointsCheck(home / "checkpoints.db")
    return [HomeCheck(home), AgentDbCheck(home / "agent.db"), checkpoints, LocksCheck(home),
            JournalCheck(home, checkpoints.known_threads)]
