"""The agent as a LangGraph StateGraph. ``graph`` is what langgraph.json serves.

The builder is imported lazily (PEP 562) so that ``nodes`` can import
``graph.state`` / ``graph.context`` without a circular import.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Context", "State", "Task", "build_graph", "builder", "graph"]

def __getattr__(name: str) -> Any:
    if name in ("build_graph", "builder"):
        from free_llm_agent.graph import workflow as module

        return getattr(module, name)
    if name == "graph":
        from free_llm_agent.graph.workflow import graph

        return graph
    if name == "Context":
        from free_llm_agent.graph.context import Context

        return Context
    if name in ("State", "Task"):
        from free_llm_agent.graph import state

        return getattr(state, name)
    raise AttributeError(f"module 'graph' has no attribute {name!r}")
