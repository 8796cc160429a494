"""What ``batch`` and ``worker`` share: the batch file read as a command's input, the pool of runners on the
flags' router, and what a run's result tells a goal's row."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from free_llm_agent.cli.support import BadInput, router_for

if TYPE_CHECKING:
    from free_llm_agent.runtime.batch_file import BatchGoal
    from free_llm_agent.runtime.batch_scheduler import GoalState
    from free_llm_agent.runtime.goal_runner import GoalRunner
    from free_llm_agent.runtime.runner import RunResult

MAX_WORKERS = 64
APPROVE_NOTE = "approve it: resume THREAD (shown below), or run the batch again with --yes"


def read_goals(args: argparse.Namespace) -> list[BatchGoal]:
    from free_llm_agent.runtime.batch_file import BatchFileError, read_batch

    if not args.file:
        raise BadInput("batch: give the batch FILE (one goal per line), or --status")
    if args.workdir is not None and not Path(args.workdir).expanduser().is_dir():
        raise BadInput(f"--workdir {args.workdir}: not a folder; create it or pass another")
    try:
        return read_batch(args.file, args.workdir or os.getcwd())
    except BatchFileError as exc:
        raise BadInput(str(exc)) from None


def check_workdirs(goals: list[BatchGoal], deps: Any, file: str) -> None:
    """Every goal's folder, checked as ``run --workdir`` checks it, before anything starts."""
    from free_llm_agent.tools.workspace import WorkdirError

    for g in goals:
        try:
            deps.workdir(g.workdir, g.thread_id)
        except WorkdirError as exc:
            raise BadInput(f"{Path(file).expanduser().resolve()}, line {g.line}: {exc}") from None


def open_goal_runner(args: argparse.Namespace, config: Any, deps: Any, context: Any, *, size: int) -> GoalRunner:
    """The quota-aware model on the flags' router, and the pool of runners on it (sandbox checked)."""
    import dataclasses

    from free_llm_agent.providers import QuotaAwareChatModel
    from free_llm_agent.runtime.goal_runner import GoalRunner
    from free_llm_agent.storage.errors import StateUnavailable
    from free_llm_agent.tools.sandbox import SandboxUnavailable

    router = router_for(args, config=config)
    deps.llm = QuotaAwareChatModel(router=router)
    limits = config.limits
    context = dataclasses.replace(context, max_batch_size=limits.optimization.max_batch_size,
                                  executor_timeout_s=limits.execution.task_timeout_seconds)
    try:
        deps.sandbox()
    except SandboxUnavailable as exc:
        raise BadInput(f"{config.config_dir / 'limits.yaml'}: {exc}") from None
    try:
        return GoalRunner(router.home, deps, context=context, database_url=router.database_url, size=size)
    except StateUnavailable as exc:
        raise BadInput(str(exc)) from None


def absorb(state: GoalState, result: RunResult) -> None:
    """What a result tells the table: the thread's calls and its tasks."""
    state.llm_calls = dict(result.llm_calls)
    state.tasks_total = max(state.tasks_total, len(result.tasks))
    state.tasks_done = sum(1 for t in result.tasks if t.get("status") in ("done", "failed", "skipped"))
