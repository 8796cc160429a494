"""plan: goal -> 3-5 tasks (or a new plan when reflect asks for one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from free_llm_agent.graph.context import Context
from free_llm_agent.graph.state import State, Task
from free_llm_agent.nodes import prompts
from free_llm_agent.nodes.common import describe_workdir, failure_update, retry_reason, thread_id
from free_llm_agent.nodes.llm import Asked, ask
from free_llm_agent.nodes.parsing import ParseError, parse_plan
from free_llm_agent.nodes.schemas import Plan
from free_llm_agent.providers.errors import AllProvidersExhausted
from free_llm_agent.runtime.deps import Deps

MAX_TASKS = 5


def plan(state: State, runtime: Runtime[Context], config: RunnableConfig, *, deps: Deps) -> dict[str, Any]:
    tasks = state.get("tasks", [])
    replanning = state.get("decision") == "replan" and bool(tasks)
    # The working directory is chosen once per thread; resume and replans keep it.
    workdir = state.get("workdir") or str(deps.workdir(runtime.context.workdir, thread_id(config)))
    network = bool(state.get("network", runtime.context.network))
    chosen = {"workdir": workdir, "network": network}
    # The executor starts while the plan is asked for (a no-op when the CLI started it already).
    deps.prewarm(thread_id(config), Path(workdir), runtime.context.executor_timeout_s,
                 runtime.context.network and network)
    if replanning:
        advice = "; ".join(str(v.get("hint", "")) for v in state.get("verdicts", []) if v.get("hint"))
        messages = prompts.replan(state["goal"], tasks, advice, describe_workdir(Path(workdir)), max_tasks=MAX_TASKS)
    else:
        messages = prompts.plan(state["goal"], describe_workdir(Path(workdir)), max_tasks=MAX_TASKS)
    asked = Asked()
    try:
        result = ask(
            deps.chat_model(),
            Plan,
            messages,
            lambda text: parse_plan(text, max_tasks=MAX_TASKS),
            task_type="general",
            purpose="plan",
            providers=runtime.context.preferred_providers,
            asked=asked,
            previous_error=retry_reason(state, "plan"),
        )
    except (AllProvidersExhausted, ParseError) as exc:
        return {**asked.update(), **failure_update(state, "plan", exc), **chosen}
    descriptions = [d.strip() for d in result.tasks if d.strip()][:MAX_TASKS]
    if not descriptions:
        return {**asked.update(), **failure_update(state, "plan", ParseError("a plan with at least one task", "")),
                **chosen}
    next_id = max((t["id"] for t in tasks), default=0) + 1
    new: list[Task] = [
        {"id": next_id + i, "description": d, "status": "pending", "attempts": 0} for i, d in enumerate(descriptions)
    ]
    dropped: list[Task] = [{"id": t["id"], "status": "skipped"} for t in tasks if t.get("status") == "pending"]
    return {
        **asked.update(),
        **chosen,
        "tasks": dropped + new,
        "batch": [],
        "plan_start": next_id,
        "decision": "continue",
        "replans": state.get("replans", 0) + (1 if replanning else 0),
        "status": "running",
        "fallback": None,
    }
