"""The shared PostgreSQL server goes down in the middle of a run, then comes back.

A private cluster (not the session's: this one is crashed on purpose). The run's plan request is
held by the fake provider while the server is stopped with ``pg_ctl -m immediate``; when the answer
comes back nothing can be recorded. The CLI must end with exit 2, a message naming the database
(password hidden) and a copyable resume command — no traceback — and once the server is back,
``resume`` completes the thread from its last checkpoint without asking an answered question twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider, Reply, Request
from tests.support.paths import CLI, ROOT
from tests.support.pg import Cluster, PostgresUnavailable, start_cluster

pytestmark = pytest.mark.timeout(300)
PLAN = (("one", "print('one')"), ("two", "print('two')"), ("three", "print('three')"))


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    try:
        own = start_cluster(max_connections=30)
    except PostgresUnavailable as exc:
        print(f"\nPostgreSQL tests skipped: {exc}")
        pytest.skip(f"no PostgreSQL: {exc}")
    try:
        yield own
    finally:
        own.stop()


class HoldCode:
    """Answers like a good model, but holds the first code request until ``release``."""

    def __init__(self) -> None:
        self.inner = make_responder(PLAN)
        self.arrived, self.released = threading.Event(), threading.Event()
        self.answered: list[str] = []

    def __call__(self, req: Request) -> Reply:
        if "Write the code for each of these tasks" in req.text and not self.arrived.is_set():
            self.arrived.set()
            self.released.wait(120)
        self.answered.append(req.text)
        return self.inner(req)


def test_a_database_lost_mid_run_is_exit_2_and_resume_completes_when_it_is_back(
        cluster: Cluster, fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path],
        tmp_path: Path) -> None:
    gate = HoldCode()
    server = fake_server("openai", responder=gate)
    config = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}},
                         optimization={"max_batch_size": 3})
    url = cluster.create_database("down")
    env = {**os.environ, "FREE_AGENT_DATABASE_URL": url}
    cli = [*CLI, "--config-dir", str(config), "--home", str(tmp_path / "h")]
    proc = subprocess.Popen([*cli, "run", "three steps", "--scratch", "--thread-id", "t", "--yes"], cwd=ROOT,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert gate.arrived.wait(120), "the code request never came"
        cluster.halt()  # the plan is checkpointed; the code answer will find no database
        gate.released.set()
        _, err = proc.communicate(timeout=150)
    finally:
        gate.released.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, err
    assert "Traceback" not in err and ("cannot be used" in err or "cannot connect" in err), err
    assert f"127.0.0.1:{cluster.port}" in err and "resume t" in err, err
    assert "pool-" not in err and "discarding" not in err, err  # the pool's own retries stay quiet
    cluster.start()
    done = subprocess.run([*cli, "resume", "t", "--yes", "--json"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=150, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and [t["output"].strip() for t in result["tasks"]] == [
        "one", "two", "three"]
    plans = [t for t in gate.answered if "Break this goal" in t]
    assert len(plans) == 1  # the plan, checkpointed before the server went down, was not asked again


def test_a_server_restart_between_two_calls_costs_no_failed_call(cluster: Cluster, tmp_path: Path) -> None:
    """Pooled connections are checked when lent: after a restart the next call reconnects."""
    from free_llm_agent.storage.postgres.checkpoints import PgCheckpoints
    from free_llm_agent.storage.postgres.db import PgDatabase

    url = cluster.create_database("restart")
    db, checkpoints = PgDatabase(url), PgCheckpoints(url)
    try:
        assert db.query("SELECT 1") == [(1,)] and checkpoints.thread_ids() == ([], True)
        cluster.halt()
        cluster.start()
        assert db.query("SELECT 2") == [(2,)]
        assert checkpoints.thread_ids() == ([], True)
    finally:
        db.close()
        checkpoints.close()


@pytest.mark.parametrize("problem", ["refused", "password", "database"])
def test_a_database_that_cannot_be_used_is_named_at_once_with_the_reason(
        cluster: Cluster, problem: str, tmp_path: Path) -> None:
    from free_llm_agent.storage.errors import StateUnavailable
    from free_llm_agent.storage.postgres.db import PgDatabase

    url = {"refused": "postgresql://agent:hunter2@127.0.0.1:1/agent",
           "password": f"postgresql://nobody:hunter2@127.0.0.1:{cluster.port}/postgres",
           "database": f"postgresql://{cluster.user}:hunter2@127.0.0.1:{cluster.port}/no_such_db"}[problem]
    reason = {"refused": "refused", "password": "nobody", "database": "no_such_db"}[problem]
    with pytest.raises(StateUnavailable) as raised:
        PgDatabase(url)
    message = str(raised.value)
    assert "cannot connect to the database" in message and reason in message, message
    assert "hunter2" not in message and ":***@" in message
