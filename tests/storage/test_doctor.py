"""doctor's checks on each backend: healthy when fresh and after use; a stale lock and an orphan journal
entry are found, repaired, and healthy afterwards."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from free_llm_agent.storage.doctor import Report, run_doctor
from free_llm_agent.storage.registry import doctor_checks, open_checkpointer, open_guards, open_state

from .conftest import eventually

pytestmark = pytest.mark.both_backends


def doctor(url: str | None, home: Path, *, repair: bool = False) -> Report:
    return run_doctor(home, doctor_checks(url, home), repair=repair, database_url=url)


def problems(report: Report) -> list[str]:
    return [f"{f.subject}: {f.problem}" for f in report.problems]


def test_a_fresh_store_is_healthy(url: str | None, store_home: Path) -> None:
    report = doctor(url, store_home)
    assert problems(report) == [] and report.exit_code == 0
    assert report.findings  # it said what it checked
    assert report.to_json()["healthy"] is True


def test_a_used_store_is_healthy(url: str | None, store_home: Path) -> None:
    open_state(url, store_home).close()
    checkpoints = open_checkpointer(url, store_home)
    config = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
    from langgraph.checkpoint.base import empty_checkpoint

    checkpoints.saver.put(config, empty_checkpoint(), {"step": -1}, {})  # type: ignore[arg-type]
    checkpoints.close()
    guards = open_guards(url, store_home)
    try:
        with guards.lock("t1"):
            guards.journal().started("t1", "k", 1)  # an entry of a thread that has checkpoints
        report = doctor(url, store_home, repair=True)
        assert problems(report) == [] and report.actions == []
        assert guards.journal().get("t1", "k") is not None  # nothing repaired away
    finally:
        guards.close()


def test_a_stale_lock_is_found_and_cleared(
        url: str | None, store_home: Path, hold_lock: Callable[[str], subprocess.Popen[str]]) -> None:
    holder = hold_lock("t1")
    held = doctor(url, store_home)
    assert problems(held) == []  # a held lock is a run in progress, not a problem
    holder.kill()
    holder.wait(timeout=30)
    assert eventually(lambda: bool(doctor(url, store_home).problems))
    found = doctor(url, store_home)
    (stale,) = found.problems
    assert "stale" in stale.problem and f"pid {holder.pid}" in stale.problem and stale.repairable
    repaired = doctor(url, store_home, repair=True)
    assert repaired.repaired and any(f"pid {holder.pid}" in action for action in repaired.actions)
    assert problems(repaired) == [] and problems(doctor(url, store_home)) == []
    guards = open_guards(url, store_home)
    try:
        with guards.lock("t1"):
            pass
    finally:
        guards.close()


def test_an_orphan_journal_entry_is_found_and_removed(url: str | None, store_home: Path) -> None:
    guards = open_guards(url, store_home)
    try:
        guards.journal().started("ghost", "k", 1)  # a thread that has no checkpoints
        (orphan,) = doctor(url, store_home).problems
        assert "ghost" in orphan.subject and "no checkpoints" in orphan.problem and orphan.repairable
        repaired = doctor(url, store_home, repair=True)
        assert repaired.actions and problems(repaired) == []
        assert guards.journal().get("ghost", "k") is None
    finally:
        guards.close()
