"""Small helpers shared by the nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig

from free_llm_agent.graph.state import FailureKind, Fallback, LlmNode, State, Task
from free_llm_agent.nodes import prompts
from free_llm_agent.nodes.parsing import ParseError
from free_llm_agent.providers.errors import AllProvidersExhausted
from free_llm_agent.runtime.deps import Deps
from free_llm_agent.tools.workspace import listing


def thread_id(config: RunnableConfig) -> str:
    return str((config.get("configurable") or {}).get("thread_id") or "default")


def run_owner(config: RunnableConfig) -> str | None:
    """Who holds the thread lock for this run: the CLI runner's token, else the server's run id."""
    conf = config.get("configurable") or {}
    owner = conf.get("run_owner") or conf.get("run_id") or config.get("run_id")
    return str(owner) if owner else None


def workdir_of(state: State, deps: Deps, config: RunnableConfig) -> Path:
    """The run's working directory, as chosen when it started (threads from before: their scratch folder)."""
    chosen = state.get("workdir")
    return Path(chosen) if chosen else deps.workdir(None, thread_id(config))


def describe_workdir(path: Path) -> str:
    """The working directory and a bounded listing of it, for the plan and code prompts."""
    return prompts.workdir(str(path), listing(path))


def batch_tasks(state: State) -> list[Task]:
    ids = set(state.get("batch") or [])
    return [t for t in state.get("tasks", []) if t["id"] in ids]


def retry_reason(state: State, node: str) -> str | None:
    """Why the last try of ``node`` gave nothing usable (its answer was unreadable), if it did."""
    fb = state.get("fallback")
    return fb["error"] or None if fb and fb["node"] == node and fb["kind"] == "parse" else None


def failure_update(state: State, node: LlmNode, exc: Exception) -> dict[str, Any]:
    """State update sending the run to the fallback node after ``node`` failed with ``exc``."""
    previous = state.get("fallback")
    failures = previous["failures"] + 1 if previous and previous["node"] == node else 1
    retry_at = exc.retry_at.isoformat() if isinstance(exc, AllProvidersExhausted) and exc.retry_at else None
    kind: FailureKind
    if isinstance(exc, AllProvidersExhausted) and retry_at is not None:
        kind = "quota" if exc.quota else "outage"  # out of budget / failing providers
    elif isinstance(exc, AllProvidersExhausted) and exc.keys_rejected:
        kind = "dead"  # every key was rejected (401/403): retrying only waits
    else:
        kind = "parse" if isinstance(exc, ParseError) else "error"
    message = f"{node}: {exc}"
    fallback = Fallback(node=node, kind=kind, error=str(exc)[:500], retry_at=retry_at, failures=failures)
    return {"fallback": fallback, "errors": [message[:500]]}
