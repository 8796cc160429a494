"""The run lock and the task journal on each backend (one machine's files, or the shared database)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from free_llm_agent.storage.errors import ThreadBusy
from free_llm_agent.storage.guard import RunGuards, journal_entry
from free_llm_agent.storage.registry import open_guards

from .conftest import eventually

pytestmark = pytest.mark.both_backends
Holder = Callable[[str], subprocess.Popen[str]]


@pytest.fixture
def guards(url: str | None, store_home: Path) -> Iterator[RunGuards]:
    opened = open_guards(url, store_home)
    yield opened
    opened.close()


def takes(guards: RunGuards, thread_id: str) -> bool:
    lock = guards.lock(thread_id)
    try:
        lock.acquire()
    except ThreadBusy:
        return False
    lock.release()
    return True


def test_the_lock_is_exclusive_across_processes_and_the_busy_message_names_the_holder(
        guards: RunGuards, hold_lock: Holder) -> None:
    holder = hold_lock("t1")
    with pytest.raises(ThreadBusy) as busy:
        guards.lock("t1").acquire()
    assert f"pid {holder.pid}" in str(busy.value) and "t1" in str(busy.value)
    assert takes(guards, "t2")  # another thread is free
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "released"
    assert takes(guards, "t1")


def test_the_lock_is_released_on_exit_and_when_its_holder_dies(guards: RunGuards, hold_lock: Holder) -> None:
    with guards.lock("t1"):
        pass
    holder = hold_lock("t1")  # free again after the with block
    holder.kill()
    holder.wait(timeout=30)
    assert eventually(lambda: takes(guards, "t1"))


def test_holders_names_the_threads_held_now_without_taking_their_locks(
        guards: RunGuards, hold_lock: Holder) -> None:
    assert guards.holders([]) == {} and guards.holders(["t1", "t2"]) == {}
    holder = hold_lock("t1")
    held = guards.holders(["t1", "t2"])
    assert list(held) == ["t1"] and held["t1"].startswith(f"pid {holder.pid} on ")
    assert guards.holders(["t1", "t2"]) == held  # looking took nothing: it is still the holder's
    assert not takes(guards, "t1")
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "released"
    assert guards.holders(["t1"]) == {}
    killed = hold_lock("t1")
    killed.kill()  # its note may stay behind; its lock does not
    killed.wait(timeout=30)
    assert eventually(lambda: guards.holders(["t1"]) == {})
    with guards.lock("t3"):  # held in this process
        assert list(guards.holders(["t3"])) == ["t3"]
    assert guards.holders(["t3"]) == {}


def test_the_lock_is_reentrant_for_its_owner_only(guards: RunGuards) -> None:
    first = guards.lock("t1", owner="run-a")
    first.acquire()
    again = guards.lock("t1", owner="run-a")
    again.acquire()  # the runner and its run_task node: one run
    with pytest.raises(ThreadBusy):
        guards.lock("t1", owner="run-b").acquire()
    first.check()
    again.release()
    first.release()
    with pytest.raises(ThreadBusy):
        first.check()  # released: a task would not start
    assert takes(guards, "t1")


def test_the_journal_keeps_the_attempt_in_flight(guards: RunGuards, url: str | None, store_home: Path) -> None:
    journal = guards.journal()
    assert journal.get("t1", "k1") is None
    journal.started("t1", "k1", 1)
    entry = journal.get("t1", "k1")
    assert entry is not None and (entry["state"], entry["task_id"]) == ("started", 1)
    assert journal.get("t1", "another attempt") is None
    assert journal.get("t2", "k1") is None
    journal.finished("t1", "k1", 1, {"output": "done", "ok": True})
    other = open_guards(url, store_home)  # what another process (or machine) sees
    try:
        seen = other.journal().get("t1", "k1")
        assert seen is not None and seen["state"] == "finished" and seen["result"] == {"output": "done", "ok": True}
    finally:
        other.close()
    journal.clear("t1")
    assert journal.get("t1", "k1") is None
    journal.clear("t1")  # clearing nothing is fine


def test_an_entry_that_is_not_a_whole_journal_entry_counts_as_no_attempt() -> None:
    """A finished entry without its result, an unknown state, another attempt's entry: the attempt is not
    treated as run (resume would otherwise report a result it does not have)."""
    good: dict[str, object] = {"key": "k", "task_id": 1, "state": "finished", "result": {"ok": True}}
    no_result, unknown = {**good, "result": None}, {**good, "state": "exploded"}
    assert journal_entry(good, "k") is good
    assert journal_entry(no_result, "k") is None
    assert journal_entry(unknown, "k") is None
    assert journal_entry(good, "another attempt") is None
    assert journal_entry(["not", "an", "entry"], "k") is None
    assert journal_entry({"key": "k", "task_id": 1, "state": "started", "pid": 7}, "k") is not None
