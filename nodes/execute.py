"""execute: one LLM call writes the code for a batch; then one task runs per step.

``write_code`` takes up to ``max_batch_size`` pending tasks and asks for all their
code at once. ``run_task`` runs the next approved task of the batch in the run's
working directory, exactly once: it holds the thread's lock while the code runs
and journals the attempt (see :mod:`storage.guard`). After a crash, an attempt that
had finished is not run again (its journaled result is used); one that was cut
short is marked ``interrupted`` and goes back to ``approve``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from free_llm_agent.graph.context import Context
from free_llm_agent.graph.state import State, Task, TaskStatus
from free_llm_agent.nodes import prompts
from free_llm_agent.nodes.common import (
    batch_tasks,
    describe_workdir,
    failure_update,
    retry_reason,
    run_owner,
    thread_id,
    workdir_of,
)
from free_llm_agent.nodes.events import TaskFinished, TaskInterrupted, TaskOutput, TaskRunning, emit
from free_llm_agent.nodes.llm import Asked, ask
from free_llm_agent.nodes.parsing import ParseError, parse_code_batch
from free_llm_agent.nodes.schemas import CodeBatch
from free_llm_agent.providers.errors import AllProvidersExhausted
from free_llm_agent.runtime.deps import Deps, Executor
from free_llm_agent.snapshots import FileChange
from free_llm_agent.storage.guard import attempt_key

_log = logging.getLogger(__name__)

NO_CODE = "the model wrote no code for this task"  # a task's error; finalize fails a run left with one


def write_code(state: State, runtime: Runtime[Context], config: RunnableConfig, *, deps: Deps) -> dict[str, Any]:
    tasks = state.get("tasks", [])
    pending = [t for t in tasks if t.get("status") == "pending"]
    if not pending:
        return {"batch": [], "fallback": None}
    batch = pending[: max(1, runtime.context.max_batch_size)]
    ids = [t["id"] for t in batch]
    done = [t for t in tasks if t.get("status") == "done"]
    asked = Asked()
    try:
        result = ask(
            deps.chat_model(),
            CodeBatch,
            prompts.code(state["goal"], batch, done, describe_workdir(workdir_of(state, deps, config))),
            lambda text: parse_code_batch(text, ids),
            task_type="code_generation",
            purpose="code",
            providers=runtime.context.preferred_providers,
            asked=asked,
            previous_error=retry_reason(state, "write_code"),
        )
    except (AllProvidersExhausted, ParseError) as exc:
        return {**asked.update(), **failure_update(state, "write_code", exc)}
    written = {item.task_id: item for item in result.items if item.task_id in ids and item.code.strip()}
    updates: list[Task] = []
    for tid in ids:
        item = written.get(tid)
        if item is None:
            updates.append({"id": tid, "code": "", "language": "python", "approved": False, "approval": ""})
        else:
            updates.append({"id": tid, "code": item.code, "language": item.language, "approved": False,
                            "approval": ""})
    return {**asked.update(), "tasks": updates, "batch": ids, "fallback": None}


def next_in_batch(state: State) -> Task | None:
    """The first task of the batch that has not run yet."""
    return next((t for t in batch_tasks(state) if t.get("status") == "pending"), None)


def run_task(state: State, runtime: Runtime[Context], config: RunnableConfig, *, deps: Deps) -> dict[str, Any]:
    task = next_in_batch(state)
    if task is None:
        return {}
    tid, attempts = task["id"], task.get("attempts", 0) + 1
    if not task.get("code", "").strip():
        return {
            "tasks": [
                {
                    "id": tid,
                    "status": "failed",
                    "attempts": attempts,
                    "approved": False,
                    "output": "",
                    "error": NO_CODE,
                }
            ]
        }
    thread = thread_id(config)
    key = attempt_key(dict(task), state["goal"])
    domains = list(dict.fromkeys([*state.get("allowed_domains", []), *runtime.context.allowed_domains]))
    journal = deps.journal()
    workdir = workdir_of(state, deps, config)
    snaps = Snapped(deps, thread, key, workdir)
    with deps.lock(thread, run_owner(config)) as lock:
        entry = journal.get(thread, key)
        if entry is not None and entry.get("state") == "started":  # a crash cut this run short
            changes = snaps.after(interrupted=True)  # what the attempt did before it was cut short
            emit(TaskInterrupted(event="task_interrupted", task_id=tid, description=task["description"],
                                 changes=changes))
            return {**snaps.update(), "tasks": [{
                "id": tid, "approved": False, "approval": "", "interrupted": True, **_listed(changes),
                "restarts": task.get("restarts", 0) + 1,
                "error": "interrupted: the agent stopped while this task was running"}]}
        if entry is not None and entry.get("state") == "finished":  # ran; only its checkpoint was lost
            result = dict(entry["result"])
            learned = None
        else:
            emit(TaskRunning(event="task_running", task_id=tid, description=task["description"],
                             language=task.get("language", "python"), code=task["code"]))
            with deps.using_executor(thread, workdir, runtime.context.executor_timeout_s,
                                     runtime.context.network and state.get("network", True),
                                     domains=domains) as executor:
                lock.check()  # still ours (a lost lock may let another machine run this thread): else stop here
                snaps.before(tid)
                journal.started(thread, key, tid)
                result = dataclasses.asdict(_run(executor, task.get("language", "python"), task["code"], tid))
                learned = deps.thread_domains(executor, domains)
            journal.finished(thread, key, tid, result)
        changes = snaps.after()
    status: TaskStatus = "done" if result["ok"] else "failed"
    emit(TaskFinished(event="task_finished", task_id=tid, status=status, error=result["error"],
                      duration_s=result["duration_s"], changes=changes))  # changes None: snapshots are off
    answered = {"allowed_domains": learned} if learned else {}  # answered "for this thread" at the prompt
    return {
        **answered,
        **snaps.update(),
        "tasks": [
            {
                "id": tid,
                "status": status,
                "attempts": attempts,
                "approved": False,
                "interrupted": False,
                "output": result["output"],
                "error": result["error"] or "",
                **_listed(changes),
            }
        ]
    }


def _run(executor: Executor, language: str, code: str, task_id: int) -> Any:
    """Run the task's code, its output shown to the run's watchers as it is printed (``task_output`` events)
    when the executor can pass it on (its ``run`` takes ``on_output``)."""

    def shown(text: str) -> None:
        emit(TaskOutput(event="task_output", task_id=task_id, text=text))

    if _streams(executor.run):
        return executor.run(language, code, on_output=shown)  # type: ignore[call-arg]
    return executor.run(language, code)


def _streams(run: Callable[..., Any]) -> bool:
    try:
        return "on_output" in inspect.signature(run).parameters
    except (TypeError, ValueError):
        return False


def _listed(changes: list[FileChange] | None) -> dict[str, Any]:
    """The task's ``changes`` (none at all when snapshots are off, so nobody reads "no file changed")."""
    return {} if changes is None else {"changes": changes}


class Snapped:
    """The snapshots around one attempt of a task (:mod:`snapshots.tasks`). They never stop a run: a
    snapshot that fails is reported in the state's errors, and the task simply has no change list."""

    def __init__(self, deps: Deps, thread: str, key: str, workdir: Path) -> None:
        self.thread, self.key, self.workdir = thread, key, workdir
        self.errors: list[str] = []
        try:
            self.snapshots = deps.snapshots()
        except Exception as exc:  # a configuration the snapshots cannot use: the run goes on without
            self.snapshots = None
            self.errors.append(f"snapshots: {exc}"[:500])

    def before(self, task_id: int) -> None:
        if self.snapshots is not None:
            try:
                self.snapshots.before(self.thread, task_id, self.key, self.workdir)
            except (OSError, ValueError, zlib.error) as exc:
                _log.warning("snapshot before task %s failed: %s", task_id, exc)
                self.errors.append(f"snapshots: before task {task_id}: {exc}"[:500])

    def after(self, *, interrupted: bool = False) -> list[FileChange] | None:
        if self.snapshots is None:
            return None
        try:
            return self.snapshots.after(self.thread, self.key, self.workdir, interrupted=interrupted)
        except (OSError, ValueError, zlib.error) as exc:
            _log.warning("snapshot after a task failed: %s", exc)
            self.errors.append(f"snapshots: after a task: {exc}"[:500])
            return None

    def update(self) -> dict[str, Any]:
        return {"errors": self.errors} if self.errors else {}
