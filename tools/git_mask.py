"""The root ``.git`` placeholder: while a sandbox lives, a working directory (WS) without a ``.git`` gets an empty
one, which the sandbox binds read-only, so code cannot create the root repository (a ``core.fsmonitor`` there
would run on the user's next ``git status``).

:func:`reserve_root_mask` creates (or shares) the empty ``WS/.git``; git (checked with 2.39) skips an empty ``.git``
dir as if it were absent and finds the parent repository. Each reservation is a marker file
``<pid>-<token>`` under ``markers_dir`` (one folder per WS, locked while read); :func:`release_root_mask` removes the
placeholder when no other live reservation holds it and it is still empty; a crashed agent's leftover is swept at
the next reservation (:func:`sweep_stale_masks`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RootGitMask:
    """An empty ``WS/.git`` placeholder reserved for one sandbox; bind an empty read-only dir over ``path``."""
    ws: Path
    path: Path
    marker: Path

    def __fspath__(self) -> str:
        return str(self.path)


def marker_folder(ws: Path, markers_dir: Path) -> Path:
    """Where the reservations of ``ws``'s placeholder are recorded (one file ``<pid>-<token>`` each)."""
    return markers_dir / hashlib.sha256(os.fsencode(os.path.realpath(ws))).hexdigest()[:24]


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[list[Path]]:
    """Hold ``folder``'s lock (reservations from other processes wait); yields its markers."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield [p for p in folder.iterdir() if p.name != ".lock"]
    finally:
        os.close(fd)


def _alive(marker: Path) -> bool:
    """Whether the marker's process runs (this process's markers always count: it may hold two sandboxes)."""
    pid = int(marker.name.partition("-")[0]) if marker.name.partition("-")[0].isdigit() else 0
    try:
        if 0 < pid != os.getpid():
            os.kill(pid, 0)
    except PermissionError:
        return True
    except OSError:
        return False
    return pid > 0


def _sweep(ws: Path, markers: list[Path]) -> tuple[list[Path], bool]:
    """(live markers, whether a placeholder nobody alive holds was removed)."""
    live = [m for m in markers if _alive(m)]
    for m in set(markers) - set(live):
        m.unlink(missing_ok=True)
    return live, bool(markers) and not live and _rmdir(ws / ".git")


def _rmdir(path: Path) -> bool:
    try:
        os.rmdir(path)  # only ever removes an empty directory, never a symlink or a file
    except OSError:
        return False
    return True


def sweep_stale_masks(ws: Path, markers_dir: Path) -> bool:
    """Drop dead reservations of ``ws``; remove a leftover empty ``WS/.git`` nobody alive holds. True if removed."""
    root = Path(os.path.realpath(ws))
    with _locked(marker_folder(root, markers_dir)) as markers:
        return _sweep(root, markers)[1]


def reserve_root_mask(ws: Path, markers_dir: Path) -> RootGitMask | None:
    """Create (or share) an empty ``WS/.git`` for the sandbox to bind read-only; None when WS has its own
    ``.git`` (bind that read-only instead). Raises OSError when the placeholder cannot be created."""
    root = Path(os.path.realpath(ws))
    git, folder = root / ".git", marker_folder(root, markers_dir)
    with _locked(folder) as markers:
        live = _sweep(root, markers)[0]
        ours = live and os.path.isdir(git) and not os.path.islink(git) and not os.listdir(git)
        if os.path.lexists(git) and not ours:
            return None
        marker = folder / f"{os.getpid()}-{os.urandom(8).hex()}"
        marker.write_bytes(os.fsencode(root))
        try:
            if not os.path.lexists(git):
                os.mkdir(git, 0o755)
                os.chmod(git, 0o755)  # whatever the umask
        except OSError:
            marker.unlink(missing_ok=True)
            raise
        return RootGitMask(root, git, marker)


def release_root_mask(handle: RootGitMask) -> None:
    """Drop this reservation; remove ``WS/.git`` when no other live one remains and it is still empty."""
    with _locked(handle.marker.parent) as markers:
        handle.marker.unlink(missing_ok=True)
        if not any(m != handle.marker and _alive(m) for m in markers):
            _rmdir(handle.path)
