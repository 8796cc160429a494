"""``doctor [--repair]``: check the home and its databases; repair moves damaged files aside.

Each part of the state is a :class:`Check` — it reports :class:`Finding` s and, asked to, repairs
what it found. The SQLite backend's checks (``agent.db``, ``checkpoints.db``) live in
:mod:`graph.doctor_sqlite`; the home folder, ``locks/`` and ``journal/`` are checked here. Another
storage backend has its own checks (:data:`DOCTOR_BACKENDS`; PostgreSQL's in :mod:`graph.doctor_pg`)
— no caller branches on the backend.

Nothing is deleted: a damaged file is renamed ``NAME.damaged-YYYYMMDDTHHMMSSZ`` (with its
``-wal``/``-shm``), and what is still readable is copied into a fresh file. A stale lock is cleared
(emptied while holding it, exactly what a normal release does) rather than unlinked: unlinking a
lock file can let two runs hold two different files of one thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, nothing to find stale
    fcntl = None  # type: ignore[assignment]

from free_llm_agent.graph.guard import held_here

DAMAGED_MARK = ".damaged-"


@dataclass
class Finding:
    """One line of the report. ``problem`` empty: healthy (``detail`` says what was checked)."""

    subject: str
    detail: str = ""
    problem: str = ""
    fix: str = ""
    repairable: bool = False

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclass
class Report:
    home: Path
    database: str = ""  # the shared database checked (password hidden), "" for SQLite files in the home
    findings: list[Finding] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)  # what --repair did
    repaired: bool = False

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def to_json(self) -> dict[str, Any]:
        return {"home": str(self.home), "database": self.database or None, "healthy": not self.problems,
                "repaired": self.repaired,
                "findings": [asdict(f) | {"ok": f.ok} for f in self.findings], "actions": self.actions}


class Check(Protocol):
    """One part of the state. ``repair`` runs only after ``check`` found a repairable problem."""

    name: str

    def check(self) -> list[Finding]: ...

    def repair(self, stamp: str) -> list[str]: ...


def redacted_url(url: str | None) -> str:
    if not url:
        return ""
    from free_llm_agent.providers.db_pg import redacted

    return redacted(url)


def stamp_now() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


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


class HomeCheck:
    """The home folder exists and files can be created in it."""

    name = "home"

    def __init__(self, home: Path) -> None:
        self.home = home
        self.writable = True

    def check(self) -> list[Finding]:
        try:
            with tempfile.NamedTemporaryFile(dir=self.home, prefix=".doctor-"):
                pass
        except OSError as exc:
            self.writable = False
            return [Finding(str(self.home), problem=f"cannot create files here ({exc.strerror or exc})",
                            fix="choose a writable --home, or make this folder writable")]
        return [Finding(str(self.home), detail="writable")]

    def repair(self, stamp: str) -> list[str]:
        return []


def _lock_state(path: Path) -> tuple[str, str]:
    """(``held`` | ``stale`` | ``idle``, the holder's note) — never blocks."""
    owner = ""
    with contextlib.suppress(OSError):
        owner = path.read_text(encoding="utf-8", errors="replace").strip()
    if held_here(path):
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
        from free_llm_agent.graph.guard import _file_name

        known = self.known_threads()
        names = None if known is None else {_file_name(t) for t in known}
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


def _sqlite_checks(url: str | None, home: Path) -> list[Check]:
    from free_llm_agent.graph.doctor_sqlite import AgentDbCheck, CheckpointsCheck

    checkpoints = CheckpointsCheck(home / "checkpoints.db")
    return [HomeCheck(home), AgentDbCheck(home / "agent.db"), checkpoints, LocksCheck(home),
            JournalCheck(home, checkpoints.known_threads)]


def _pg_checks(url: str | None, home: Path) -> list[Check]:
    from free_llm_agent.graph.doctor_pg import DatabaseCheck, PgCheckpointsCheck, PgJournalCheck, PgLocksCheck

    assert url is not None
    checkpoints = PgCheckpointsCheck(url)
    return [HomeCheck(home), DatabaseCheck(url), checkpoints, PgLocksCheck(url), PgJournalCheck(url, checkpoints)]


# Keyed like providers.backends.STATE_BACKENDS (the database URL's scheme).
DOCTOR_BACKENDS: dict[str, Callable[[str | None, Path], list[Check]]] = {
    "sqlite": _sqlite_checks, "postgresql": _pg_checks, "postgres": _pg_checks}


def checks_for(home: Path, url: str | None = None) -> list[Check]:
    """The checks of the state in ``home`` and, with a database URL, in that database."""
    from free_llm_agent.providers.backends import for_url

    return for_url(DOCTOR_BACKENDS, url)(url, home)


def run_doctor(home: Path, *, repair: bool = False, checks: list[Check] | None = None,
               database_url: str | None = None) -> Report:
    """Check every part; with ``repair``, repair what can be and check again (the report is the second check)."""
    checks = checks if checks is not None else checks_for(home, database_url)
    report = Report(home, database=redacted_url(database_url))
    found = {check.name: check.check() for check in checks}
    report.findings = [f for fs in found.values() for f in fs]
    if not repair or not any(f.repairable for f in report.problems):
        return report
    home_check = next((c for c in checks if isinstance(c, HomeCheck)), None)
    if home_check is not None and not home_check.writable:
        return report
    running = [name for c in checks if c.name == "locks" for name in getattr(c, "running", [])]
    stamp = stamp_now()
    for _ in range(2):  # a second pass: what the first made stale (a lost thread's journal entry)
        for check in checks:
            if not any(f.repairable for f in found[check.name] if not f.ok):
                continue
            if running and check.name not in ("locks", "journal"):
                note = (f"left {check.name} as it is: a run is in progress ({', '.join(running)}); "
                        "repair again when it has finished")
                if note not in report.actions:
                    report.actions.append(note)
                continue
            report.actions.extend(check.repair(stamp))
        report.repaired = True
        found = {check.name: check.check() for check in checks}
        report.findings = [f for fs in found.values() for f in fs]
        if running or not any(f.repairable for f in report.problems):
            break
    return report

def print_report(report: Report, console: Any, repair_hint: str) -> None:
    """The report as lines on ``console`` (a rich Console); text is never read as markup."""
    console.print(f"doctor: {report.home}" + (f" and {report.database}" if report.database else ""),
                  style="bold", markup=False)
    for line in report.actions:
        console.print(f"  repaired: {line}", style="green", markup=False)
    if report.repaired:
        console.print("after the repair:", style="bold", markup=False)
    for f in report.findings:
        if f.ok:
            console.print(f"  ok       {f.subject:<28} {f.detail}", markup=False)
        else:
            console.print(f"  PROBLEM  {f.subject:<28} {f.problem}", style="red", markup=False)
            if f.fix:
                console.print(f"  {'':<37}fix: {f.fix}", style="dim", markup=False)
    problems = report.problems
    if not problems:
        console.print("healthy" + (" after repair" if report.repaired else ""), style="green", markup=False)
    elif any(f.repairable for f in problems) and not report.repaired:
        console.print(f"{len(problems)} problem(s); repair with: {repair_hint}", style="yellow", markup=False)
    else:
        console.print(f"{len(problems)} problem(s) left: see the fix of each", style="yellow", markup=False)


def state_error_fix(kind: str, path: Path, repair_hint: str) -> str:
    """The fix line the CLI prints under a damaged-state or unwritable-state error."""
    if kind == "damaged":
        kept = "the quota records it can read" if path.name == "agent.db" else "every readable thread"
        return f"fix: run `{repair_hint}` (moves it aside, keeping {kept}); this command changed nothing"
    return f"fix: choose a writable --home (or FREE_AGENT_HOME), or make {path.parent} writable"
