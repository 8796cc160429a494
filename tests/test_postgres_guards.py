"""Threads on the PostgreSQL backend, across "machines" (homes) sharing one database.

The per-thread run lock holds across machines and is dropped when its holder dies; the task
journal is shared; ``threads``, ``show`` and ``doctor`` see every machine's threads. (The kill -9
on one machine and resume on the other is tests/faults/test_kill_at_each_node.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from free_llm_agent.storage.errors import ThreadBusy
from free_llm_agent.storage.postgres.guard import PgGuards
from free_llm_agent.storage.registry import open_guards
from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider
from tests.support.cli import cli
from tests.support.paths import ROOT

pytestmark = pytest.mark.timeout(300)
PLAN = (("write a", "open('a.txt','w').write('a')\nprint('a')"),
        ("write b", "open('b.txt','w').write('b')\nprint('b')"),
        ("write c", "open('c.txt','w').write('c')\nprint('c')"))


def pg_env(url: str) -> dict[str, str]:
    """This process's environment with the state database at ``url`` (as a user's shell would set it)."""
    return {**os.environ, "FREE_AGENT_DATABASE_URL": url}


@pytest.fixture
def config(fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path]) -> Path:
    server = fake_server("openai", responder=make_responder(PLAN))
    return make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}},
                       optimization={"max_batch_size": 3})


HOLDER = """
import os, sys, time
sys.path.insert(0, {root!r})
from free_llm_agent.storage.postgres.guard import PgGuards
lock = PgGuards({url!r}).lock({thread!r})
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def _hold(url: str, thread: str) -> subprocess.Popen[str]:
    """Another machine's run holding ``thread``'s lock (until it is killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT), url=url, thread=thread)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_the_thread_lock_holds_across_machines_and_dies_with_its_holder(
        postgres_url: str, config: Path, tmp_path: Path) -> None:
    done = cli(["run", "write three files", "--scratch", "--thread-id", "shared", "--yes", "--json"],
               tmp_path / "machine-a", config, env=pg_env(postgres_url))
    assert done.returncode == 0, done.stderr
    holder = _hold(postgres_url, "shared")  # machine A runs the thread again
    try:
        busy = cli(["resume", "shared", "--yes"], tmp_path / "machine-b", config, env=pg_env(postgres_url))
        assert busy.returncode == 2 and "Traceback" not in busy.stderr
        assert f"thread shared is running (pid {holder.pid} on " in busy.stderr
        guards = PgGuards(postgres_url + "?application_name=other")  # another process's key, not this one's
        try:
            with pytest.raises(ThreadBusy), guards.lock("shared"):
                pass
        finally:
            guards.close()
        report = json.loads(cli(["doctor", "--json"], tmp_path / "machine-b", config, env=pg_env(postgres_url)).stdout)
        held = [f for f in report["findings"] if f["subject"] == "lock of shared"]
        assert held and held[0]["ok"] and "a run is in progress" in held[0]["detail"]
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    # the server dropped the dead holder's lock: machine B takes the thread over at once ...
    report = json.loads(cli(["doctor", "--json"], tmp_path / "machine-b", config, env=pg_env(postgres_url)).stdout)
    stale = [f for f in report["findings"] if f["subject"] == "lock of shared"]
    assert stale and not stale[0]["ok"] and "holder is gone" in stale[0]["problem"]
    again = cli(["resume", "shared", "--yes", "--json"], tmp_path / "machine-b", config, env=pg_env(postgres_url))
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "completed", again.stderr
    # ... and a normal release (or doctor --repair) leaves no note behind
    report = json.loads(cli(["doctor", "--repair", "--json"],
                            tmp_path / "machine-b", config, env=pg_env(postgres_url)).stdout)
    assert report["healthy"], report


def test_threads_and_show_see_every_machine(postgres_url: str, config: Path, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    first = cli(["run", "files on a", "--thread-id", "on-a", "--workdir", str(folder), "--yes", "--json"],
                tmp_path / "machine-a", config, env=pg_env(postgres_url))
    second = cli(["run", "files on b", "--thread-id", "on-b", "--scratch", "--yes", "--json"],
                 tmp_path / "machine-b", config, env=pg_env(postgres_url))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "b.txt", "c.txt"]
    for home in ("machine-a", "machine-b", "machine-c"):
        listed = json.loads(cli(["threads", "--json"],
                                tmp_path / home, config, env=pg_env(postgres_url)).stdout)["threads"]
        assert [(t["thread_id"], t["status"], t["tasks_done"]) for t in listed] == [
            ("on-a", "completed", 3), ("on-b", "completed", 3)]
    shown = cli(["show", "on-a", "--json"], tmp_path / "machine-b", config, env=pg_env(postgres_url))
    data = json.loads(shown.stdout)
    assert data["goal"] == "files on a" and data["workdir"] == str(folder)
    assert [t["output"].strip() for t in data["tasks"]] == ["a", "b", "c"]
    for home in ("machine-a", "machine-b"):  # nothing went to the homes' SQLite files
        assert not (tmp_path / home / "checkpoints.db").exists() and not (tmp_path / home / "agent.db").exists()
    exists = cli(["run", "again", "--thread-id", "on-a", "--yes"],
                 tmp_path / "machine-b", config, env=pg_env(postgres_url))
    assert exists.returncode == 2 and "thread 'on-a' already exists" in exists.stderr  # whichever machine made it
    missing = cli(["resume", "nowhere"], tmp_path / "machine-b", config, env=pg_env(postgres_url))
    assert missing.returncode == 2 and "no thread 'nowhere' in the shared database" in missing.stderr


def test_the_task_journal_is_shared(postgres_url: str, tmp_path: Path) -> None:
    machine_a, machine_b = open_guards(postgres_url, tmp_path / "a"), open_guards(postgres_url, tmp_path / "b")
    try:
        machine_a.journal().started("t1", "k1", 2)
        entry = machine_b.journal().get("t1", "k1")
        assert entry is not None and entry["state"] == "started" and entry["task_id"] == 2
        assert machine_b.journal().get("t1", "other attempt") is None
        machine_a.journal().finished("t1", "k1", 2, {"output": "done"})
        entry = machine_b.journal().get("t1", "k1")
        assert entry is not None and entry["state"] == "finished" and entry["result"] == {"output": "done"}
        machine_b.journal().clear("t1")
        assert machine_a.journal().get("t1", "k1") is None
    finally:
        machine_a.close()
        machine_b.close()


def test_doctor_checks_the_database(postgres_url: str, config: Path, tmp_path: Path) -> None:
    guards = open_guards(postgres_url, tmp_path)
    guards.journal().started("gone", "k", 1)  # an entry of a thread that has no checkpoints
    guards.close()
    done = cli(["doctor"], tmp_path / "home", config, env=pg_env(postgres_url))
    assert done.returncode == 1 and "journal of gone" in done.stdout and "doctor" in done.stdout
    assert "reachable (PostgreSQL" in done.stdout
    repaired = json.loads(cli(["doctor", "--repair", "--json"],
                              tmp_path / "home", config, env=pg_env(postgres_url)).stdout)
    assert repaired["healthy"] and repaired["actions"] == ["removed the journal entry of gone (no checkpoints)"]
    with psycopg.connect(postgres_url) as conn:  # doctor created nothing (no thread has run here)
        assert conn.execute("SELECT to_regclass('checkpoints')").fetchone() == (None,)
    assert repaired["database"].startswith("postgresql://") and repaired["database"].endswith(
        postgres_url.rsplit("/", 1)[1])
    with psycopg.connect(postgres_url) as conn:
        newer = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        conn.execute("INSERT INTO schema_version(version) VALUES (%s)", (int(newer[0]) + 1,))  # type: ignore[index]
    report = json.loads(cli(["doctor", "--json"], tmp_path / "home", config, env=pg_env(postgres_url)).stdout)
    problem = next(f for f in report["findings"] if f["subject"] == "agent tables")
    assert "newer than this free-llm-agent knows" in problem["problem"]


@pytest.mark.parametrize(("url", "printed"), [
    ("postgresql://agent@db-host:5432/agent", True),
    ("postgresql://db-host/agent?sslmode=require", True),
    ("postgresql://agent:secret@db-host:5432/agent", False),
    ("postgresql://db-host/agent?password=secret", False),
])
def test_the_resume_hint_keeps_a_database_url_without_a_password(url: str, printed: bool) -> None:
    import argparse
    import shlex

    from free_llm_agent.cli.support import resume_hint

    hint = resume_hint(argparse.Namespace(home="/h", config_dir=None, database_url=url), "t1")
    expected = f"--home /h --database-url {shlex.quote(url)} resume t1" if printed else "--home /h resume t1"
    assert hint.endswith(expected), hint
    assert "secret" not in hint


@pytest.mark.parametrize("url", [
    "postgresql://agent:secret@db-host:5432/agent",
    "postgresql://:secret@db-host/agent",  # libpq's empty user name
    "postgresql://db-host/agent?password=secret",
    "postgresql://agent@db-host/agent?sslmode=require&PASSWORD=secret&application_name=x",
])
def test_redacted_hides_every_form_of_password(url: str) -> None:
    from free_llm_agent.storage.urls import redacted

    shown = redacted(url)
    assert "secret" not in shown and "db-host" in shown and "***" in shown, shown


def _dml_only_user(owner_url: str) -> str:
    """A role that may read and write the agent's tables in ``owner_url``'s database but create nothing
    there (PostgreSQL 15's default for PUBLIC, made explicit); its URL for that database."""
    import uuid

    role = f"dml_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    scheme, rest = owner_url.split("://", 1)
    return f"{scheme}://{role}@{rest.split('@', 1)[1]}"


def test_a_user_without_create_uses_a_migrated_database_and_gets_a_message_on_a_fresh_one(
        postgres_url: str, config: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    import threading

    from free_llm_agent.storage.errors import StateUnavailable
    from free_llm_agent.storage.postgres.checkpoints import PgCheckpoints
    from free_llm_agent.storage.postgres.db import PgDatabase

    PgDatabase(postgres_url).close()  # the owner migrates both schemas once
    PgCheckpoints(postgres_url).close()
    user = _dml_only_user(postgres_url)
    done = cli(["threads", "--json"], tmp_path / "home", config, env=pg_env(user))
    assert done.returncode == 0 and json.loads(done.stdout)["threads"] == [], done.stderr
    guards = open_guards(user, tmp_path)
    try:
        with guards.lock("t"):
            guards.journal().started("t", "k", 1)
        assert guards.journal().get("t", "k") is not None
    finally:
        guards.close()
    fresh = _dml_only_user(request.getfixturevalue("pg_cluster").create_database())  # nothing migrated there
    refused = cli(["threads"], tmp_path / "home", config, env=pg_env(fresh))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "cannot be" in refused.stderr and "InsufficientPrivilege" in refused.stderr, refused.stderr
    before = {t.name for t in threading.enumerate()}
    for opener in (PgCheckpoints, PgDatabase):
        with pytest.raises(StateUnavailable):
            opener(fresh)
    left = [t.name for t in threading.enumerate() if t.is_alive() and t.name not in before]
    assert not [n for n in left if n.startswith("pool-")], left  # each failed open closed its pool


def test_the_run_lock_outlives_an_idle_session_timeout_and_its_errors_are_messages(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from free_llm_agent.storage.errors import StateUnavailable

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        if conn.info.server_version < 140000:
            pytest.skip("idle_session_timeout is PostgreSQL 14+")
        name = postgres_url.rsplit("/", 1)[1]
        conn.execute(f'ALTER DATABASE "{name}" SET idle_session_timeout = 1000')  # ms, for every new session
    other = postgres_url + "?application_name=machine-b"  # another label: not this process's re-entrancy
    machine_a, machine_b = open_guards(postgres_url, tmp_path / "a"), open_guards(other, tmp_path / "b")
    try:
        with machine_a.lock("idle"):
            time.sleep(2.5)  # the run's lock session sits idle longer than the server allows
            with pytest.raises(ThreadBusy), machine_b.lock("idle"):
                pass
        monkeypatch.setattr("free_llm_agent.storage.postgres.guard.KEEPALIVES", ("SET no_such_setting = 1",))
        with pytest.raises(StateUnavailable, match="cannot lock thread t2 in the database"), machine_b.lock("t2"):
            pass
    finally:
        machine_a.close()
        machine_b.close()


def test_a_runner_without_a_url_uses_the_database_of_the_environment_like_its_guards(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from free_llm_agent.runtime.runner import Runner
    from free_llm_agent.storage.postgres.guard import PgGuards

    monkeypatch.setenv("FREE_AGENT_DATABASE_URL", postgres_url)
    runner = Runner(tmp_path)
    try:
        assert isinstance(runner.deps.guards(), PgGuards)
        assert runner.checkpoints.label.startswith("postgresql://")  # not checkpoints.db beside PostgreSQL locks
        assert runner.threads() == ([], True)
    finally:
        runner.close()
    assert not (tmp_path / "checkpoints.db").exists()


def test_a_run_that_lost_its_lock_stops_before_the_next_task(postgres_url: str, tmp_path: Path) -> None:
    """The lock's session ended (terminated, a dropped connection): the next task does not start, so
    another machine that took the thread over cannot have it run twice."""
    from langchain_core.runnables import RunnableConfig

    from free_llm_agent.nodes.execute import run_task
    from free_llm_agent.runtime.deps import Deps
    from free_llm_agent.storage.errors import StateUnavailable
    from tests.support.agent import CONFIG, THREAD, FakeExecutor, make_state, pending, rt, scripted

    ex = FakeExecutor()
    deps = Deps(llm=scripted(), executor_factory=ex.factory, home=tmp_path, database_url=postgres_url)
    state = make_state([pending(1, code="print(1)", language="python", approved=True),
                        pending(2, code="print(2)", language="python", approved=True)], batch=[1, 2])
    config: RunnableConfig = {"configurable": {**CONFIG["configurable"], "run_owner": "the-run"}}
    with deps.lock(THREAD, "the-run"):  # the run holds its thread, as Runner does
        run_task(state, rt(), config, deps=deps)
        assert ex.codes == ["print(1)"]
        with psycopg.connect(postgres_url, autocommit=True) as admin:  # the server ends the lock's session
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                          "AND objsubid = 2 AND granted")
        state["tasks"][0]["status"] = "done"
        with pytest.raises(StateUnavailable, match=f"run lock of thread {THREAD} .* was lost"):
            run_task(state, rt(), config, deps=deps)
    assert ex.codes == ["print(1)"]  # task 2 never started ...
    assert deps.journal().get(THREAD, "anything") is None
    with psycopg.connect(postgres_url) as conn:  # ... and the journal does not say it did
        entry = conn.execute("SELECT entry FROM task_journal WHERE thread_id = %s", (THREAD,)).fetchone()
    assert entry is not None and '"task_id": 1' in entry[0] and '"finished"' in entry[0]
    deps.close_guards()
