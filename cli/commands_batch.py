"""``batch FILE``: many goals, each its own thread, N workers in this process sharing the quota.

``--enqueue`` puts the goals in the shared database's job queue instead (``worker`` on any machine takes
them, :mod:`cli.commands_worker`); ``--status`` shows every goal's state (:func:`cmd_batch_status`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from free_llm_agent.cli import run_imports, support
from free_llm_agent.cli.batch_common import (
    APPROVE_NOTE,
    MAX_WORKERS,
    absorb,
    check_workdirs,
    open_goal_runner,
    read_goals,
)
from free_llm_agent.cli.support import BadInput, database_url, hint
from free_llm_agent.config import load_config, resolve_home

if TYPE_CHECKING:
    from free_llm_agent.runtime.batch_file import BatchGoal
    from free_llm_agent.runtime.batch_scheduler import GoalState, Scheduler
    from free_llm_agent.runtime.goal_runner import GoalRunner


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """``batch`` and ``worker`` on the CLI's sub-parsers."""
    batch = sub.add_parser("batch", parents=[common], help="many goals from a file, N at once sharing the quota")
    batch.add_argument("file", nargs="?", help="one goal per line, or JSON lines with goal, workdir, priority")
    batch.add_argument("--workers", type=int, default=2, metavar="N", help="goals run at once (default 2)")
    batch.add_argument("--wait", action="store_true",
                       help="when the quota runs dry, wait for it and finish every goal (default: stop them)")
    batch.add_argument("--yes", "-y", action="store_true", help="run every goal's code without asking")
    batch.add_argument("--workdir", metavar="DIR", help="folder of the plain lines' goals (default: the current one)")
    batch.add_argument("--json", action="store_true", help="no live table; one JSON summary at the end")
    batch.add_argument("--enqueue", action="store_true",
                       help="put the goals in the shared database's queue for 'worker' on any machine")
    batch.add_argument("--status", action="store_true", help="the state of every goal (with FILE: of its goals)")
    worker = sub.add_parser("worker", parents=[common], help="take enqueued goals (needs --database-url)")
    worker.add_argument("--concurrency", type=int, default=2, metavar="N", help="goals run at once (default 2)")
    worker.add_argument("--lease", type=float, default=30.0, metavar="SECONDS",
                        help="a worker silent this long has died: its goal goes to another (default 30; "
                        "taken over within lease + 15 s)")
    worker.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                        help="stop after the queue has had nothing ready for this long (default: run until Ctrl-C)")
    worker.add_argument("--json", action="store_true", help="one JSON line per goal taken and finished")


def cmd_batch(args: argparse.Namespace) -> int:
    if args.status:
        from free_llm_agent.cli.commands_worker import cmd_batch_status

        return cmd_batch_status(args)
    goals = read_goals(args)
    if args.enqueue:
        from free_llm_agent.cli.commands_worker import cmd_enqueue

        return cmd_enqueue(args, goals)
    if not 1 <= args.workers <= MAX_WORKERS:
        raise BadInput(f"--workers {args.workers}: give 1 to {MAX_WORKERS}")
    return _run_batch(args, goals)


def _run_batch(args: argparse.Namespace, goals: list[BatchGoal]) -> int:
    from free_llm_agent.graph.context import Context
    from free_llm_agent.runtime.batch_scheduler import Scheduler
    from free_llm_agent.runtime.deps import Deps

    config = load_config(getattr(args, "config_dir", None))
    home = resolve_home(getattr(args, "home", None))
    deps = Deps(home=home, config=config, database_url=database_url(args))
    check_workdirs(goals, deps, args.file)
    run_imports.prepare()
    runner = open_goal_runner(args, config, deps, Context(), size=args.workers)
    try:
        states = initial_states(goals, runner, yes=args.yes)
        scheduler = Scheduler(states, wait=args.wait)
        started = time.time()
        stopped = _drive(args, scheduler, runner)
        wall = time.time() - started
    finally:
        runner.close()
    summary = _summary(args, states, scheduler, wall)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        _hints(args, states)
    if stopped:
        return 130
    return 1 if any(s.status in ("failed", "error", "busy") for s in states) else 0


def initial_states(goals: list[BatchGoal], runner: GoalRunner, *, yes: bool) -> list[GoalState]:
    """Each goal's state before this run: a completed or failed thread is skipped (nothing is sent), a
    paused or interrupted one resumed, a new one started."""
    from free_llm_agent.runtime.batch_scheduler import GoalState, epoch

    states = []
    for g in goals:
        s = GoalState(goal=g)
        found = runner.status(g.thread_id)
        if found is not None:
            s.started = True
            absorb(s, found)
            if found.status in ("completed", "failed"):
                s.status, s.skipped = found.status, True
            elif found.status == "waiting_for_quota":
                s.status, s.resume_after = "waiting_for_quota", epoch(found.resume_after)
                if (s.resume_after or 0) <= time.time():
                    s.status = "pending"
            elif found.status == "awaiting_approval" and not yes:
                s.status, s.note = "awaiting_approval", APPROVE_NOTE
        states.append(s)
    return states


class _Stopped(Exception):
    """Raised in a goal's listener once the batch is stopped: the goal ends at its current step."""


def run_one(state: GoalState, runner: GoalRunner, *, yes: bool, scheduler: Scheduler | None = None
            ) -> tuple[str, float | None]:
    """Drive one goal until it ends or pauses; its status for the scheduler and its ``resume_after``."""
    from free_llm_agent.runtime.batch_scheduler import epoch
    from free_llm_agent.storage.errors import ThreadBusy

    g = state.goal
    before = sum(state.llm_calls.values())

    def listen(mode: str, chunk: Any) -> None:
        state.on_event(mode, chunk)
        if scheduler is not None:
            scheduler.progressed(state, mode, chunk)
            if scheduler.stopped:  # Ctrl-C: go no further than this step (its checkpoints stay)
                raise _Stopped

    try:
        result = runner.drive(g.thread_id, g.goal, g.workdir, yes=yes, listener=listen)
    except _Stopped:
        state.note = "stopped by Ctrl-C: the next run resumes it"
        return "interrupted", None
    except ThreadBusy as exc:
        state.note = str(exc)
        return "busy", None
    except Exception as exc:  # one goal's failure (its folder, the database) never stops the others
        state.note = f"{type(exc).__name__}: {exc}"[:300]
        return "error", None
    state.started = True
    absorb(state, result)
    state.requests += max(0, sum(result.llm_calls.values()) - before)
    if result.status == "waiting_for_quota":
        from free_llm_agent.runtime.waiting import MAX_OUTAGES, outage_pause

        state.outages = state.outages + 1 if outage_pause(result) else 0
        if state.outages > MAX_OUTAGES:  # not a spent quota: providers are down; retrying would spend requests
            state.note = (f"every provider failed {state.outages} times in a row (an outage, not quota): not "
                          "waited out again; resume it later")
            return "interrupted", None
        return "waiting_for_quota", epoch(result.resume_after) or time.time() + 60
    if result.status == "awaiting_approval":
        state.note = APPROVE_NOTE
    return (result.status if result.status in ("completed", "failed", "awaiting_approval") else "interrupted"), None


def _drive(args: argparse.Namespace, scheduler: Scheduler, runner: GoalRunner) -> bool:
    """Run the workers until no goal is left to hand out; True when Ctrl-C stopped them."""
    from free_llm_agent.cli.batch_view import BatchView

    view = BatchView(support.err, scheduler, workers=args.workers, live=False if args.json else None)
    quiet = args.json

    def work() -> None:
        while (state := scheduler.take()) is not None:
            if not quiet:
                view.changed(state)
            status, resume_after = run_one(state, runner, yes=args.yes, scheduler=scheduler)
            scheduler.done(state, status, resume_after)
            if not quiet:
                view.changed(state)

    threads = [threading.Thread(target=work, name=f"fla-batch-{n}", daemon=True) for n in range(args.workers)]
    previous = signal.getsignal(signal.SIGINT)
    try:
        with view if not quiet else _Nothing():
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(0.2)
    except KeyboardInterrupt:
        scheduler.stop()
        runner.deps.abort_all()  # the tasks in flight stop now, as interrupted (resumed by the next run)
        for t in threads:
            t.join(5)
        again = hint(args, "batch", shlex.quote(args.file))
        support.err.print(f"\nStopped. Nothing finished is lost; continue with: {again}", markup=False)
        return True
    finally:
        signal.signal(signal.SIGINT, previous)
    return False


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _summary(args: argparse.Namespace, states: list[GoalState], scheduler: Scheduler, wall: float) -> dict[str, Any]:
    calls: dict[str, int] = {}
    for s in states:
        for name, n in s.llm_calls.items():
            calls[name] = calls.get(name, 0) + n
    return {"batch": str(Path(args.file).expanduser().resolve()), "workers": args.workers, "wait": args.wait,
            "wall_seconds": round(wall, 2), "counts": scheduler.counts(),
            "requests": sum(s.requests for s in states), "llm_calls": calls,
            "goals": [s.to_json() for s in sorted(states, key=lambda s: s.goal.line)]}


def _hints(args: argparse.Namespace, states: list[GoalState]) -> None:
    err = support.err
    dry = [s for s in states if s.status == "waiting_for_quota"]
    if dry:
        when = min(s.resume_after or 0 for s in dry)
        from datetime import UTC, datetime

        at = datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds")
        again = hint(args, "batch", shlex.quote(args.file))
        err.print(f"{len(dry)} goal(s) wait for quota; after {at} run again: {again} "
                  "(or add --wait to finish them in one go)", markup=False)
    for s in states:
        if s.status == "awaiting_approval":
            err.print(f"line {s.goal.line} waits for approval: {hint(args, 'resume', s.goal.thread_id)}",
                      markup=False)
