"""start: every run of the graph begins here (not a resume, a retry or a re-plan).

A thread that ran before gets a fresh run for its new goal: tasks, counters, iteration and
re-plans start from zero, so ``max_iterations`` and the summary are per run. The earlier run
stays in the thread's checkpoint history (``show``, Studio); its working directory is kept.

The working directory (and whether code may use the network) is chosen here, before any
request, and checkpointed with this node: a run killed while its plan is asked for resumes
in the folder it was given — on any machine that shares the database — not in a scratch folder.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from free_llm_agent.graph.context import Context
from free_llm_agent.graph.state import State
from free_llm_agent.nodes.common import thread_id
from free_llm_agent.runtime.deps import Deps

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


def thread_domains(state: State, given: list[str]) -> list[str]:
    """The thread's own allowed domains: those it had, ``--allow-domain``, and those written in the goal."""
    from free_llm_agent.tools.netpolicy import domains_in

    return list(dict.fromkeys([*state.get("allowed_domains", []), *given, *domains_in(state["goal"])]))


def start(state: State, runtime: Runtime[Context], config: RunnableConfig, *, deps: Deps) -> dict[str, Any]:
    chosen = {"status": "running",  # the working directory is chosen once per thread (module docstring)
              "workdir": state.get("workdir") or str(deps.workdir(runtime.context.workdir, thread_id(config))),
              "network": bool(state.get("network", runtime.context.network)),
              "allowed_domains": thread_domains(state, runtime.context.allowed_domains)}
    if not any(state.get(k) for k in ("tasks", "calls", "summary", "iteration", "errors")):
        return chosen  # the thread's first run
    deps.journal().clear(thread_id(config))  # nothing of the earlier run is in flight any more
    return {**_FRESH, **chosen}
