"""sqlite3 and OS errors about a file in the home, as :class:`storage.errors.StateFileError` (naming the file)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from free_llm_agent.storage.errors import DAMAGED, FULL, UNWRITABLE, StateFileError
from free_llm_agent.storage.space import FULL_ERRNOS, is_full, no_space

_UNWRITABLE_HINTS = ("unable to open", "readonly", "read-only", "disk is full", "disk i/o", "permission")


def state_error(path: Path, exc: BaseException) -> StateFileError | None:
    """The :class:`StateFileError` that ``exc`` (raised using ``path``) means, or None (e.g. "database is locked")."""
    if isinstance(exc, StateFileError):
        return exc
    reason = str(exc) or type(exc).__name__
    text = reason.lower()
    full = (isinstance(exc, OSError) and exc.errno in FULL_ERRNOS) or "disk is full" in text
    if full or ("disk i/o" in text and is_full(path)):  # SQLite may say only "disk I/O error"
        return StateFileError(path, FULL, no_space(path))
    if isinstance(exc, OSError):
        return StateFileError(path, UNWRITABLE, reason)
    if isinstance(exc, sqlite3.OperationalError):
        if any(hint in text for hint in _UNWRITABLE_HINTS):
            return StateFileError(path, UNWRITABLE, reason)
        return StateFileError(path, DAMAGED, reason) if "malformed" in text else None
    if isinstance(exc, sqlite3.DatabaseError):  # "file is not a database", "database disk image is malformed" …
        return StateFileError(path, DAMAGED, reason)
    return None


@contextmanager
def translated(path: Path) -> Iterator[None]:
    """Re-raise sqlite/OS errors about ``path`` as :class:`StateFileError` (others unchanged)."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        error = state_error(path, exc)
        if error is None or error is exc:
            raise
        raise error from exc
