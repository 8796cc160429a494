"""approve: nothing runs before it is allowed.

The deny-list (``tools.safety``) blocks dangerous code even with auto-approve;
blocked code becomes a failed task and never runs. Otherwise, unless the run's
context says ``auto_approve``, the node ``interrupt()``s with the task, language
and code; ``Command(resume={"action": "approve"|"reject"|"edit", "code": ...})``
answers it. Each task records how its latest code was decided (``approval``: user, edited,
auto, rejected, blocked), which ``show --json`` reports. A task whose last run a crash cut
short (``interrupted``) is asked about again, saying so; with auto-approve it runs again with
a notice.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from free_llm_agent.graph.context import Context
from free_llm_agent.graph.state import State
from free_llm_agent.nodes.common import workdir_of
from free_llm_agent.nodes.events import TaskRestarting, emit
from free_llm_agent.nodes.execute import next_in_batch
from free_llm_agent.runtime.deps import Deps
from free_llm_agent.tools.safety import check_code


def approve(state: State, runtime: Runtime[Context], config: RunnableConfig, *, deps: Deps) -> dict[str, Any]:
    task = next_in_batch(state)
    if task is None or task.get("approved"):
        return {}
    tid, language, code = task["id"], task.get("language", "python"), task.get("code", "")
    workspace = workdir_of(state, deps, config)
    if code.strip() and (reason := check_code(language, code, workspace)):
        return {"tasks": [_blocked(tid, reason, task.get("attempts", 0))]}
    interrupted = bool(task.get("interrupted"))
    if runtime.context.auto_approve or not code.strip():
        if interrupted and code.strip():
            emit(TaskRestarting(event="task_restarting", task_id=tid, description=task["description"],
                                changes=task.get("changes")))
        return {"tasks": [{"id": tid, "approved": True, "approval": "auto" if code.strip() else "no code"}]}
    answer = interrupt(
        {
            "type": "approval",
            "task_id": tid,
            "task": task["description"],
            "language": language,
            "code": code,
            "workspace": str(workspace),
            "interrupted": interrupted,
            "changes": task.get("changes", []) if interrupted else [],  # what the cut-short attempt did
            "hint": 'resume with {"action": "approve"} / {"action": "reject"} / {"action": "edit", "code": "..."}',
        }
    )
    action, new_code = _parse_answer(answer, code)
    if action == "edit" and (not new_code.strip() or new_code == code):
        return {}  # an empty or unchanged edit is not an approval: ask again
    if action == "reject":
        return {"tasks": [{"id": tid, "status": "skipped", "error": "rejected by the user", "approved": False,
                           "approval": "rejected"}]}
    if action == "edit":
        if reason := check_code(language, new_code, workspace):
            return {"tasks": [_blocked(tid, reason, task.get("attempts", 0))]}
        return {"tasks": [{"id": tid, "code": new_code, "approved": True, "approval": "edited"}]}
    return {"tasks": [{"id": tid, "approved": True, "approval": "user"}]}


def _blocked(tid: int, reason: str, attempts: int) -> dict[str, Any]:
    return {
        "id": tid,
        "status": "failed",
        "approved": False,
        "approval": "blocked",
        "attempts": attempts,
        "output": "",
        "error": f"blocked: {reason}",
    }


def _parse_answer(answer: Any, code: str) -> tuple[str, str]:
    """Accept {"action": ..., "code": ...}, or a bare "approve"/"reject"/"y"/"n". Anything else is a
    reject; an edit without (new) code is asked again by the caller."""
    if isinstance(answer, dict):
        action = str(answer.get("action", "")).lower()  # no action: unclear, so no
        new_code = str(answer.get("code") or "")
    else:
        action, new_code = str(answer).strip().lower(), code
    action = {"y": "approve", "yes": "approve", "n": "reject", "no": "reject", "e": "edit"}.get(action, action)
    if action not in ("approve", "reject", "edit"):
        action = "reject"  # anything unclear is a no: code runs only when clearly allowed
    return action, new_code
