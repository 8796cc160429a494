"""Free space where the state (or the work) is written: a full disk is named as such, with its device and what
is left, instead of "disk I/O error" or "cannot be opened for writing"."""

from __future__ import annotations

import errno
import os
from pathlib import Path

LOW_SPACE_BYTES = 20 * 1024 * 1024  # below this a run cannot be trusted to checkpoint (doctor reports it)
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def existing(path: Path) -> Path:
    """``path``, or its nearest folder that exists."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_point(path: Path) -> Path:
    """The mount point of the file system holding ``path`` (what ``df`` names)."""
    path = existing(path).resolve()
    device = path.stat().st_dev
    while path != path.parent and path.parent.stat().st_dev == device:
        path = path.parent
    return path


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on ``path``'s file system (None: cannot tell)."""
    try:
        st = os.statvfs(existing(path))
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def no_space(path: Path) -> str:
    """"no space left on /mnt (12 KB free)" for the file system of ``path``."""
    free = free_bytes(path)
    left = f"{free // 1024} KB free" if free is not None else "free space unknown"
    return f"no space left on {mount_point(path)} ({left})"


def is_full(path: Path) -> bool:
    free = free_bytes(path)
    return free is not None and free < LOW_SPACE_BYTES
