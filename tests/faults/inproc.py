"""Run a whole goal through the real graph in this process: the real ``Runner`` (SQLite
checkpoints in the home) and the real ``QuotaAwareChatModel`` over loopback fakes, with the
echo ``FakeExecutor`` of ``tests.support.agent`` (the executor is not what is under test)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from free_llm_agent.graph.context import Context
from free_llm_agent.providers import QuotaAwareChatModel, build_chat_model
from free_llm_agent.runtime.runner import Runner, RunResult
from tests.support.agent import FakeExecutor

GOAL = "make numbers and sum them"


@contextmanager
def runner(config_dir: Path, home: Path, workdir: Path, executor: FakeExecutor | None = None,
           max_batch_size: int = 3) -> Iterator[Runner]:
    """A Runner as the CLI builds it for ``run --yes`` (a new one per process: call again to 'restart')."""
    workdir.mkdir(parents=True, exist_ok=True)
    llm: QuotaAwareChatModel = build_chat_model(config_dir, home)
    context = Context(auto_approve=True, max_batch_size=max_batch_size, workdir=str(workdir))
    run = Runner(home, llm=llm, context=context, executor_factory=(executor or FakeExecutor()).factory)
    try:
        yield run
    finally:
        run.deps.close_all()
        run.close()


def run_goal(config_dir: Path, home: Path, workdir: Path, executor: FakeExecutor | None = None,
             thread_id: str = "faults") -> RunResult:
    with runner(config_dir, home, workdir, executor) as run:
        return run.run(GOAL, thread_id)


def resume(config_dir: Path, home: Path, workdir: Path, executor: FakeExecutor | None = None,
           thread_id: str = "faults") -> RunResult:
    with runner(config_dir, home, workdir, executor) as run:
        return run.resume(thread_id)


def attempts(home: Path, provider: str | None = None, *, failed: bool = False) -> int:
    """Requests the agent tried (one usage-log row each, ok or failed), also those nothing received."""
    sql = "SELECT count(*) FROM usage_log WHERE cached = 0"
    params: tuple[str, ...] = ()
    if provider is not None:
        sql, params = sql + " AND provider = ?", (provider,)
    if failed:
        sql += " AND outcome != 'ok'"
    with sqlite3.connect(home / "agent.db") as conn:
        (count,) = conn.execute(sql, params).fetchone()
    return int(count)
