"""First come, first served across machines: on PostgreSQL, requests that wait for a provider's next
free slot get their slots in the order they asked, whichever machine they come from.

Two "machines" (their own homes, processes and connection pools) share one database and a provider
limited to 1 request a minute. A third machine holds that provider's quota lock (what a reservation,
send, settle or release for it holds: ``fla_quota_lock``) while the waiters arrive one by one in a known
order, each seen queued in the server (``pg_stat_activity``: waiting for a lock) before the next is let
go; then the lock is released. The evidence is the send time each waiter was
given: every later arrival is sent a minute after the one before. No timing asserts.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import psycopg
import pytest

from free_llm_agent.config import RateLimit
from free_llm_agent.providers.quota import QuotaStore, Slot
from free_llm_agent.storage.registry import open_state
from tests.support.quota import T0, mp_context, wait_for

pytestmark = pytest.mark.timeout(180)
WAITERS = 6
ARRIVAL = (3, 0, 4, 1, 5, 2)  # not the order the processes were started in
ONE_A_MINUTE = RateLimit(requests_per_minute=1)


def machine_of(waiter: int) -> str:
    return "machine-a" if waiter % 2 == 0 else "machine-b"


def wait_for_a_slot(url: str, home: str, ready: str, go: str, out: str) -> None:
    """One agent process on its machine: asks for the provider's next slot, willing to wait an hour."""
    store = QuotaStore(open_state(url, Path(home)), lambda _: ONE_A_MINUTE)
    Path(ready).touch()
    wait_for(Path(go).exists, "go")
    got = store.reserve(["p"], lambda _: 1, T0, 3600)
    assert isinstance(got, Slot), got
    Path(out).write_text(json.dumps({"at": got.at, "id": got.id}))


def lock_waiters(url: str) -> set[int]:
    """The server processes of this database that are blocked on a lock right now."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock'").fetchall()
    return {int(r[0]) for r in rows}


def test_waiting_is_first_come_first_served_across_machines(postgres_url: str, tmp_path: Path) -> None:
    open_state(postgres_url, tmp_path / "machine-c").close()  # migrated before anyone waits
    ctx = mp_context()
    files = [tuple(str(tmp_path / f"{what}{i}") for what in ("ready", "go", "out")) for i in range(WAITERS)]
    procs = [ctx.Process(target=wait_for_a_slot,  # type: ignore[attr-defined]
                         args=(postgres_url, str(tmp_path / machine_of(i)), *files[i])) for i in range(WAITERS)]
    for p in procs:
        p.start()
    wait_for(lambda: all(Path(f[0]).exists() for f in files), "the waiters to start", procs)
    writer = open_state(postgres_url, tmp_path / "machine-c")
    queued: set[int] = set()
    with writer.transaction() as conn:  # machine C is writing p's quota: everyone who asks for p now must wait
        conn.execute("SELECT fla_quota_lock(ARRAY['p'])")
        for k, i in enumerate(ARRIVAL):
            Path(files[i][1]).touch()

            def arrived(k: int = k) -> bool:
                queued.update(lock_waiters(postgres_url))
                return len(queued) == k + 1

            wait_for(arrived, f"waiter {i} ({machine_of(i)}) to queue", procs)
    writer.close()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * WAITERS
    got = {i: json.loads(Path(files[i][2]).read_text()) for i in range(WAITERS)}
    sent_at = [got[i]["at"] - T0 for i in ARRIVAL]
    assert sent_at[0] == 0  # the first to ask goes at once
    for before, after in itertools.pairwise(sent_at):
        assert after >= before + 60, f"waiters were served out of the order they asked: {sent_at}"
    assert [got[i]["id"] for i in ARRIVAL] == sorted(g["id"] for g in got.values())
