"""The checkpointer's interface: LangGraph's saver, plus what the CLI needs beyond it.

:func:`storage.registry.open_checkpointer` opens one by the database URL's scheme: ``checkpoints.db``
in the home (LangGraph's ``SqliteSaver``, :mod:`storage.sqlite.checkpoints`) or LangGraph's
``PostgresSaver`` (:mod:`storage.postgres.checkpoints`), so a thread started on one machine is resumed
on another. Either raises :class:`storage.errors.CheckpointUnreadable` for a thread whose checkpoint
does not decode (the other threads keep working).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver


class Checkpoints(Protocol):
    """A backend's checkpointer, with what the CLI needs beyond LangGraph's interface."""

    @property
    def saver(self) -> BaseCheckpointSaver[Any]: ...

    @property
    def label(self) -> str:
        """Where the checkpoints are, for messages (a file, or a URL without its password)."""
        ...

    def thread_ids(self) -> tuple[list[str], bool]:
        """Every readable thread id, oldest first, and whether none was missed."""
        ...

    def started(self) -> dict[str, datetime]:
        """When each thread's first checkpoint was written (``checkpoint_time`` of its smallest id); threads
        that cannot be read are left out."""
        ...

    def close(self) -> None: ...


_UUID_EPOCH = datetime(1582, 10, 15, tzinfo=UTC)  # a version 6 UUID counts 100 ns steps from here


def checkpoint_time(checkpoint_id: str) -> datetime | None:
    """When a checkpoint was written, read from its id (LangGraph's ids are version 6 UUIDs: time-ordered,
    the time in their first 60 bits); None for an id of another kind."""
    try:
        value = uuid.UUID(str(checkpoint_id))
    except ValueError:
        return None
    if value.version != 6:
        return None
    n = value.int
    steps = ((n >> 80) << 12) | ((n >> 64) & 0x0FFF)
    return _UUID_EPOCH + timedelta(microseconds=steps // 10)
