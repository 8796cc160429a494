"""reflect: one LLM call per batch judges every result and decides what comes next.

The exit status is the floor: when the judge's answer cannot be read even after the repair
prompt, each task is judged by its own result (exit 0 and no error: done; otherwise retry while
attempts remain), marked ``unjudged``, and the run goes on. A run never fails only because a
judge was unreadable.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from free_llm_agent.graph.context import Context
from free_llm_agent.graph.state import State, Task
from free_llm_agent.nodes import prompts
from free_llm_agent.nodes.common import batch_tasks, failure_update, retry_reason
from free_llm_agent.nodes.llm import Asked, ask
from free_llm_agent.nodes.parsing import ParseError
from free_llm_agent.nodes.parsing_review import parse_review
from free_llm_agent.nodes.schemas import Review
from free_llm_agent.providers.errors import AllProvidersExhausted
from free_llm_agent.runtime.deps import Deps


def reflect(state: State, runtime: Runtime[Context], *, deps: Deps) -> dict[str, Any]:
    ran = [t for t in batch_tasks(state) if t.get("status") in ("done", "failed")]
    iteration = state.get("iteration", 0) + 1
    judged = [t for t in ran if not str(t.get("error", "")).startswith("blocked:")]
    if not judged:  # everything was rejected by the user or blocked by the deny-list: nothing to ask about
        blocked = [{"id": t["id"], "status": "failed"} for t in ran]
        return {"iteration": iteration, "decision": "continue", "verdicts": [], "batch": [], "fallback": None,
                **({"tasks": blocked} if blocked else {})}
    asked = Asked()
    ids = [t["id"] for t in ran]
    try:
        review = ask(
            deps.chat_model(),
            Review,
            prompts.reflect(state["goal"], ran),
            lambda text: parse_review(text, ids),
            task_type="complex_reasoning",
            purpose="reflect",
            providers=runtime.context.preferred_providers,
            asked=asked,
            previous_error=retry_reason(state, "reflect"),
        )
    except AllProvidersExhausted as exc:
        return {**asked.update(), **failure_update(state, "reflect", exc)}
    except ParseError as exc:  # unreadable even after the repair: each task's own result decides
        review = Review(verdicts=[], decision="continue")
        errors = [f"reflect: the judge's answer could not be read ({str(exc)[:200]}); judged by exit status"]
    else:
        errors = []
    verdicts = {v.task_id: v for v in review.verdicts if v.task_id in ids}
    updates = [_judge(t, verdicts.get(t["id"]), runtime.context.max_attempts) for t in ran]
    for task, update in zip(ran, updates, strict=True):
        if update["id"] not in verdicts or task.get("unjudged"):  # mark it, or clear an earlier mark
            update["unjudged"] = update["id"] not in verdicts
    return {
        **asked.update(),
        "tasks": updates,
        "verdicts": [v.model_dump() for v in verdicts.values()],
        "decision": review.decision,
        "iteration": iteration,
        "batch": [],
        "fallback": None,
        "errors": errors,
    }


def _judge(task: Task, verdict: Any, max_attempts: int) -> Task:
    """Combine the executor's exit status with the model's verdict.

    Code that failed is never "done"; blocked code is never retried; a retry
    beyond ``max_attempts`` is a failure.
    """
    tid, ran_ok = task["id"], task.get("status") == "done"
    said = verdict.verdict if verdict is not None else ("done" if ran_ok else "retry")
    if said == "done" and not ran_ok:
        said = "retry"
    if task.get("error", "").startswith("blocked:"):
        said = "failed"
    if said == "retry" and task.get("attempts", 0) >= max_attempts:
        said = "failed"
    if said == "retry":
        hint = verdict.hint if verdict is not None else (task.get("error") or "")
        return {"id": tid, "status": "pending", "hint": hint or "", "approved": False}
    if said == "failed" and ran_ok:  # its code ran without error: the judge's reason is why it failed
        why = (verdict.hint if verdict is not None else "").strip()[:500]
        gave_up = verdict is not None and verdict.verdict == "retry"
        what = f"not achieved after {task.get('attempts', 0)} attempts" if gave_up else "judged not achieved"
        return {"id": tid, "status": "failed", "error": f"{what}: {why}" if why else what}
    return {"id": tid, "status": "done" if said == "done" else "failed"}
