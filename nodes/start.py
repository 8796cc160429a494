"""start: every run of the graph begins here (not a resume, a retry or a re-plan).

A thread that ran before gets a fresh run for its new goal: tasks, counters, iteration and
re-plans start from zero, so ``max_iterations`` and the summary are per run. The earlier run
stays in the thread's checkpoint history (``show``, Studio); its working directory is kept.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Overwrite

from graph.deps import Deps
from graph.state import State
from nodes.common import thread_id

# Channels with a reducer are replaced, not merged into (``Overwrite`` bypasses the reducer).
_FRESH: dict[str, Any] = {
    "tasks": Overwrite([]),
    "llm_calls": Overwrite({}),
    "cache_hits": Overwrite(0),
    "errors": Overwrite([]),
    "calls": Overwrite([]),
    "batch": [],
    "plan_start": 1,
    "verdicts": [],
    "decision": "",
    "iteration": 0,
    "replans": 0,
    "summary": "",
    "resume_after": None,
    "fallback": None,
}


def start(state: State, config: RunnableConfig, *, deps: Deps) -> dict[str, Any]:
    if not any(state.get(k) for k in ("tasks", "calls", "summary", "iteration", "errors")):
        return {"status": "running"}  # the thread's first run
    deps.journal().clear(thread_id(config))  # nothing of the earlier run is in flight any more
    return {**_FRESH, "status": "running"}
