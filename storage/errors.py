"""The errors of the storage room, the same whichever backend raised them.

Callers (the runner, the CLI) catch these and never a backend's own exception types: a SQLite file
that is damaged or unwritable is :class:`StateFileError`; a database that cannot be reached or used is
:class:`StateUnavailable` (its subclasses: :class:`UnknownBackend` for a URL no backend serves,
:class:`BackendMissing` when the backend's libraries are not installed); a thread whose checkpoint
does not decode is :class:`CheckpointUnreadable`; a thread another run holds is :class:`ThreadBusy`.
This module imports nothing, so the CLI can name these classes before anything heavy is loaded.
"""

from __future__ import annotations

from pathlib import Path

DAMAGED, UNWRITABLE, FULL = "damaged", "unwritable", "full"


class StateUnavailable(ValueError):
    """The database URL cannot be used (unknown scheme, server unreachable); the message says why."""


class UnknownBackend(StateUnavailable):
    """The database URL names no known backend."""


class BackendMissing(StateUnavailable):
    """The database URL names a backend whose libraries are not installed (the message names the extra)."""

    def __init__(self, label: str, extra: str, missing: str) -> None:
        super().__init__(f"the database URL {label} needs PostgreSQL's libraries, which are not installed "
                         f"({missing} is missing): pip install 'free-llm-agent[{extra}]' "
                         f"(in a checkout: uv sync --extra {extra})")
        self.extra, self.missing = extra, missing


class StateFileError(RuntimeError):
    """A state file in the home cannot be used: ``kind`` is ``damaged``, ``unwritable`` or ``full`` (its disk;
    ``reason`` then names the device and what is free).

    The CLI turns it into a one-line message naming ``path`` and the fix, exit code 2.
    """

    def __init__(self, path: Path, kind: str, reason: str) -> None:
        what = {DAMAGED: "is damaged", FULL: "cannot be written"}.get(kind, "cannot be opened for writing")
        super().__init__(f"{path} {what} ({reason})")
        self.path, self.kind, self.reason = path, kind, reason


class CheckpointUnreadable(RuntimeError):
    """The checkpoints of one thread cannot be decoded (the rest of the store may be fine).

    ``path`` is the file for a store in the home, None for a shared database (``where`` names it)."""

    def __init__(self, thread_id: str, path: Path | None, reason: str, where: str = "") -> None:
        super().__init__(f"thread {thread_id!r} in {where or path} cannot be read ({reason})")
        self.thread_id, self.path, self.reason = thread_id, path, reason


class ThreadBusy(RuntimeError):
    """Another process is running this thread."""

    def __init__(self, thread_id: str, owner: str) -> None:
        super().__init__(f"thread {thread_id} is running ({owner}); wait for it to finish, or stop it first")
        self.thread_id = thread_id
        self.owner = owner
