"""Goals on many machines: ``batch FILE --enqueue``, ``worker`` and ``batch --status``, on the shared
PostgreSQL database's job queue (:mod:`runtime.job_queue`).

A worker runs up to ``--concurrency`` goals at once, each in a thread beside procrastinate's asyncio loop
(heartbeat, fetching, the stalled-goal sweep). A goal is driven as ``batch`` drives it
(:class:`runtime.goal_runner.GoalRunner`); what it returns decides the job's fate:

* completed / failed / awaiting approval → the job is done (the thread holds the result);
* waiting for quota → the job is rescheduled for the thread's ``resume_after`` (no worker takes it before);
* held by another process (the thread lock) → rescheduled one lease later;
* stopped with the worker (Ctrl-C, SIGTERM) → rescheduled now, for another worker (its checkpoints stay).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from free_llm_agent.cli import run_imports, support
from free_llm_agent.cli.support import BadInput, database_url, runner_for
from free_llm_agent.config import load_config, resolve_home

if TYPE_CHECKING:
    from free_llm_agent.runtime.batch_file import BatchGoal
    from free_llm_agent.runtime.goal_runner import GoalRunner

NEEDS_URL = ("needs the shared database: pass --database-url postgresql://… (or set $FREE_AGENT_DATABASE_URL); "
             "the job queue lives in PostgreSQL")


def _url(args: argparse.Namespace, what: str) -> str:
    url = database_url(args)
    if not url:
        raise BadInput(f"{what} {NEEDS_URL}")
    return url


def _schema(url: str) -> None:
    import psycopg

    from free_llm_agent.runtime.job_queue import ensure_schema
    from free_llm_agent.storage.urls import redacted

    try:
        ensure_schema(url)
    except psycopg.Error as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"cannot use the job queue in {redacted(url)}: {detail}") from None


# ------------------------------------------------------------------ batch FILE --enqueue
def cmd_enqueue(args: argparse.Namespace, goals: list[BatchGoal]) -> int:
    from free_llm_agent.runtime.job_queue import enqueue, opened

    url = _url(args, "batch --enqueue")
    _schema(url)
    batch = str(Path(args.file).expanduser().resolve())
    runner = runner_for(args)
    rows = []
    try:
        with opened(url) as app:
            for g in goals:
                found = runner.result(g.thread_id) if runner.graph.get_state(
                    runner.config_for(g.thread_id)).values else None
                status = found.status if found is not None else None
                if status in ("completed", "failed"):
                    outcome = status
                elif status == "awaiting_approval" and not args.yes:
                    outcome = "awaiting_approval"
                else:
                    outcome = enqueue(app, {"thread_id": g.thread_id, "goal": g.goal, "workdir": g.workdir,
                                            "yes": bool(args.yes), "line": g.line, "batch": batch,
                                            "priority": g.priority}, priority=g.priority).outcome
                rows.append({**g.to_json(), "outcome": outcome})
    finally:
        runner.close()
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    if args.json:
        print(json.dumps({"batch": batch, "counts": counts, "goals": rows}, ensure_ascii=False))
    else:
        for r in rows:
            support.err.print(f"line {r['line']} [{r['thread_id']}] {r['outcome']}", markup=False)
        support.err.print(f"{', '.join(f'{n} {k}' for k, n in counts.items())}; start workers on any machine: "
                          f"{support.program()} worker --database-url URL   (see them: batch --status)",
                          markup=False)
    return 0


# ------------------------------------------------------------------ batch --status
def cmd_batch_status(args: argparse.Namespace) -> int:
    """Every goal's state: the queue's (when there is a shared database) and its thread's."""
    from free_llm_agent.cli.batch_view import goal_table
    from free_llm_agent.runtime.batch_file import BatchGoal
    from free_llm_agent.runtime.batch_scheduler import GoalState, epoch

    url = database_url(args)
    goals: list[BatchGoal] = []
    if args.file:
        from free_llm_agent.cli.batch_common import read_goals

        goals = read_goals(args)
    elif not url:
        raise BadInput("batch --status without a FILE lists the shared queue: it " + NEEDS_URL +
                       "; on this machine alone give the batch FILE")
    jobs = _jobs(url) if url else {}
    if not args.file:
        goals = [BatchGoal(line=int(j.task_kwargs.get("line", 0)), goal=str(j.task_kwargs.get("goal", "")),
                           workdir=str(j.task_kwargs.get("workdir", "")), priority=int(j.priority),
                           thread_id=tid) for tid, j in jobs.items()]
        goals.sort(key=lambda g: (str(jobs[g.thread_id].task_kwargs.get("batch", "")), g.line))
    runner = runner_for(args)
    states, extra = [], []
    try:
        for g in goals:
            s = GoalState(goal=g)
            found = runner.result(g.thread_id) if runner.graph.get_state(
                runner.config_for(g.thread_id)).values else None
            job = jobs.get(g.thread_id)
            s.status, s.note = _state(found.status if found else None, job, queued=bool(url))
            if found is not None:
                from free_llm_agent.cli.batch_common import absorb

                s.started = True
                absorb(s, found)
                s.requests = sum(found.llm_calls.values())  # every request of the thread, on any machine
                s.resume_after = epoch(found.resume_after)
            if job is not None and job.status == "todo" and job.scheduled_at is not None:
                s.resume_after = job.scheduled_at.timestamp()
            states.append(s)
            extra.append({"queue": job.status if job else None, "attempts": job.attempts if job else None,
                          "batch": job.task_kwargs.get("batch") if job else None})
    finally:
        runner.close()
    if args.json:
        counts: dict[str, int] = {}
        for s in states:
            counts[s.status] = counts.get(s.status, 0) + 1
        print(json.dumps({"counts": counts, "goals": [s.to_json() | e for s, e in zip(states, extra, strict=True)]},
                         ensure_ascii=False))
    else:
        support.out.print(goal_table(states))
    return 0


def _jobs(url: str) -> dict[str, Any]:
    import psycopg

    from free_llm_agent.runtime.job_queue import latest_jobs, opened

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
        if not (row and row[0]):
            return {}
        with opened(url) as app:
            return latest_jobs(app)
    except psycopg.Error as exc:
        raise BadInput(f"cannot read the job queue: {str(exc).strip().splitlines()[0]}") from None


def _state(thread_status: str | None, job: Any, *, queued: bool) -> tuple[str, str]:
    """A goal's state from its thread and its newest job (``queued``: there is a shared queue to look in)."""
    if thread_status in ("completed", "failed"):
        return thread_status, ""
    if job is None:
        return thread_status or "pending", "not queued" if queued else ""
    if job.status == "doing":
        return "running", f"worker {job.worker_id}" if job.worker_id else "taken"
    if job.status == "todo":
        ready = job.scheduled_at is None or job.scheduled_at <= datetime.now(UTC)
        if thread_status == "waiting_for_quota" and not ready:
            return "waiting_for_quota", ""
        return ("queued", "") if ready else ("scheduled", "")
    if job.status == "failed":
        return "error", "the goal's job failed: see the worker's output"
    return thread_status or str(job.status), ""


# ------------------------------------------------------------------ worker
class _Stopping(Exception):
    """Raised between two steps of a goal when the worker stops: its checkpoints stay, another worker resumes."""


class _Worker:
    def __init__(self, runner: GoalRunner, *, lease: float, json_lines: bool, name: str) -> None:
        self.runner, self.lease, self.json_lines, self.name = runner, lease, json_lines, name
        self.stopping = threading.Event()
        self.running = 0
        self._lock = threading.Lock()
        self.outages: dict[str, int] = {}  # thread id -> outage pauses in a row on this worker

    def emit(self, event: str, thread_id: str, **fields: Any) -> None:
        record = {"event": event, "thread_id": thread_id, "worker": self.name,
                  "time": datetime.now(UTC).isoformat(timespec="milliseconds"), **fields}
        with self._lock:
            if self.json_lines:
                print(json.dumps(record, ensure_ascii=False), flush=True)
            else:
                rest = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
                support.err.print(f"{record['time']} {event} {thread_id} {rest}".rstrip(), markup=False)

    def _listen(self, mode: str, chunk: Any) -> None:
        if self.stopping.is_set():
            raise _Stopping

    def run_goal(self, job: dict[str, Any]) -> dict[str, Any]:
        from free_llm_agent.runtime.job_queue import Reschedule
        from free_llm_agent.storage.errors import StateUnavailable, ThreadBusy

        tid, now = str(job["thread_id"]), datetime.now(UTC)
        if self.stopping.is_set():
            raise Reschedule(now, "the worker is stopping")
        with self._lock:
            self.running += 1
        self.emit("started", tid, line=job.get("line"))
        try:
            result = self.runner.drive(tid, str(job["goal"]), str(job["workdir"]), yes=bool(job.get("yes")),
                                       listener=self._listen)
        except ThreadBusy as exc:
            self.emit("busy", tid, detail=str(exc))
            raise Reschedule(datetime.now(UTC) + timedelta(seconds=self.lease), str(exc)) from None
        except StateUnavailable as exc:
            self.emit("database_unavailable", tid, detail=str(exc))
            raise Reschedule(datetime.now(UTC) + timedelta(seconds=self.lease), str(exc)) from None
        except Exception as exc:
            if self.stopping.is_set():
                self.emit("stopped", tid)
                raise Reschedule(datetime.now(UTC), "the worker stopped") from None
            self.emit("error", tid, detail=f"{type(exc).__name__}: {exc}"[:300])
            raise
        finally:
            with self._lock:
                self.running -= 1
        if result.status == "waiting_for_quota":
            from free_llm_agent.runtime.waiting import MAX_OUTAGES, outage_pause

            with self._lock:
                self.outages[tid] = self.outages.get(tid, 0) + 1 if outage_pause(result) else 0
                outages = self.outages[tid]
            if outages > MAX_OUTAGES:  # providers are down, not dry: stop spending requests on this goal
                self.emit("gave_up", tid, detail=f"every provider failed {outages} times in a row (an outage, "
                          "not quota); resume it later")
                return {"status": result.status, "thread_id": tid}
            at = (datetime.fromisoformat(result.resume_after) if result.resume_after
                  else datetime.now(UTC) + timedelta(minutes=1))  # a minute from the pause, not from the start
            self.emit("waiting_for_quota", tid, resume_after=at.isoformat(timespec="seconds"))
            raise Reschedule(at, "every provider is out of quota")
        if result.status not in ("completed", "failed", "awaiting_approval"):
            self.emit("stopped", tid, status=result.status)
            raise Reschedule(datetime.now(UTC), f"the run ended {result.status}")
        self.emit("finished", tid, status=result.status, llm_calls=sum(result.llm_calls.values()))
        return {"status": result.status, "thread_id": tid}


def cmd_worker(args: argparse.Namespace) -> int:
    from free_llm_agent.cli.batch_common import MAX_WORKERS, open_goal_runner
    from free_llm_agent.graph.context import Context
    from free_llm_agent.runtime.deps import Deps
    from free_llm_agent.runtime.job_queue import make_app

    url = _url(args, "worker")
    if not 1 <= args.concurrency <= MAX_WORKERS:
        raise BadInput(f"--concurrency {args.concurrency}: give 1 to {MAX_WORKERS}")
    if not 3 <= args.lease <= 3600:
        raise BadInput(f"--lease {args.lease:g}: give 3 to 3600 seconds")
    if args.idle_exit is not None and args.idle_exit < 0:
        raise BadInput("--idle-exit: give a number of seconds (0 or more)")
    config = load_config(getattr(args, "config_dir", None))
    deps = Deps(home=resolve_home(getattr(args, "home", None)), config=config, database_url=url)
    _schema(url)
    run_imports.prepare()
    runner = open_goal_runner(args, config, deps, Context(), size=args.concurrency)
    name = f"{socket.gethostname()}-{os.getpid()}"
    worker = _Worker(runner, lease=args.lease, json_lines=args.json, name=name)
    app = make_app(url, run_goal=worker.run_goal)
    if not args.json:
        support.err.print(f"worker {name}: taking goals (concurrency {args.concurrency}, lease {args.lease:g} s); "
                          "Ctrl-C stops it (its goals go back to the queue)", markup=False)
    try:
        asyncio.run(_serve(app, worker, args))
    finally:
        runner.close()
    return 0


async def _serve(app: Any, state: _Worker, args: argparse.Namespace) -> None:
    from procrastinate.worker import Worker

    from free_llm_agent.runtime.job_queue import QUEUE

    lease = float(args.lease)
    async with app.open_async():
        worker = Worker(app=app, queues=[QUEUE], name=state.name, concurrency=args.concurrency,
                        install_signal_handlers=False, update_heartbeat_interval=lease / 3,
                        stalled_worker_timeout=lease, fetch_job_polling_interval=min(5.0, lease / 3),
                        shutdown_graceful_timeout=60)

        def stop() -> None:
            state.stopping.set()
            state.runner.deps.abort_all()  # code in flight stops now; the goal is rescheduled for another worker
            worker.stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        side = [asyncio.create_task(_sweep(app, lease)),
                asyncio.create_task(_idle(app, state, stop, args.idle_exit))]
        try:
            await worker.run()
        finally:
            for task in side:
                task.cancel()
            await asyncio.gather(*side, return_exceptions=True)


async def _sweep(app: Any, lease: float) -> None:
    """Every lease/3 seconds: the goals of workers silent for a lease go back to the queue."""
    from free_llm_agent.runtime.job_queue import recover_stalled

    while True:
        await asyncio.sleep(lease / 3)
        try:
            for job_id in await recover_stalled(app, lease):
                print(f"{datetime.now(UTC).isoformat(timespec='milliseconds')} recovered job {job_id} "
                      "(its worker stopped answering)", file=sys.stderr, flush=True)
        except Exception as exc:  # the database hiccuped: the next sweep tries again
            print(f"stall sweep failed: {exc}", file=sys.stderr, flush=True)


async def _idle(app: Any, state: _Worker, stop: Any, idle_exit: float | None) -> None:
    """``--idle-exit S``: stop once the queue has held nothing waiting or running for S seconds."""
    from free_llm_agent.runtime.job_queue import queue_is_empty

    if idle_exit is None:
        return
    since: float | None = None
    while True:
        await asyncio.sleep(0.5)
        empty = state.running == 0 and await queue_is_empty(app)
        since = (since or time.monotonic()) if empty else None
        if since is not None and time.monotonic() - since >= idle_exit:
            stop()
            return
