"""The checkpointer's interface: LangGraph's saver, plus what the CLI needs beyond it.

:func:`storage.registry.open_checkpointer` opens one by the database URL's scheme: ``checkpoints.db``
in the home (LangGraph's ``SqliteSaver``, :mod:`storage.sqlite.checkpoints`) or LangGraph's
``PostgresSaver`` (:mod:`storage.postgres.checkpoints`), so a thread started on one machine is resumed
on another. Either raises :class:`storage.errors.CheckpointUnreadable` for a thread whose checkpoint
does not decode (the other threads keep working).
"""

from __future__ import annotations

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

    def close(self) -> None: ...
