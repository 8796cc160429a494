"""``doctor [--repair]``: check the home and the state backend; repair what can be repaired.

Each part of the state is a :class:`Check` — it reports :class:`Finding` s and, asked to, repairs what
it found; :func:`run_doctor` runs them and returns a :class:`Report` (the CLI prints it: nothing here
prints). The checks of a backend come from :func:`storage.registry.doctor_checks` (SQLite files in the
home: :mod:`storage.sqlite.doctor` and :mod:`storage.sqlite.doctor_home`; PostgreSQL:
:mod:`storage.postgres.doctor`) — no caller branches on the backend.

Nothing is deleted: a damaged file is moved aside, and what is still readable is copied into a fresh
one; a stale lock is cleared as a normal release would clear it.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from free_llm_agent.storage.urls import redacted


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
    return redacted(url) if url else ""


def stamp_now() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


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


class SpaceCheck:
    """Free space on the file systems of the home and of the working directory (a run writes to both)."""

    name = "space"

    def __init__(self, places: dict[str, Path]) -> None:
        self.places = places  # what it is -> where

    def check(self) -> list[Finding]:
        from free_llm_agent.storage.space import LOW_SPACE_BYTES, free_bytes, is_full, mount_point, no_space

        found = []
        for what, path in self.places.items():
            if is_full(path):
                found.append(Finding(f"free space ({what})", problem=no_space(path),
                                     fix=f"free space on {mount_point(path)}, or use --home elsewhere"))
            else:
                free = free_bytes(path)
                left = "unknown" if free is None else f"{free // (1024 * 1024)} MB"
                found.append(Finding(f"free space ({what})", detail=f"{left} free on {mount_point(path)} "
                                     f"(needs {LOW_SPACE_BYTES // (1024 * 1024)} MB)"))
        return found

    def repair(self, stamp: str) -> list[str]:
        return []


def run_doctor(home: Path, checks: list[Check], *, repair: bool = False, database_url: str | None = None) -> Report:
    """Check every part; with ``repair``, repair what can be and check again (the report is the second check).

    ``checks``: the backend's, from :func:`storage.registry.doctor_checks` (``home`` and ``database_url`` name
    what they check in the report)."""
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
