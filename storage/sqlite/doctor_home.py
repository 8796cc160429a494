"""The doctor's checks of the run guards in the home: ``locks/`` and ``journal/`` (see :mod:`storage.doctor`).

Nothing is deleted: a damaged file is renamed ``NAME.damaged-YYYYMMDDTHHMMSSZ`` (with its
``-wal``/``-shm``; :func:`move_aside`). A stale lock is cleared (emptied while holding it, exactly what
a normal release does) rather than unlinked: unlinking a lock file can let two runs hold two different
files of one thread.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, nothing to find stale
    fcntl = None  # type: ignore[assignment]

from free_llm_agent.storage.doctor import Finding
from free_llm_agent.storage.guard import held_here
from free_llm_agent.storage.sqlite.guard import file_name

DAMAGED_MARK = ".damaged-"


def aside_name(path: Path, stamp: str) -> Path:
    """``NAME.damaged-STAMP`` (``-2``, ``-3`` … if taken)."""
    target, n = path.with_name(f"{path.name}{DAMAGED_MARK}{stamp}"), 1
    while any(Path(f"{target}{s}").exists() for s in ("", "-wal", "-shm")):
        n += 1
        target = path.with_name(f"{path.name}{DAMAGED_MARK}{stamp}-{n}")
    return target


def move_aside(path: Path, stamp: str) -> Path:
    """Rename ``path`` and its ``-wal``/``-shm`` to ``NAME.damaged-STAMP`` (SQLite pairs them by name)."""
    target = aside_name(path, stamp)
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, f"{target}{suffix}")
    return target


def _lock_state(path: Path) -> tuple[str, str]:
    """(``held`` | ``stale`` | ``idle``, the holder's note) — never blocks."""
    owner = ""
    with contextlib.suppress(OSError):
        owner = path.read_text(encoding="utf-8", errors="replace").strip()
    if held_here(str(path)):
        return "held", owner
    if fcntl is None:
        return "idle", owner
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return "idle", owner
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return "held", owner
    os.close(fd)  # releases the flock
    return ("stale" if owner else "idle"), owner


class LocksCheck:
    """``locks/``: a lock whose holder died keeps its note but no flock — stale. A held lock is a run."""

    name = "locks"

    def __init__(self, home: Path) -> None:
        self.root = home / "locks"
        self.running: list[str] = []

    def _files(self) -> list[Path]:
        return sorted(self.root.glob("*.lock")) if self.root.is_dir() else []

    def check(self) -> list[Finding]:
        findings, idle = [], 0
        self.running = []
        if self.root.exists() and not self.root.is_dir():
            return [Finding("locks/", problem="is not a folder: no run can take a thread lock",
                            fix=f"move {self.root} out of the way")]
        for path in self._files():
            state, owner = _lock_state(path)
            name = f"locks/{path.name}"
            if state == "stale":
                findings.append(Finding(name, problem=f"stale lock: its holder is gone ({owner})",
                                        fix="--repair clears it", repairable=True))
            elif state == "held":
                self.running.append(f"{path.stem} ({owner or 'running'})")
                findings.append(Finding(name, detail=f"held: a run is in progress ({owner or 'this process'})"))
            else:
                idle += 1
        findings.append(Finding("locks/", detail=f"{idle} idle, {len(self.running)} held"))
        return findings

    def repair(self, stamp: str) -> list[str]:
        done = []
        for path in self._files():
            if fcntl is None or _lock_state(path)[0] != "stale":
                continue
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                owner = os.pread(fd, 200, 0).decode(errors="replace").strip()
                os.ftruncate(fd, 0)
                done.append(f"cleared stale lock locks/{path.name} ({owner})")
            except BlockingIOError:  # taken by a new run meanwhile: not stale any more
                pass
            finally:
                os.close(fd)
        return done


class JournalCheck:
    """``journal/``: half-written ``.tmp`` files, entries that do not parse, entries of unknown threads."""

    name = "journal"

    def __init__(self, home: Path, known_threads: Callable[[], set[str] | None]) -> None:
        self.root = home / "journal"
        self.known_threads = known_threads

    def _leftovers(self) -> list[tuple[Path, str]]:
        if not self.root.is_dir():
            return []
        known = self.known_threads()
        names = None if known is None else {file_name(t) for t in known}
        found = []
        for path in sorted(self.root.iterdir()):
            if DAMAGED_MARK in path.name or not path.is_file():
                continue
            if path.suffix == ".tmp":
                found.append((path, "half-written entry of a run that stopped mid-write"))
                continue
            if path.suffix != ".json":
                continue
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError) as exc:
                found.append((path, f"unreadable entry ({exc})"))
                continue
            if names is not None and path.stem not in names:
                found.append((path, "entry of a thread that has no checkpoints"))
        return found

    def check(self) -> list[Finding]:
        leftovers = self._leftovers()
        findings = [Finding(f"journal/{p.name}", problem=why, fix="--repair moves it aside", repairable=True)
                    for p, why in leftovers]
        count = len(list(self.root.glob("*.json"))) if self.root.is_dir() else 0
        return [*findings, Finding("journal/", detail=f"{count} entries, {len(leftovers)} left over")]

    def repair(self, stamp: str) -> list[str]:
        return [f"moved journal/{p.name} aside to {move_aside(p, stamp).name} ({why})"
                for p, why in self._leftovers()]
