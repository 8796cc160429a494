"""finalize: what was achieved, task by task (no LLM call: the summary is built from the state): one line
per task (:mod:`nodes.task_line`), the files it changed under it."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig

from free_llm_agent.graph.state import State, Task
from free_llm_agent.nodes.common import thread_id
from free_llm_agent.nodes.execute import NO_CODE
from free_llm_agent.nodes.task_line import task_line
from free_llm_agent.runtime.deps import Deps
from free_llm_agent.snapshots import describe_all

_MARK = {"done": "✔", "failed": "✘", "skipped": "–", "pending": "·", "running": "·"}


def finalize(state: State, config: RunnableConfig, *, deps: Deps) -> dict[str, Any]:
    deps.release(thread_id(config))  # back to the pool, warm, for the next thread with the same workdir
    deps.journal().clear(thread_id(config))  # the run is over: no task of it is in flight
    # A task left over after the model wrote no code for it failed (the run then fails too): a run
    # never reports "completed" while a planned task was skipped for want of code.
    leftovers: list[Task] = [
        {"id": t["id"], "status": "failed" if t.get("error") == NO_CODE else "skipped"}
        for t in state.get("tasks", [])
        if t.get("status") in ("pending", "running")
    ]
    final = {t["id"]: t for t in state.get("tasks", [])}
    for t in leftovers:
        final[t["id"]] = {**final[t["id"]], **t}
    tasks = list(final.values())
    done = [t for t in tasks if t.get("status") == "done"]
    # A failure from a plan that reflect replaced does not fail the goal; the latest plan decides.
    current = [t for t in tasks if t["id"] >= state.get("plan_start", 1)]
    failed = [t for t in current if t.get("status") == "failed"]
    ok = any(t.get("status") == "done" for t in current) and not failed
    status = "completed" if ok and state.get("status") != "failed" else "failed"
    lines = [f"Goal: {state['goal']}"]
    for t in tasks:
        detail = task_line(t)
        lines.append(
            f"{_MARK.get(t.get('status', ''), '?')} Task {t['id']}: {t['description']}"
            + (f" — {detail}" if detail else "")
        )
        lines.extend(f"    {line}" for line in describe_all(t.get("changes") or []))
    lines.append(f"{len(done)} of {len(tasks)} tasks done.")
    if not tasks and state.get("errors"):
        lines.append(f"Stopped: {state['errors'][-1]}")
    return {"tasks": leftovers, "summary": "\n".join(lines), "status": status, "fallback": None}
