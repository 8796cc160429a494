"""What a run did to the working directory: the change lists of ``show``, ``show --diff``, ``undo``, and
the question ``resume`` asks about a thread whose tasks were undone (see docs/workdir.md)."""

from __future__ import annotations

import argparse
import shlex
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from free_llm_agent.cli import support
from free_llm_agent.cli.support import BadInput, hint, runner_for
from free_llm_agent.config import load_config, resolve_home
from free_llm_agent.snapshots import Snapshots, describe_all, open_snapshots, unified
from free_llm_agent.snapshots.tasks import last_attempt, unacknowledged_undos, undone_tasks


def snapshots_for(args: argparse.Namespace, config: Any = None) -> Snapshots:
    """The snapshots in the home the flags name (caps from limits.yaml when ``config`` is given)."""
    home = resolve_home(getattr(args, "home", None))
    if config is None:
        return open_snapshots(home)
    settings = config.limits.snapshots
    return open_snapshots(home, max_file_mb=settings.max_file_mb, max_total_mb=settings.max_total_mb)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).astimezone().strftime("%Y-%m-%d %H:%M")


def with_changes(args: argparse.Namespace, tasks: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """``show --json``'s tasks, each with ``changes`` and ``undone``; and the thread's undos."""
    events = snapshots_for(args).events(args.thread_id)
    undone = undone_tasks(events)
    undos = [{"task": e["task"], "tasks": e["tasks"], "at": datetime.fromtimestamp(e["at"], UTC).isoformat()}
             for e in events if e.get("kind") == "undo"]
    return [{**t, "changes": t.get("changes", []), "undone": int(t["id"]) in undone} for t in tasks], undos


def print_changes(args: argparse.Namespace, task: dict[str, Any], undone: dict[int, float]) -> None:
    """``show``: the task's change list, and whether it was undone."""
    out = support.out
    if int(task["id"]) in undone:
        out.print(f"undone on {_when(undone[int(task['id'])])}: its changes were taken back", style="yellow",
                  markup=False)
    if "changes" in task:
        lines = describe_all(task["changes"])
        label = "files changed so far (cut short)" if task.get("interrupted") else "files changed"
        out.print(f"{label}:" + ("" if lines else " none"), style="bold", markup=False)
        for line in lines:
            out.print(f"  {line}", markup=False)


def undone_of(args: argparse.Namespace) -> dict[int, float]:
    return undone_tasks(snapshots_for(args).events(args.thread_id))


def print_diff(args: argparse.Namespace, tasks: list[dict[str, Any]]) -> int:
    """``show THREAD --diff [--task N]``: each task's unified diff (binary files as a line with sizes)."""
    snaps = snapshots_for(args)
    events = snaps.events(args.thread_id)
    chosen = [t for t in tasks if args.task is None or int(t["id"]) == args.task]
    if args.task is not None and not chosen:
        raise BadInput(f"thread {args.thread_id!r} has no task {args.task}; its tasks: "
                       f"{', '.join(str(t['id']) for t in tasks) or 'none'}")
    write = sys.stdout.write
    for task in chosen:
        attempt = last_attempt(events, int(task["id"]))
        write(f"# Task {task['id']}: {task.get('description', '')}\n")
        if attempt is None or not attempt.get("after") or not snaps.store.has(attempt["before"]):
            write("(no snapshot: it did not run, snapshots were off, or they were pruned)\n")
            continue
        store = snaps.store
        lines = list(unified(store, store.manifest(attempt["before"]), store.manifest(attempt["after"])))
        for line in lines or ["(no file changed)\n"]:
            write(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    """``undo THREAD [--task N] [--yes] [--force]``: the folder as it was before task N (default: the first)."""
    from free_llm_agent.runtime.runner import UnknownThread
    from free_llm_agent.snapshots.undo import UndoError, apply_undo, plan_undo
    from free_llm_agent.storage.errors import ThreadBusy

    config = load_config(getattr(args, "config_dir", None))
    runner = runner_for(args)
    try:
        values = runner.graph.get_state(runner.config_for(args.thread_id)).values
        if not values:
            raise UnknownThread(args.thread_id)
        workdir = Path(values["workdir"]) if values.get("workdir") else runner.deps.workdir(None, args.thread_id)
        if not workdir.is_dir():
            raise BadInput(f"the working directory of thread {args.thread_id!r}, {workdir}, no longer exists")
        snaps = snapshots_for(args, config)
        try:
            with runner.deps.lock(args.thread_id, f"undo-{uuid.uuid4().hex}"):
                plan = plan_undo(snaps, args.thread_id, workdir, args.task)
                _show_plan(args, plan)
                if plan.changed_since and not args.force:
                    raise BadInput(
                        f"{len(plan.changed_since)} file(s) changed after the run (someone else's edits?): "
                        f"{', '.join(plan.changed_since[:20])}; undo would overwrite them. Undo anyway with "
                        f"{hint(args, 'undo', shlex.quote(args.thread_id), *_task_flag(args), '--force')}")
                if not args.yes and not _confirm("Undo these changes? [y/N] "):
                    support.err.print("Nothing was changed.", markup=False)
                    return 1
                problems = apply_undo(snaps, args.thread_id, plan)
        except UndoError as exc:
            raise BadInput(str(exc)) from None
        except ThreadBusy as exc:
            raise BadInput(str(exc)) from None
    finally:
        runner.close()
    for problem in problems:
        support.err.print(f"warning: {problem}", style="yellow", markup=False)
    support.out.print(f"Undone: restored {len(plan.restore)} file(s), deleted {len(plan.delete)}; "
                      f"task(s) {', '.join(map(str, plan.tasks))} marked undone in thread {args.thread_id}.",
                      markup=False)
    return 1 if problems else 0


def _task_flag(args: argparse.Namespace) -> list[str]:
    return ["--task", str(args.task)] if args.task is not None else []


def _show_plan(args: argparse.Namespace, plan: Any) -> None:
    out = support.out
    out.print(f"Undo task(s) {', '.join(map(str, plan.tasks))} of thread {args.thread_id}: {plan.workdir} goes "
              f"back to how it was before task {plan.task}.", markup=False)
    for path in plan.restore:
        out.print(f"  restore {path}", markup=False)
    for path in plan.delete:
        out.print(f"  delete  {path}", markup=False)
    for path, why in plan.cannot:
        out.print(f"  cannot restore {path} ({why}): left as it is", markup=False, style="yellow")
    if not (plan.restore or plan.delete or plan.cannot):
        out.print("  nothing to change: the folder is already as it was", markup=False)


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise BadInput("undo asks before changing files: run it in a terminal, or add --yes")
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def confirm_resume(args: argparse.Namespace, home: Path, has_work: bool) -> None:
    """Before ``resume`` goes on with a thread whose tasks were undone: ask (or ``--yes``), once."""
    snaps = open_snapshots(home)
    undone = unacknowledged_undos(snaps.events(args.thread_id))
    if not undone or not has_work:
        return
    what = f"task(s) {', '.join(map(str, undone))} of thread {args.thread_id} were undone"
    if args.yes:
        support.err.print(f"note: {what}; resuming (--yes)", markup=False)
    elif sys.stdin.isatty():
        if input(f"{what[0].upper()}{what[1:]}. Resume anyway (tasks not done yet run)? [y/N] ").strip().lower() \
                not in ("y", "yes"):
            raise BadInput("not resumed; the thread is as it was")
    else:
        raise BadInput(f"{what}; resume would go on with the thread: add --yes to resume anyway")
    snaps.acknowledge_undos(args.thread_id)
