"""Goals in a PostgreSQL job queue (procrastinate): ``batch --enqueue`` puts them in, ``worker`` takes them.

Why procrastinate (3.10) rather than pgqueuer (1.6), both maintained PostgreSQL queues on the registry:

* **a goal never runs twice at once** — a job's ``lock`` (here: its thread id) keeps a second job of the same
  goal from being fetched while one is ``doing``, on top of the agent's own thread lock; its
  ``queueing_lock`` keeps a re-run of ``batch --enqueue`` from queueing a goal that already waits;
* **scheduling at a time** — a retry decision carries ``retry_at``: a quota-dry goal goes back to ``todo``
  with ``scheduled_at = resume_after`` and no worker fetches it before (no retry loop);
* **priority** — workers fetch the ready job with the highest ``priority`` first (then the oldest);
* **stall recovery** — workers write a heartbeat (``update_heartbeat_interval``) and the queue lists the
  ``doing`` jobs of workers whose heartbeat is older than a bound (``get_stalled_jobs``); every worker here
  runs a sweep that puts those back to ``todo`` (:func:`recover_stalled`), so the goal of a worker killed
  mid-goal goes to another within the *lease* (default 30 s: heartbeat every 10 s, swept every 10 s, fetched
  within 5 s — under 60 s in all);
* **sync use** — ``defer`` and ``list_jobs`` have synchronous forms (the CLI), and synchronous tasks run in
  threads beside the worker's asyncio loop, so the agent's synchronous graph runs unchanged.

pgqueuer 1.6 would do as well on most points (``dedupe_key`` over queued and picked jobs, ``RetryRequested``
with a delay, automatic re-pick after ``heartbeat_timeout``); it lost on two: its entrypoints must be async
(our graph is synchronous: every goal would be wrapped in ``asyncio.to_thread`` by hand), and its one key
serves both de-duplication and exclusion, where procrastinate keeps them apart (a waiting job and a running
job of one goal may coexist — the reschedule of a goal whose stalled worker is in fact alive — and still
never run at once). Its automatic stall re-pick is the one thing we add here (:func:`recover_stalled`).

Schema: procrastinate's ``schema.sql`` is not idempotent, so workers started together on a fresh database
would race to create it; :func:`ensure_schema` applies it once, under a transaction-scoped advisory lock,
only when ``procrastinate_jobs`` does not exist yet (every other starter waits, then finds it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from free_llm_agent.storage import advisory_keys

TASK_NAME = "free_llm_agent.goal"
QUEUE = "free_llm_agent_goals"
SCHEMA_LOCK = advisory_keys.JOB_QUEUE_SCHEMA
DEFAULT_LEASE_S = 30.0


class Reschedule(Exception):
    """Raised by a goal's job: put it back in the queue, to run no sooner than ``at``."""

    def __init__(self, at: dt.datetime, why: str) -> None:
        super().__init__(why)
        self.at = at


def ensure_schema(url: str) -> bool:
    """Create procrastinate's tables once (see the module docstring); True when this call created them."""
    from procrastinate.schema import SchemaManager

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        row = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
        if row and row[0]:
            return False
        conn.execute(SchemaManager.get_schema())
        return True


def make_app(url: str, *, run_goal: Any = None) -> Any:
    """A procrastinate App on ``url``; ``run_goal(job_kwargs) -> dict`` becomes the goal task (a worker)."""
    import procrastinate
    from procrastinate.retry import BaseRetryStrategy, RetryDecision

    class _Retry(BaseRetryStrategy):
        def get_retry_decision(self, *, exception: BaseException, job: Any) -> RetryDecision | None:
            if isinstance(exception, Reschedule):
                return RetryDecision(retry_at=exception.at)
            return None  # a goal that raised anything else failed: the worker's log says why

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=4,
                                                                      kwargs={"connect_timeout": 10}))
    if run_goal is not None:
        @app.task(name=TASK_NAME, queue=QUEUE, retry=_Retry(), pass_context=False)
        def goal(**job: Any) -> dict[str, Any]:
            return dict(run_goal(job))
    return app


@contextlib.contextmanager
def opened(url: str) -> Iterator[Any]:
    """A synchronous App (``defer``, ``list_jobs``), closed at the end of the block."""
    app = make_app(url)
    app.open()
    try:
        yield app
    finally:
        app.close()


@dataclass
class Enqueued:
    thread_id: str
    outcome: str  # queued | already_queued | running | completed | failed
    job_id: int | None = None


def enqueue(app: Any, goal: dict[str, Any], *, priority: int) -> Enqueued:
    """Queue one goal (``thread_id``, ``goal``, ``workdir``, ``yes``, ``line``, ``batch``) unless a job of its
    thread waits or runs already."""
    from procrastinate.exceptions import AlreadyEnqueued

    tid = str(goal["thread_id"])
    if app.job_manager.list_jobs(lock=tid, status="doing", queue=QUEUE):
        return Enqueued(tid, "running")
    try:
        job_id = app.configure_task(TASK_NAME, queue=QUEUE, lock=tid, queueing_lock=tid,
                                    priority=priority).defer(**goal)
    except AlreadyEnqueued:
        return Enqueued(tid, "already_queued")
    return Enqueued(tid, "queued", int(job_id))


def latest_jobs(app: Any) -> dict[str, Any]:
    """The newest job of each goal's thread (thread id -> procrastinate Job)."""
    out: dict[str, Any] = {}
    for job in app.job_manager.list_jobs(queue=QUEUE, task=TASK_NAME):
        tid = str(job.task_kwargs.get("thread_id"))
        if tid not in out or (job.id or 0) > (out[tid].id or 0):
            out[tid] = job
    return out


async def recover_stalled(app: Any, lease_s: float) -> list[int]:
    """Put back to ``todo`` the goals of workers silent for ``lease_s`` (killed, or their machine gone)."""
    recovered = []
    for job in await app.job_manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=lease_s):
        try:
            await app.job_manager.retry_job(job)
        except Exception:  # another worker's sweep was first
            continue
        recovered.append(int(job.id))
    return recovered


async def queue_is_empty(app: Any) -> bool:
    """No goal waits (even scheduled later) or runs."""
    rows = await app.connector.execute_query_one_async(
        query="SELECT count(*) AS n FROM procrastinate_jobs WHERE queue_name = %(queue)s "
              "AND status IN ('todo', 'doing')", queue=QUEUE)
    return int(rows["n"]) == 0
